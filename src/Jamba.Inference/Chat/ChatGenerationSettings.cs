using System.Globalization;
using System.Text.Json;
using Jamba.Inference.Generation;
using Microsoft.Extensions.AI;

namespace Jamba.Inference.Chat;

/// <summary>
/// The one mapping from request settings to the engine's <see cref="GenerationOptions"/>: Microsoft.Extensions.AI's
/// <see cref="ChatOptions"/> (what <see cref="JambaChatClient"/> receives, and what Semantic Kernel's settings become) over
/// a set of defaults. Every connector goes through it: Semantic Kernel maps its settings to <see cref="ChatOptions"/>,
/// ML.NET holds a <see cref="GenerationOptions"/> directly, and the CLI fills one from its flags.
/// </summary>
public static class ChatGenerationSettings
{
    /// <summary>The <see cref="ChatOptions.AdditionalProperties"/> key of the min-p cutoff.</summary>
    public const string MinPKey = "min_p";
    /// <summary>The <see cref="ChatOptions.AdditionalProperties"/> key of the repetition penalty.</summary>
    public const string RepetitionPenaltyKey = "repetition_penalty";
    /// <summary>The <see cref="ChatOptions.AdditionalProperties"/> key that asks for each token's log-probability (a bool;
    /// the engine's <see cref="GenerationUpdate"/>s, with <see cref="GenerationUpdate.LogProb"/>, are then on every streamed
    /// update's <see cref="ChatResponseUpdate.RawRepresentation"/>).</summary>
    public const string LogProbsKey = "logprobs";
    /// <summary>The <see cref="ChatOptions.AdditionalProperties"/> key of how many most likely alternatives to report per token (0…20).</summary>
    public const string TopLogProbsKey = "top_logprobs";

    /// <summary>
    /// The constraint of a response format: <see cref="ChatResponseFormat.Json"/> without a schema is any JSON object,
    /// <see cref="ChatResponseFormat.ForJsonSchema(JsonElement, string?, string?)"/> its compiled schema; text or null is none.
    /// </summary>
    /// <param name="format">The response format.</param>
    /// <exception cref="ArgumentException">The schema is not valid.</exception>
    /// <exception cref="NotSupportedException">The schema uses a keyword constrained decoding does not implement (names it).</exception>
    public static JsonConstraint? ResponseConstraint(ChatResponseFormat? format) => format switch
    {
        ChatResponseFormatJson { Schema: { } schema } => JsonConstraint.FromSchema(Unwrap(schema)),
        ChatResponseFormatJson => JsonConstraint.AnyObject,
        _ => null,
    };

    /// <summary>OpenAI's whole <c>response_format</c> object (<c>{"type":"json_schema","json_schema":{"schema":…}}</c>, what
    /// Semantic Kernel's chat bridge passes on as the schema) stands for its schema; "json_schema" is no JSON Schema type,
    /// so this never changes a real schema.</summary>
    internal static JsonElement Unwrap(JsonElement schema) =>
        schema.ValueKind == JsonValueKind.Object && schema.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String && t.GetString() == "json_schema"
        && schema.TryGetProperty("json_schema", out var js) && js.ValueKind == JsonValueKind.Object && js.TryGetProperty("schema", out var inner)
            ? inner
            : schema;

    /// <summary>
    /// <paramref name="defaults"/> (copied) overridden by every setting <paramref name="options"/> has: <c>MaxOutputTokens</c>,
    /// <c>Temperature</c>, <c>TopP</c>, <c>TopK</c>, <c>Seed</c>, <c>PresencePenalty</c>, <c>FrequencyPenalty</c>,
    /// <c>StopSequences</c> (added to the defaults'), <c>ResponseFormat</c> (JSON: <see cref="GenerationOptions.Constraint"/>, see
    /// <see cref="ResponseConstraint"/>), and <c>min_p</c> / <c>repetition_penalty</c> / <c>logprobs</c> / <c>top_logprobs</c> in
    /// <see cref="ChatOptions.AdditionalProperties"/>. Neither argument is changed; the result is not validated (the engine
    /// validates every request, and a connector may validate first with its own setting names).
    /// </summary>
    /// <param name="options">Request options, or null.</param>
    /// <param name="defaults">Values for unset settings; null = <see cref="GenerationOptions"/>'s defaults.</param>
    /// <exception cref="ArgumentException">An additional property has an unusable value (names its key).</exception>
    public static GenerationOptions ToGenerationOptions(ChatOptions? options, GenerationOptions? defaults = null)
    {
        var g = (defaults ?? new GenerationOptions()).Clone();
        if (options is null) return g;
        if (options.MaxOutputTokens is { } max) g.MaxNewTokens = max;
        if (options.Temperature is { } temperature) g.Temperature = temperature;
        if (options.TopP is { } topP) g.TopP = topP;
        if (options.TopK is { } topK) g.TopK = topK;
        if (options.Seed is { } seed) g.Seed = seed;
        if (options.PresencePenalty is { } presence) g.PresencePenalty = presence;
        if (options.FrequencyPenalty is { } frequency) g.FrequencyPenalty = frequency;
        if (options.StopSequences is { Count: > 0 } stops)
            foreach (var s in stops)
                if (!string.IsNullOrEmpty(s) && !g.StopSequences.Contains(s)) g.StopSequences.Add(s);
        g.Constraint = ResponseConstraint(options.ResponseFormat) ?? g.Constraint;
        if (options.AdditionalProperties is { } props)
        {
            if (TryGetNumber(props, MinPKey, out double minP)) g.MinP = (float)minP;
            if (TryGetNumber(props, RepetitionPenaltyKey, out double rep)) g.RepetitionPenalty = (float)rep;
            if (props.TryGetValue(LogProbsKey, out var logProbs) && logProbs is not null)
                g.LogProbs = logProbs switch
                {
                    bool b => b,
                    JsonElement { ValueKind: JsonValueKind.True } => true,
                    JsonElement { ValueKind: JsonValueKind.False or JsonValueKind.Null } => false,
                    _ => throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{LogProbsKey}\"] must be a bool; found {logProbs}.", "options"),
                };
            if (TryGetNumber(props, TopLogProbsKey, out double top))
            {
                if (top != Math.Floor(top) || top is < 0 or > 20)
                    throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{TopLogProbsKey}\"] must be an integer between 0 and 20; found {top}.", "options");
                g.TopLogProbs = (int)top;
                if (g.TopLogProbs > 0) g.LogProbs = true;
            }
        }
        return g;
    }

    private static bool TryGetNumber(AdditionalPropertiesDictionary props, string key, out double value)
    {
        value = 0;
        if (!props.TryGetValue(key, out var raw) || raw is null) return false;
        switch (raw)
        {
            case JsonElement { ValueKind: JsonValueKind.Number } e: value = e.GetDouble(); return true;
            case JsonElement { ValueKind: JsonValueKind.String } e when double.TryParse(e.GetString(), NumberStyles.Float, CultureInfo.InvariantCulture, out value): return true;
            case JsonElement { ValueKind: JsonValueKind.Null }: return false;
            case string s when double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out value): return true;
            case IConvertible c:
                try
                {
                    value = c.ToDouble(CultureInfo.InvariantCulture);
                    return true;
                }
                catch (Exception ex) when (ex is FormatException or InvalidCastException or OverflowException)
                {
                    break;
                }
        }
        throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{key}\"] must be a number; found {raw}.", "options");
    }
}
