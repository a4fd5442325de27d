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

    public static TokenizerConfigInfo Read(string path)
        => File.Exists(path) ? Parse(File.ReadAllText(path), path) : new TokenizerConfigInfo();

    public static TokenizerConfigInfo Parse(string? json, string file)
    {
        if (string.IsNullOrWhiteSpace(json)) return new TokenizerConfigInfo();
        try
        {
            using var doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
            var r = doc.RootElement;
            if (r.ValueKind != JsonValueKind.Object) throw new JambaTokenizerException(file, "not a JSON object");
            var cfg = new TokenizerConfigInfo
            {
                AddBosToken = HfBpeModel.GetBool(r, "add_bos_token"),
                AddEosToken = HfBpeModel.GetBool(r, "add_eos_token"),
                Legacy = HfBpeModel.GetBool(r, "legacy"),
                BosToken = TokenString(r, "bos_token"),
                EosToken = TokenString(r, "eos_token"),
                PadToken = TokenString(r, "pad_token"),
                UnkToken = TokenString(r, "unk_token"),
            };
            if (r.TryGetProperty("added_tokens_decoder", out var atd) && atd.ValueKind == JsonValueKind.Object)
            {
                foreach (var p in atd.EnumerateObject())
                {
                    if (!int.TryParse(p.Name, out int id)) throw new JambaTokenizerException(file, $"added_tokens_decoder key '{p.Name}' is not an id");
                    var t = p.Value;
                    string content = HfBpeModel.GetString(t, "content") ?? throw new JambaTokenizerException(file, $"added_tokens_decoder[{id}] has no content");
                    cfg.AddedTokens.Add(new AddedTokenSpec(id, content, HfBpeModel.GetBool(t, "special") ?? false,
                        HfBpeModel.GetBool(t, "single_word") ?? false, HfBpeModel.GetBool(t, "lstrip") ?? false,
                        HfBpeModel.GetBool(t, "rstrip") ?? false, HfBpeModel.GetBool(t, "normalized") ?? false));
                }
            }
            return cfg;
        }
        catch (JsonException e)
        {
            throw new JambaTokenizerException(file, "invalid JSON: " + e.Message, e);
        }
    }

    /// <summary>A token given as a string or as an <c>AddedToken</c> object (<c>{"content": ...}</c>).</summary>
    private static string? TokenString(JsonElement r, string name)
    {
        if (!r.TryGetProperty(name, out var v)) return null;
        return v.ValueKind switch
        {
            JsonValueKind.String => v.GetString(),
            JsonValueKind.Object => HfBpeModel.GetString(v, "content"),
            _ => null,
        };
    }
}
