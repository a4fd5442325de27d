using System.Text.Json;
using System.Text.Json.Nodes;
using Jamba.Inference.Tokenization;

namespace Jamba.Inference.Tests.Tokenization;

/// <summary>One sentence with the ids/pieces/decoded text the real SentencePiece produced (TestData/expected.json).</summary>
public sealed record SpmCase(string Text, int[] Ids, string[] Pieces, string Decoded)
{
    public override string ToString() => JsonSerializer.Serialize(Text);
}

/// <summary>A text with added tokens and the Hugging Face-pipeline ids for legacy and "first" prefix handling.</summary>
public sealed record SpecialCase(string Text, int[] Legacy, int[] First, int[] Spm)
{
    public override string ToString() => JsonSerializer.Serialize(Text);
}

internal static class TokenizerTestData
{
    public static string Dir => Path.Combine(AppContext.BaseDirectory, "Tokenization", "TestData");

    private static readonly Lazy<JsonNode> Expected = new(() => JsonNode.Parse(File.ReadAllText(Path.Combine(Dir, "expected.json")))!);

    public static IReadOnlyList<SpmCase> Cases { get; } = Expected.Value["cases"]!.AsArray().Select(c => new SpmCase(
        c!["text"]!.GetValue<string>(),
        c["ids"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray(),
        c["pieces"]!.AsArray().Select(x => x!.GetValue<string>()).ToArray(),
        c["decoded"]!.GetValue<string>())).ToList();

    public static IReadOnlyList<SpecialCase> SpecialCases { get; } = Expected.Value["special_cases"]!.AsArray().Select(c => new SpecialCase(
        c!["text"]!.GetValue<string>(),
        c["legacy"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray(),
        c["first"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray(),
        c["spm"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray())).ToList();

    public static readonly string[] AddedTokenStrings =
    {
        "<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|unk|>", "<|system|>", "<|user|>", "<|assistant|>",
        "<|bom|>", "<|eom|>", "<tool_calls>", "</tool_calls>",
    };

    /// <summary>Cases without any added-token string: there every loader must equal spm_encode exactly.</summary>
    public static IEnumerable<SpmCase> PlainCases => Cases.Where(c => !AddedTokenStrings.Any(t => c.Text.Contains(t, StringComparison.Ordinal)));

    public static string ReadText(string name) => File.ReadAllText(Path.Combine(Dir, name));

    /// <summary>A fresh checkpoint-like folder holding the given files (name → content).</summary>
    public static string Folder(params (string Name, object Content)[] files)
    {
        string dir = Path.Combine(Path.GetTempPath(), "jamba-tok-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        foreach (var (name, content) in files)
        {
            string path = Path.Combine(dir, name);
            if (content is byte[] bytes) File.WriteAllBytes(path, bytes);
            else File.WriteAllText(path, (string)content);
        }
        return dir;
    }

    public static byte[] ModelBytes => File.ReadAllBytes(Path.Combine(Dir, "tokenizer.model"));
    public static string TokenizerJson => ReadText("tokenizer.json");
    public static string TokenizerConfig => ReadText("tokenizer_config.json");

    /// <summary>tokenizer_config.json with "legacy" set as given.</summary>
    public static string ConfigWithLegacy(bool legacy)
    {
        var node = JsonNode.Parse(TokenizerConfig)!.AsObject();
        node["legacy"] = legacy;
        return node.ToJsonString();
    }

    /// <summary>tokenizer.json rewritten to the non-legacy layout: no normalizer, Metaspace pre-tokenizer (prepend_scheme "first").</summary>
    public static string MetaspaceJson(bool split = false, string scheme = "first")
    {
        var node = JsonNode.Parse(TokenizerJson)!.AsObject();
        node["normalizer"] = null;
        node["pre_tokenizer"] = new JsonObject { ["type"] = "Metaspace", ["replacement"] = "\u2581", ["prepend_scheme"] = scheme, ["split"] = split };
        return node.ToJsonString();
    }

    /// <summary>tokenizer.json with merges written as ["a", "b"] arrays (tokenizers ≥ 0.20 format).</summary>
    public static string ArrayMergesJson()
    {
        var node = JsonNode.Parse(TokenizerJson)!.AsObject();
        var merges = node["model"]!["merges"]!.AsArray();
        var arr = new JsonArray();
        foreach (var m in merges)
        {
            string s = m!.GetValue<string>();
            int sp = s.IndexOf(' ', 1);
            arr.Add(new JsonArray(s[..sp], s[(sp + 1)..]));
        }
        node["model"]!["merges"] = arr;
        return node.ToJsonString();
    }

    public static JambaTokenizer JsonTokenizer(string? config = null) => JambaTokenizer.FromTokenizerJson(TokenizerJson, config ?? TokenizerConfig);
    public static JambaTokenizer ModelTokenizer(string? config = null) => JambaTokenizer.FromSentencePiece(ModelBytes, config ?? TokenizerConfig);
}
