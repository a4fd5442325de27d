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
    /// <summary>Deepest nesting of an input value (Python's default recursion limit).</summary>
    public const int MaxDepth = RenderContext.MaxValueDepth;

    /// <summary>Converts a CLR value; <paramref name="name"/> (the variable) is named in errors.</summary>
    public static object? FromClr(object? value, string name = "value") =>
        new Converter(name).FromClr(value, 0);

    /// <summary>Converts a JSON node; <paramref name="name"/> (the variable) is named in errors.</summary>
    public static object? FromNode(JsonNode? node, string name = "value") =>
        new Converter(name).FromNode(node, 0);

    public static object? FromElement(JsonElement el, string name = "value") =>
        new Converter(name).FromElement(el, 0);

    private sealed class Converter(string name)
    {
        // CLR containers being converted: a container reached again while converting itself is a cycle.
        private HashSet<object>? _active;

        private void CheckDepth(int depth)
        {
            if (depth > MaxDepth)
                throw new ArgumentException($"Template variable '{name}' is nested deeper than {MaxDepth} levels.", name);
            if (!System.Runtime.CompilerServices.RuntimeHelpers.TryEnsureSufficientExecutionStack())
                throw new ArgumentException($"Template variable '{name}' is nested too deeply for the thread's stack.", name);
        }

        private T Container<T>(object container, int depth, Func<T> convert)
        {
            CheckDepth(depth);
            _active ??= new HashSet<object>(ReferenceEqualityComparer.Instance);
            if (!_active.Add(container))
                throw new ArgumentException($"Template variable '{name}' contains itself (a reference cycle); template values must be trees.", name);
            try
            {
                return convert();
            }
            finally
            {
                _active.Remove(container);
            }
        }

        public object? FromClr(object? value, int depth) => value switch
        {
            null => null,
            JsonNode node => FromNode(node, depth),
            JsonElement el => FromElement(el, depth),
            string s => s,
            bool b => b,
            sbyte or byte or short or ushort or int or uint or long => Convert.ToInt64(value, CultureInfo.InvariantCulture),
            ulong ul => Py.NormalizeInt(ul),
            BigInteger bi => Py.NormalizeInt(bi),
            float f => (double)f,
            double d => d,
            decimal m => (double)m,
            char c => c.ToString(),
            IDictionary<string, object?> d => Container(d, depth, () => FromPairs(d, depth)),
            IReadOnlyDictionary<string, object?> d => Container(d, depth, () => FromPairs(d, depth)),
            IDictionary d => Container(d, depth, () => FromDictionary(d, depth)),
            IEnumerable e => Container(e, depth, () => e.Cast<object?>().Select(x => FromClr(x, depth + 1)).ToList()),
            _ => throw new ArgumentException($"Unsupported template value type {value.GetType().FullName} in template variable '{name}'.", name),
        };

        private PyDict FromPairs(IEnumerable<KeyValuePair<string, object?>> pairs, int depth)
        {
            var d = new PyDict();
            foreach (var kv in pairs) d[kv.Key] = FromClr(kv.Value, depth + 1);
            return d;
        }

        private PyDict FromDictionary(IDictionary dict, int depth)
        {
            var d = new PyDict();
            foreach (DictionaryEntry e in dict)
                d[FromClr(e.Key, depth + 1) ?? throw new ArgumentException($"Dictionary keys must not be null (template variable '{name}').", name)] = FromClr(e.Value, depth + 1);
            return d;
        }

        public object? FromNode(JsonNode? node, int depth)
        {
            switch (node)
            {
                case null: return null;
                case JsonObject obj:
                    {
                        CheckDepth(depth);
                        var d = new PyDict();
                        foreach (var kv in obj) d[kv.Key] = FromNode(kv.Value, depth + 1);
                        return d;
                    }
                case JsonArray arr:
                    CheckDepth(depth);
                    return arr.Select(x => FromNode(x, depth + 1)).ToList();
                case JsonValue v:
                    if (v.TryGetValue<JsonElement>(out var el)) return FromElement(el, depth);
                    if (v.TryGetValue<string>(out var s)) return s;
                    if (v.TryGetValue<bool>(out var b)) return b;
                    if (v.TryGetValue<long>(out var l)) return l;
                    if (v.TryGetValue<int>(out var i)) return (long)i;
                    if (v.TryGetValue<double>(out var d2)) return d2;
                    if (v.TryGetValue<float>(out var f)) return (double)f;
                    if (v.TryGetValue<decimal>(out var m)) return (double)m;
                    // Fall back to the JSON text (covers other numeric CLR types).
                    return FromElement(JsonDocument.Parse(v.ToJsonString()).RootElement, depth);
            }
            throw new ArgumentException($"Unsupported JsonNode {node.GetType().Name} in template variable '{name}'.", name);
        }

        public object? FromElement(JsonElement el, int depth)
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
                        // Python's json.loads refuses integers over sys.get_int_max_str_digits() digits too.
                        if (raw.Length > RenderContext.MaxIntDigits + 1)
                            throw new ArgumentException($"Template variable '{name}' holds an integer of {raw.Length} digits, more than {RenderContext.MaxIntDigits}.", name);
                        return Py.NormalizeInt(BigInteger.Parse(raw, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture));
                    }
                case JsonValueKind.Array:
                    CheckDepth(depth);
                    return el.EnumerateArray().Select(x => FromElement(x, depth + 1)).ToList();
                case JsonValueKind.Object:
                    {
                        CheckDepth(depth);
                        var d = new PyDict();
                        foreach (var p in el.EnumerateObject()) d[p.Name] = FromElement(p.Value, depth + 1);
                        return d;
                    }
            }
            throw new ArgumentException($"Unsupported JSON value kind {el.ValueKind} in template variable '{name}'.", name);
        }
    }
}
