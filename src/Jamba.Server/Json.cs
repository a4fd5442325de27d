using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Jamba.Server;

/// <summary>Reads request fields with OpenAI's types, naming a wrong one by its JSON path (400).</summary>
internal static class Json
{
    /// <summary>How responses are written (UTF-8 kept readable; still valid JSON).</summary>
    public static readonly JsonSerializerOptions Output = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string Write(JsonNode node) => node.ToJsonString(Output);

    private static OpenAIErrorException Wrong(string param, string what, JsonNode? found) =>
        OpenAIErrorException.BadRequest($"'{param}' must be {what}; found {Describe(found)}.", param);

    private static string Describe(JsonNode? node) => node switch
    {
        null => "null",
        JsonValue v when v.GetValueKind() == JsonValueKind.String => "a string",
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => "a number (" + v.ToJsonString() + ")",
        JsonValue v when v.GetValueKind() is JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonArray => "an array",
        JsonObject => "an object",
        _ => node.ToJsonString(),
    };

    public static bool Has(JsonObject o, string name) => o.TryGetPropertyValue(name, out var v) && v is not null;

    public static double? Number(JsonObject o, string name, string? path = null)
    {
        if (!o.TryGetPropertyValue(name, out var v) || v is null) return null;
        if (v is JsonValue j && j.GetValueKind() == JsonValueKind.Number) return j.GetValue<double>();
        throw Wrong(path ?? name, "a number", v);
    }

    public static long? Integer(JsonObject o, string name, string? path = null)
    {
        if (!o.TryGetPropertyValue(name, out var v) || v is null) return null;
        if (v is JsonValue j && j.GetValueKind() == JsonValueKind.Number)
        {
            double d = j.GetValue<double>();
            if (d == Math.Floor(d) && Math.Abs(d) < 9.0e15) return (long)d;
        }
        throw Wrong(path ?? name, "an integer", v);
    }

    public static int? Int32(JsonObject o, string name, string? path = null)
    {
        long? value = Integer(o, name, path);
        if (value is null) return null;
        if (value is < int.MinValue or > int.MaxValue) throw OpenAIErrorException.BadRequest($"'{path ?? name}' is out of range; found {value}.", path ?? name);
        return (int)value;
    }

    public static bool? Bool(JsonObject o, string name, string? path = null)
    {
        if (!o.TryGetPropertyValue(name, out var v) || v is null) return null;
        if (v is JsonValue j && j.GetValueKind() is JsonValueKind.True or JsonValueKind.False) return j.GetValue<bool>();
        throw Wrong(path ?? name, "a boolean", v);
    }

    public static string? String(JsonObject o, string name, string? path = null)
    {
        if (!o.TryGetPropertyValue(name, out var v) || v is null) return null;
        if (v is JsonValue j && j.GetValueKind() == JsonValueKind.String) return j.GetValue<string>();
        throw Wrong(path ?? name, "a string", v);
    }

    public static JsonObject? Object(JsonObject o, string name, string? path = null)
    {
        if (!o.TryGetPropertyValue(name, out var v) || v is null) return null;
        return v as JsonObject ?? throw Wrong(path ?? name, "an object", v);
    }

    public static JsonArray? Array(JsonObject o, string name, string? path = null)
    {
        if (!o.TryGetPropertyValue(name, out var v) || v is null) return null;
        return v as JsonArray ?? throw Wrong(path ?? name, "an array", v);
    }

    /// <summary><c>stop</c>: a string or a list of strings (at most 16 here, non-empty).</summary>
    public static List<string> Stop(JsonObject o)
    {
        if (!o.TryGetPropertyValue("stop", out var v) || v is null) return [];
        if (v is JsonValue j && j.GetValueKind() == JsonValueKind.String) return [j.GetValue<string>()];
        if (v is JsonArray a)
        {
            var list = new List<string>();
            for (int i = 0; i < a.Count; i++)
            {
                if (a[i] is JsonValue s && s.GetValueKind() == JsonValueKind.String) list.Add(s.GetValue<string>());
                else throw Wrong($"stop[{i}]", "a string", a[i]);
            }
            return list;
        }
        throw Wrong("stop", "a string or an array of strings", v);
    }
}

/// <summary>The text of one token as OpenAI's logprobs report it (leading spaces kept).</summary>
internal static class TokenText
{
    public static string Of(Jamba.Inference.Tokenization.JambaTokenizer tokenizer, int id)
    {
        string? piece = tokenizer.IdToToken(id);
        if (piece is null || piece.StartsWith("<0x", StringComparison.Ordinal) || tokenizer.IsSpecialToken(id)) return tokenizer.Decode([id]);
        return piece.Replace('\u2581', ' ');
    }
}
