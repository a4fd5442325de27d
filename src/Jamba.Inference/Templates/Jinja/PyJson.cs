using System.Globalization;
using System.Text;

namespace Jamba.Inference.Templates.Jinja;

/// <summary>Python <c>json.dumps</c> (the tojson filter that transformers installs).</summary>
internal static class PyJson
{
    /// <summary>
    /// <c>json.dumps</c>. Like Python, a list or dict met again inside itself is a ValueError ("Circular
    /// reference detected") and nesting deeper than <see cref="RenderContext.MaxValueDepth"/> a RecursionError;
    /// the text is bounded by <see cref="TemplateLimits.MaxStringLength"/> (a large indent multiplies it).
    /// </summary>
    public static string Dumps(object? value, bool ensureAscii, string? indent, string itemSep, string keySep, bool sortKeys)
    {
        var sb = new StringBuilder();
        var active = new HashSet<object>(ReferenceEqualityComparer.Instance);
        Write(sb, value, ensureAscii, indent, itemSep, keySep, sortKeys, 0, active);
        return sb.ToString();
    }

    private static void NewLine(StringBuilder sb, string? indent, int level)
    {
        long length = sb.Length + 1 + (long)level * (indent?.Length ?? 0);
        if (length > RenderContext.Current.Limits.MaxStringLength) RenderContext.Current.Built(length, "JSON text");
        sb.Append('\n');
        for (int i = 0; i < level; i++) sb.Append(indent);
    }

    private static void CheckLength(StringBuilder sb)
    {
        if (sb.Length > RenderContext.Current.Limits.MaxStringLength) RenderContext.Current.Built(sb.Length, "JSON text");
    }

    private static void Write(StringBuilder sb, object? v, bool ascii, string? indent, string itemSep, string keySep, bool sortKeys, int level, HashSet<object> active)
    {
        CheckLength(sb); // separators and indents are as long as the template likes
        if (v is List<object?> or PyTuple or PyDict)
        {
            RenderContext.EnsureValueDepth(level, " while encoding a JSON object");
            if (v is not PyTuple && !active.Add(v)) throw TemplateException.Value("Circular reference detected");
            try
            {
                WriteContainer(sb, v, ascii, indent, itemSep, keySep, sortKeys, level, active);
            }
            finally
            {
                active.Remove(v);
            }
            return;
        }
        switch (v)
        {
            case null: sb.Append("null"); return;
            case bool b: sb.Append(b ? "true" : "false"); return;
            case long or System.Numerics.BigInteger: sb.Append(Py.Repr(v)); return;
            case double d: sb.Append(FloatJson(d)); return;
            case string s: WriteString(sb, s, ascii); CheckLength(sb); return;
        }
        throw TemplateException.Type($"Object of type {Py.TypeName(v)} is not JSON serializable");
    }

    private static void WriteContainer(StringBuilder sb, object? v, bool ascii, string? indent, string itemSep, string keySep, bool sortKeys, int level, HashSet<object> active)
    {
        RenderContext.Current.Charge(v is PyDict pd ? pd.Count : Py.AsSequence(v)!.Count);
        switch (v)
        {
            case List<object?> or PyTuple:
                {
                    var seq = Py.AsSequence(v)!;
                    if (seq.Count == 0) { sb.Append("[]"); return; }
                    sb.Append('[');
                    for (int i = 0; i < seq.Count; i++)
                    {
                        if (i > 0) sb.Append(itemSep);
                        if (indent != null) NewLine(sb, indent, level + 1);
                        Write(sb, seq[i], ascii, indent, itemSep, keySep, sortKeys, level + 1, active);
                    }
                    if (indent != null) NewLine(sb, indent, level);
                    sb.Append(']');
                    return;
                }
            case PyDict dict:
                {
                    if (dict.Count == 0) { sb.Append("{}"); return; }
                    IEnumerable<KeyValuePair<object, object?>> items = dict;
                    if (sortKeys)
                    {
                        var list = dict.ToList();
                        Py.Sort(list, (x, y) => Py.Compare(x.Key, y.Key, "<"));
                        items = list;
                    }
                    sb.Append('{');
                    bool first = true;
                    foreach (var kv in items)
                    {
                        if (!first) sb.Append(itemSep);
                        first = false;
                        if (indent != null) NewLine(sb, indent, level + 1);
                        string key = kv.Key switch
                        {
                            string s => s,
                            double d => FloatJson(d),
                            bool b => b ? "true" : "false",
                            long or System.Numerics.BigInteger => Py.Repr(kv.Key),
                            _ => throw TemplateException.Type($"keys must be str, int, float, bool or None, not {Py.TypeName(kv.Key)}"),
                        };
                        WriteString(sb, key, ascii);
                        sb.Append(keySep);
                        Write(sb, kv.Value, ascii, indent, itemSep, keySep, sortKeys, level + 1, active);
                    }
                    if (indent != null) NewLine(sb, indent, level);
                    sb.Append('}');
                    return;
                }
        }
        throw TemplateException.Type($"Object of type {Py.TypeName(v)} is not JSON serializable");
    }

    private static string FloatJson(double d) =>
        double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : Py.FloatRepr(d);

    public static void WriteString(StringBuilder sb, string s, bool ascii)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || (ascii && c > 0x7e))
                        sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}
