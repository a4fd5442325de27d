using System.Globalization;
using System.Text.Json;

namespace Jamba.Inference.Tokenization;

/// <summary>The parts of <c>tokenizer_config.json</c> the tokenizer uses.</summary>
internal sealed class TokenizerConfigInfo
{
    public bool? AddBosToken { get; private init; }
    public bool? AddEosToken { get; private init; }
    public bool? Legacy { get; private init; }
    public string? BosToken { get; private init; }
    public string? EosToken { get; private init; }
    public string? PadToken { get; private init; }
    public string? UnkToken { get; private init; }
    public List<AddedTokenSpec> AddedTokens { get; } = new();

    /// <summary>Reads the file when it exists (bounded, strict UTF-8, through symbolic links).</summary>
    public static TokenizerConfigInfo Read(string path)
        => InputFiles.Exists(path)
            ? Parse(InputFiles.ReadText(path, (message, inner) => new JambaTokenizerException(path, message, inner)), path, emptyIsNone: false)
            : new TokenizerConfigInfo();

    /// <summary>Parses the text; a value of the wrong type fails with <see cref="JambaTokenizerException"/> naming its JSON path.</summary>
    /// <param name="json">The text; null (and, for callers passing text, blank) means no configuration.</param>
    /// <param name="file">The file name for messages.</param>
    /// <param name="emptyIsNone">Whether blank text means no configuration (an empty FILE is invalid JSON, as for transformers).</param>
    public static TokenizerConfigInfo Parse(string? json, string file, bool emptyIsNone = true)
    {
        if (json is null || (emptyIsNone && string.IsNullOrWhiteSpace(json))) return new TokenizerConfigInfo();
        using var doc = InputFiles.ParseJson(json, lenient: true, (message, inner) => new JambaTokenizerException(file, message, inner));
        var r = new JsonField(doc.RootElement, "", (path, message) => new JambaTokenizerException(file, path, message)).Object();
        var cfg = new TokenizerConfigInfo
        {
            AddBosToken = r.OptBool("add_bos_token"),
            AddEosToken = r.OptBool("add_eos_token"),
            Legacy = r.OptBool("legacy"),
            BosToken = TokenString(r, "bos_token"),
            EosToken = TokenString(r, "eos_token"),
            PadToken = TokenString(r, "pad_token"),
            UnkToken = TokenString(r, "unk_token"),
        };
        if (r.Get("added_tokens_decoder") is { } atd)
        {
            foreach (var (key, t) in atd.Properties())
            {
                // Keys are decimal ids, exactly as transformers writes them (no sign, no spaces, no leading zeros).
                bool canonical = key.Length is > 0 and <= 9 && key.All(char.IsAsciiDigit) && (key.Length == 1 || key[0] != '0');
                int id = canonical ? int.Parse(key, CultureInfo.InvariantCulture) : -1;
                if (id < 0 || id > HfBpeModel.MaxTokenId)
                    throw t.Error($"key {JsonField.Quote(key)} is not a token id (a decimal integer in [0, {HfBpeModel.MaxTokenId}]).");
                t.Object();
                string content = t.Require("content", "the token text").String();
                cfg.AddedTokens.Add(new AddedTokenSpec(id, content, t.OptBool("special") ?? false,
                    t.OptBool("single_word") ?? false, t.OptBool("lstrip") ?? false,
                    t.OptBool("rstrip") ?? false, t.OptBool("normalized") ?? false));
            }
        }
        return cfg;
    }

    /// <summary>A token given as a string or as an <c>AddedToken</c> object (<c>{"content": ...}</c>), or null.</summary>
    private static string? TokenString(JsonField r, string name)
    {
        if (r.Get(name) is not { } v) return null;
        return v.Kind switch
        {
            JsonValueKind.String => v.String(),
            JsonValueKind.Object => v.Require("content", "the token text").String(),
            _ => throw v.Expected("a token string, an {\"content\": ...} object or null"),
        };
    }
}
