using System.Text.Json;

namespace Jamba.Inference.Config;

/// <summary>
/// The sampling defaults a checkpoint recommends in <c>generation_config.json</c> (<c>temperature</c>, <c>top_p</c>,
/// <c>top_k</c>, <c>min_p</c>, <c>repetition_penalty</c>, <c>max_new_tokens</c>). transformers' <c>generate</c> and vLLM apply
/// them when a request sets none; so does <c>JambaChatClient</c> unless its options give defaults of their own. A field that
/// is absent or <c>null</c> stays null.
/// </summary>
/// <param name="Temperature">Softmax temperature.</param>
/// <param name="TopP">Nucleus cutoff.</param>
/// <param name="TopK">Top-k cutoff.</param>
/// <param name="MinP">Min-p cutoff.</param>
/// <param name="RepetitionPenalty">HF repetition penalty.</param>
/// <param name="MaxNewTokens">Most new tokens.</param>
public sealed record GenerationDefaults(float? Temperature, float? TopP, int? TopK, float? MinP, float? RepetitionPenalty, int? MaxNewTokens)
{
    /// <summary>The file name.</summary>
    public const string FileName = "generation_config.json";

    /// <summary>No recommendation.</summary>
    public static GenerationDefaults None { get; } = new(null, null, null, null, null, null);

    /// <summary>Reads <c>generation_config.json</c> of <paramref name="folder"/>; <see cref="None"/> when there is no such file.</summary>
    /// <exception cref="JambaConfigException">The file is not JSON, or a field has the wrong type or an unusable value (names the field).</exception>
    public static GenerationDefaults Load(string folder)
    {
        string path = Path.Combine(folder, FileName);
        if (!File.Exists(path)) return None;
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            throw new JambaConfigException(path, "(file)", $"is not valid JSON: {e.Message}", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new JambaConfigException(path, "(file)", $"must be a JSON object; found {doc.RootElement.ValueKind}.");
            var root = doc.RootElement;
            return new GenerationDefaults(
                Number(path, root, "temperature", 0, 100),
                Number(path, root, "top_p", double.Epsilon, 1),
                (int?)Number(path, root, "top_k", 0, int.MaxValue, integer: true),
                Number(path, root, "min_p", 0, 1),
                Number(path, root, "repetition_penalty", double.Epsilon, 10),
                (int?)Number(path, root, "max_new_tokens", 1, 1 << 20, integer: true));
        }
    }

    private static float? Number(string path, JsonElement root, string field, double min, double max, bool integer = false)
    {
        if (!root.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || !double.IsFinite(d))
            throw new JambaConfigException(path, field, $"must be a number; found {v.ValueKind} {Truncate(v.GetRawText())}.");
        if (integer && d != Math.Floor(d))
            throw new JambaConfigException(path, field, $"must be an integer; found {d}.");
        if (d < min || d > max)
            throw new JambaConfigException(path, field, $"must be between {min} and {max}; found {d}.");
        return (float)d;
    }

    private static string Truncate(string s) => s.Length <= 40 ? s : s[..40] + "…";
}
