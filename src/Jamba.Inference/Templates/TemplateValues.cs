using System.Collections;
using System.Globalization;
using System.Numerics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Jamba.Inference.Templates.Jinja;

namespace Jamba.Inference.Templates;

/// <summary>
/// Converts .NET / System.Text.Json values to the Python values a template sees, following
/// Python's <c>json.loads</c>: objects keep their key order, integers stay <c>int</c>, numbers with a
/// fraction or exponent become <c>float</c> (so <c>1.0</c> prints as <c>1.0</c>).
/// </summary>
internal static class TemplateValues
{
    public static object? FromClr(object? value) => value switch
    {
        null => null,
        JsonNode node => FromNode(node),
        JsonElement el => FromElement(el),
        string s => s,
        bool b => b,
        sbyte or byte or short or ushort or int or uint or long => Convert.ToInt64(value, CultureInfo.InvariantCulture),
        ulong ul => Py.NormalizeInt(ul),
        BigInteger bi => Py.NormalizeInt(bi),
        float f => (double)f,
        double d => d,
        decimal m => (double)m,
        char c => c.ToString(),
        IDictionary<string, object?> d => FromPairs(d),
        IReadOnlyDictionary<string, object?> d => FromPairs(d),
        IDictionary d => FromDictionary(d),
        IEnumerable e => e.Cast<object?>().Select(FromClr).ToList(),
        _ => throw new ArgumentException($"Unsupported template value type {value.GetType().FullName}."),
    };

    private static PyDict FromPairs(IEnumerable<KeyValuePair<string, object?>> pairs)
    {
        var d = new PyDict();
        foreach (var kv in pairs) d[kv.Key] = FromClr(kv.Value);
        return d;
    }

    private static PyDict FromDictionary(IDictionary dict)
    {
        var d = new PyDict();
        foreach (DictionaryEntry e in dict)
            d[FromClr(e.Key) ?? throw new ArgumentException("Dictionary keys must not be null.")] = FromClr(e.Value);
        return d;
    }

    public static object? FromNode(JsonNode? node)
    {
        switch (node)
        {
            case null: return null;
            case JsonObject obj:
                {
                    var d = new PyDict();
                    foreach (var kv in obj) d[kv.Key] = FromNode(kv.Value);
                    return d;
                }
            case JsonArray arr: return arr.Select(FromNode).ToList();
            case JsonValue v:
                if (v.TryGetValue<JsonElement>(out var el)) return FromElement(el);
                if (v.TryGetValue<string>(out var s)) return s;
                if (v.TryGetValue<bool>(out var b)) return b;
                if (v.TryGetValue<long>(out var l)) return l;
                if (v.TryGetValue<int>(out var i)) return (long)i;
                if (v.TryGetValue<double>(out var d2)) return d2;
                if (v.TryGetValue<float>(out var f)) return (double)f;
                if (v.TryGetValue<decimal>(out var m)) return (double)m;
                // Fall back to the JSON text (covers other numeric CLR types).
                return FromElement(JsonDocument.Parse(v.ToJsonString()).RootElement);
        }
        throw new ArgumentException($"Unsupported JsonNode {node.GetType().Name}.");
    }

    public static object? FromElement(JsonElement el)
    {
        switch (el.ValueKind)
        {
            case JsonValueKind.Null or JsonValueKind.Undefined: return null;
            case JsonValueKind.True: return true;
            case JsonValueKind.False: return false;
            case JsonValueKind.String: return el.GetString();
            case JsonValueKind.Number:
                {
                    string raw = el.GetRawText();
                    if (raw.AsSpan().IndexOfAny(".eE") >= 0)
                        return double.Parse(raw, NumberStyles.Float, CultureInfo.InvariantCulture);
                    return Py.NormalizeInt(BigInteger.Parse(raw, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture));
                }
            case JsonValueKind.Array: return el.EnumerateArray().Select(FromElement).ToList();
            case JsonValueKind.Object:
                {
                    var d = new PyDict();
                    foreach (var p in el.EnumerateObject()) d[p.Name] = FromElement(p.Value);
                    return d;
                }
        }
        throw new ArgumentException($"Unsupported JSON value kind {el.ValueKind}.");
    }
}
