using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Jamba.Inference.Generation;

/// <summary>A compiled schema node: what one JSON value may be. <see cref="MinLen"/> is the length in bytes of the
/// shortest value it accepts (the constraint's budget needs it).</summary>
internal abstract class SchemaNode
{
    public const int Infinite = 1 << 24;
    public int MinLen = Infinite;
    public abstract int ComputeMinLen();
}

internal sealed class RefNode : SchemaNode
{
    public SchemaNode? Target;
    public string Pointer = "";
    public override int ComputeMinLen() => Target?.MinLen ?? Infinite;
}

internal sealed class UnionNode : SchemaNode
{
    public SchemaNode[] Alternatives = [];
    public override int ComputeMinLen() => Alternatives.Length == 0 ? Infinite : Alternatives.Min(a => a.MinLen);
}

internal sealed class ObjectNode : SchemaNode
{
    public byte[][] Names = [];
    public SchemaNode[] Properties = [];
    public ulong RequiredMask;
    /// <summary>Schema of properties not in <see cref="Names"/>; null = none allowed.</summary>
    public SchemaNode? Additional;
    public int PropertyCost(int i) => Sat(Names[i].Length + 2 + 1 + 1 + Properties[i].MinLen);
    public int RequiredCost(ulong seen)
    {
        long sum = 0;
        ulong missing = RequiredMask & ~seen;
        while (missing != 0)
        {
            int i = System.Numerics.BitOperations.TrailingZeroCount(missing);
            missing &= missing - 1;
            sum += PropertyCost(i);
        }
        return Sat(sum);
    }
    /// <summary>Cheapest property (or additional one) that may still be added.</summary>
    public int CheapestOptional(ulong seen)
    {
        long best = Additional is null ? Infinite : Sat(2 + 1 + 1 + 1 + (long)Additional.MinLen);
        for (int i = 0; i < Names.Length; i++)
            if ((seen & (1UL << i)) == 0) best = Math.Min(best, PropertyCost(i));
        return Sat(best);
    }
    public override int ComputeMinLen() => Sat(2L + Math.Max(0, RequiredCost(0) - 1));
    internal static int Sat(long v) => (int)Math.Min(v, Infinite);
}

internal sealed class ArrayNode : SchemaNode
{
    public SchemaNode Items = null!;
    public int MinItems;
    public int MaxItems = -1;
    public override int ComputeMinLen() => ObjectNode.Sat(2L + (long)MinItems * Items.MinLen + Math.Max(0, MinItems - 1));
}

internal enum StringFormat { None, Date, DateTime, Uuid }

internal sealed class StringNode : SchemaNode
{
    public int MinLength;
    public int MaxLength = -1;
    public StringFormat Format;
    public override int ComputeMinLen() => Format switch
    {
        StringFormat.Date => 12,
        StringFormat.DateTime => 22,
        StringFormat.Uuid => 38,
        _ => 2 + MinLength,
    };
}

internal sealed class NumberNode : SchemaNode
{
    public bool Integer;
    public decimal? Minimum, Maximum;
    public bool ExclusiveMinimum, ExclusiveMaximum;
    public bool Bounded => Minimum is not null || Maximum is not null;
    public override int ComputeMinLen()
    {
        bool zeroOk = JsonNumberRules.InRange(this, 0m);
        return zeroOk ? 1 : 24;
    }
}

/// <summary>A closed set of exact serialized values (enum, const, true/false/null), sorted bytewise.</summary>
internal sealed class LiteralNode : SchemaNode
{
    public byte[][] Values = [];
    public override int ComputeMinLen() => Values.Length == 0 ? Infinite : Values.Min(v => v.Length);
}

/// <summary>
/// Compiles a JSON Schema (the subset that <c>AIJsonUtilities.CreateJsonSchema</c> and OpenAI structured outputs produce)
/// into <see cref="SchemaNode"/>s. Every keyword it does not implement throws <see cref="NotSupportedException"/> naming the
/// keyword and its location; annotation keywords are ignored. Sizes are bounded so that a schema from an HTTP request
/// cannot exhaust memory or time.
/// </summary>
internal sealed class JsonSchemaCompiler
{
    public const int MaxSchemaBytes = 1 << 20;
    public const int MaxNodes = 10_000;
    public const int MaxProperties = 64;
    public const int MaxEnumValues = 4096;
    public const int MaxLengthBound = 100_000;
    public const int MaxDepth = 64;

    private static readonly HashSet<string> Annotations = new(StringComparer.Ordinal)
    {
        "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly",
        "$defs", "definitions", "contentEncoding", "contentMediaType",
    };

    private readonly JsonElement _root;
    private readonly Dictionary<string, RefNode> _refs = new(StringComparer.Ordinal);
    private readonly List<SchemaNode> _nodes = new();

    private JsonSchemaCompiler(JsonElement root) => _root = root;

    /// <summary>Compiles <paramref name="schema"/>.</summary>
    public static SchemaNode Compile(JsonElement schema)
    {
        var c = new JsonSchemaCompiler(schema);
        var root = c.Node(schema, "#", 0);
        c.ResolveRefs();
        c.ComputeMinLengths();
        if (Deref(root).MinLen >= SchemaNode.Infinite)
            throw new ArgumentException("The JSON schema admits no finite value (every value would nest forever or no type is allowed).", "schema");
        return root;
    }

    /// <summary>Any JSON value (objects, arrays, strings, numbers, true, false, null).</summary>
    public static SchemaNode AnyValue(bool objectOnly)
    {
        var any = new UnionNode();
        var obj = new ObjectNode { Additional = any };
        var arr = new ArrayNode { Items = any };
        any.Alternatives = [obj, arr, new StringNode(), new NumberNode(), Literal(["true", "false", "null"])];
        var all = new List<SchemaNode> { any, obj, arr, any.Alternatives[2], any.Alternatives[3], any.Alternatives[4] };
        Fixpoint(all);
        return objectOnly ? obj : any;
    }

    public static SchemaNode Deref(SchemaNode n)
    {
        for (int i = 0; n is RefNode r && i < 1000; i++) n = r.Target!;
        return n;
    }

    private static LiteralNode Literal(IEnumerable<string> json)
    {
        var values = json.Select(Encoding.UTF8.GetBytes).ToList();
        values.Sort(CompareBytes);
        return new LiteralNode { Values = values.Distinct(ByteArrayComparer.Instance).ToArray() };
    }

    internal static int CompareBytes(byte[] a, byte[] b) => a.AsSpan().SequenceCompareTo(b);

    private T Add<T>(T node) where T : SchemaNode
    {
        if (_nodes.Count >= MaxNodes) throw new NotSupportedException($"The JSON schema is too large: more than {MaxNodes} schema nodes.");
        _nodes.Add(node);
        return node;
    }

    private static NotSupportedException Unsupported(string keyword, string path, string? why = null) =>
        new($"JSON schema keyword '{keyword}' at '{path}' is not supported by constrained decoding{(why is null ? "" : ": " + why)}.");

    private static ArgumentException Invalid(string path, string what) => new($"Invalid JSON schema at '{path}': {what}.", "schema");

    private SchemaNode Node(JsonElement s, string path, int depth)
    {
        if (depth > MaxDepth) throw Invalid(path, $"nested deeper than {MaxDepth} levels");
        if (s.ValueKind == JsonValueKind.True) return Add(new RefNode { Target = AnyValue(false), Pointer = path });
        if (s.ValueKind == JsonValueKind.False) throw Invalid(path, "the schema 'false' admits no value");
        if (s.ValueKind != JsonValueKind.Object) throw Invalid(path, $"a schema must be an object or a boolean, found {s.ValueKind}");

        var keys = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in s.EnumerateObject())
        {
            if (!keys.Add(p.Name)) throw Invalid(path, $"duplicate keyword '{p.Name}'");
            if (!Annotations.Contains(p.Name) && !Supported.Contains(p.Name) && p.Name != "pattern") throw Unsupported(p.Name, path);
        }

        if (s.TryGetProperty("$ref", out var refEl))
        {
            foreach (var k in keys)
                if (k != "$ref" && !Annotations.Contains(k)) throw Unsupported(k, path, "keywords beside '$ref' are not supported");
            if (refEl.ValueKind != JsonValueKind.String) throw Invalid(path + "/$ref", "must be a string");
            return Ref(refEl.GetString()!, path);
        }

        if (s.TryGetProperty("anyOf", out var anyOf) || s.TryGetProperty("oneOf", out anyOf))
        {
            string kw = s.TryGetProperty("anyOf", out _) ? "anyOf" : "oneOf";
            if (keys.Contains("anyOf") && keys.Contains("oneOf")) throw Unsupported("oneOf", path, "'anyOf' and 'oneOf' together");
            foreach (var k in keys)
                if (k != kw && !Annotations.Contains(k) && k != "type") throw Unsupported(k, path, $"keywords beside '{kw}' are not supported");
            if (anyOf.ValueKind != JsonValueKind.Array || anyOf.GetArrayLength() == 0) throw Invalid(path + "/" + kw, "must be a non-empty array");
            var alts = new List<SchemaNode>();
            int i = 0;
            foreach (var alt in anyOf.EnumerateArray()) alts.Add(Node(alt, $"{path}/{kw}/{i++}", depth + 1));
            return Add(new UnionNode { Alternatives = alts.ToArray() });
        }

        if (s.TryGetProperty("const", out var constEl))
            return Add(LiteralOf([constEl], path + "/const"));
        if (s.TryGetProperty("enum", out var enumEl))
        {
            if (enumEl.ValueKind != JsonValueKind.Array || enumEl.GetArrayLength() == 0) throw Invalid(path + "/enum", "must be a non-empty array");
            if (enumEl.GetArrayLength() > MaxEnumValues) throw Unsupported("enum", path, $"more than {MaxEnumValues} values");
            var types = TypesOf(s, path);
            var vals = enumEl.EnumerateArray().Where(v => types is null || types.Any(t => TypeMatches(t, v))).ToList();
            if (vals.Count == 0) throw Invalid(path + "/enum", "no value has an allowed 'type'");
            return Add(LiteralOf(vals, path + "/enum"));
        }

        var typeList = TypesOf(s, path);
        if (keys.Contains("pattern"))
        {
            // A pattern constrains strings only. Beside other types (System.Text.Json's "numbers may be read from strings":
            // {"type":["string","integer"],"pattern":…}) the string alternative is left out, which only narrows the output;
            // on strings themselves it is not supported.
            if (typeList is null || !typeList.Any(t => t != "string")) throw Unsupported("pattern", path);
            typeList = typeList.Where(t => t != "string").ToList();
        }
        if (typeList is null)
        {
            // No type: infer from the keywords present; none at all means any value.
            var inferred = new List<string>();
            if (keys.Overlaps(["properties", "required", "additionalProperties"])) inferred.Add("object");
            if (keys.Overlaps(["items", "minItems", "maxItems"])) inferred.Add("array");
            if (keys.Overlaps(["minLength", "maxLength", "format"])) inferred.Add("string");
            if (keys.Overlaps(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"])) inferred.Add("number");
            if (inferred.Count == 0) return Add(new RefNode { Target = AnyValue(false), Pointer = path });
            typeList = inferred;
        }
        var nodes = new List<SchemaNode>();
        foreach (var t in typeList.Distinct())
            nodes.Add(TypedNode(t, s, path, depth));
        return nodes.Count == 1 ? nodes[0] : Add(new UnionNode { Alternatives = nodes.ToArray() });
    }

    private static readonly HashSet<string> Supported = new(StringComparer.Ordinal)
    {
        "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum", "const", "format",
        "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "anyOf", "oneOf", "$ref",
    };

    private static List<string>? TypesOf(JsonElement s, string path)
    {
        if (!s.TryGetProperty("type", out var t)) return null;
        var list = new List<string>();
        if (t.ValueKind == JsonValueKind.String) list.Add(t.GetString()!);
        else if (t.ValueKind == JsonValueKind.Array)
            foreach (var e in t.EnumerateArray())
                list.Add(e.ValueKind == JsonValueKind.String ? e.GetString()! : throw Invalid(path + "/type", "entries must be strings"));
        else throw Invalid(path + "/type", "must be a string or an array of strings");
        if (list.Count == 0) throw Invalid(path + "/type", "must not be empty");
        foreach (var name in list)
            if (name is not ("object" or "array" or "string" or "number" or "integer" or "boolean" or "null"))
                throw Invalid(path + "/type", $"unknown type '{name}'");
        return list;
    }

    private static bool TypeMatches(string type, JsonElement v) => type switch
    {
        "object" => v.ValueKind == JsonValueKind.Object,
        "array" => v.ValueKind == JsonValueKind.Array,
        "string" => v.ValueKind == JsonValueKind.String,
        "number" => v.ValueKind == JsonValueKind.Number,
        "integer" => v.ValueKind == JsonValueKind.Number && decimal.TryParse(v.GetRawText(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && d == decimal.Truncate(d),
        "boolean" => v.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "null" => v.ValueKind == JsonValueKind.Null,
        _ => false,
    };

    private static readonly JsonSerializerOptions LiteralWriter = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static LiteralNode LiteralOf(IEnumerable<JsonElement> values, string path)
    {
        var list = new List<byte[]>();
        foreach (var v in values)
        {
            // The canonical compact serialization, with non-ASCII characters written as themselves.
            byte[] bytes = JsonSerializer.SerializeToUtf8Bytes(v, LiteralWriter);
            if (bytes.Length > 4096) throw Unsupported(path.EndsWith("const", StringComparison.Ordinal) ? "const" : "enum", path, "a value longer than 4096 bytes");
            list.Add(bytes);
        }
        list.Sort(CompareBytes);
        return new LiteralNode { Values = list.Distinct(ByteArrayComparer.Instance).ToArray() };
    }

    private SchemaNode TypedNode(string type, JsonElement s, string path, int depth)
    {
        switch (type)
        {
            case "object":
            {
                var names = new List<byte[]>();
                var props = new List<SchemaNode>();
                var nameIndex = new Dictionary<string, int>(StringComparer.Ordinal);
                if (s.TryGetProperty("properties", out var ps))
                {
                    if (ps.ValueKind != JsonValueKind.Object) throw Invalid(path + "/properties", "must be an object");
                    foreach (var p in ps.EnumerateObject())
                    {
                        if (names.Count >= MaxProperties) throw Unsupported("properties", path, $"more than {MaxProperties} properties in one object");
                        if (p.Name.Any(ch => ch < 0x20 || ch == '"' || ch == '\\'))
                            throw Unsupported("properties", path, $"property name {JsonSerializer.Serialize(p.Name)} needs escaping");
                        if (!nameIndex.TryAdd(p.Name, names.Count)) throw Invalid(path + "/properties", $"duplicate property '{p.Name}'");
                        names.Add(Encoding.UTF8.GetBytes(p.Name));
                        props.Add(Node(p.Value, $"{path}/properties/{Escape(p.Name)}", depth + 1));
                    }
                }
                ulong required = 0;
                if (s.TryGetProperty("required", out var req))
                {
                    if (req.ValueKind != JsonValueKind.Array) throw Invalid(path + "/required", "must be an array of strings");
                    foreach (var r in req.EnumerateArray())
                    {
                        if (r.ValueKind != JsonValueKind.String) throw Invalid(path + "/required", "must be an array of strings");
                        if (!nameIndex.TryGetValue(r.GetString()!, out int idx))
                            throw Unsupported("required", path, $"required property '{r.GetString()}' is not in 'properties'");
                        required |= 1UL << idx;
                    }
                }
                SchemaNode? additional;
                if (s.TryGetProperty("additionalProperties", out var ap))
                {
                    additional = ap.ValueKind == JsonValueKind.False ? null : Node(ap, path + "/additionalProperties", depth + 1);
                }
                else
                {
                    // Absent: with declared properties only those are produced (a stricter choice that every validator
                    // accepts); without any, any keys.
                    additional = names.Count > 0 ? null : AnyValue(false);
                }
                return Add(new ObjectNode { Names = names.ToArray(), Properties = props.ToArray(), RequiredMask = required, Additional = additional });
            }
            case "array":
            {
                SchemaNode items;
                if (s.TryGetProperty("items", out var it))
                {
                    if (it.ValueKind == JsonValueKind.Array) throw Unsupported("items", path, "the array (tuple) form");
                    items = Node(it, path + "/items", depth + 1);
                }
                else items = AnyValue(false);
                int min = Count(s, "minItems", path, 0), max = Count(s, "maxItems", path, -1);
                if (max >= 0 && max < min) throw Invalid(path, "maxItems is less than minItems");
                return Add(new ArrayNode { Items = items, MinItems = min, MaxItems = max });
            }
            case "string":
            {
                var node = new StringNode { MinLength = Count(s, "minLength", path, 0), MaxLength = Count(s, "maxLength", path, -1) };
                if (node.MaxLength >= 0 && node.MaxLength < node.MinLength) throw Invalid(path, "maxLength is less than minLength");
                if (s.TryGetProperty("format", out var f))
                {
                    node.Format = f.GetString() switch
                    {
                        "date" => StringFormat.Date,
                        "date-time" => StringFormat.DateTime,
                        "uuid" => StringFormat.Uuid,
                        var other => throw Unsupported("format", path, $"format '{other}' (supported: date, date-time, uuid)"),
                    };
                    if (node.MinLength > 0 || node.MaxLength >= 0) throw Unsupported("format", path, "format together with minLength/maxLength");
                }
                return Add(node);
            }
            case "number":
            case "integer":
            {
                var node = new NumberNode { Integer = type == "integer" };
                node.Minimum = Bound(s, "minimum", path);
                node.Maximum = Bound(s, "maximum", path);
                if (Bound(s, "exclusiveMinimum", path) is { } emin && (node.Minimum is null || emin >= node.Minimum))
                {
                    node.Minimum = emin;
                    node.ExclusiveMinimum = true;
                }
                if (Bound(s, "exclusiveMaximum", path) is { } emax && (node.Maximum is null || emax <= node.Maximum))
                {
                    node.Maximum = emax;
                    node.ExclusiveMaximum = true;
                }
                if (!JsonNumberRules.Feasible(node, "")) throw Invalid(path, "no number satisfies the bounds");
                return Add(node);
            }
            case "boolean": return Add(Literal(["false", "true"]));
            default: return Add(Literal(["null"]));
        }
    }

    private static decimal? Bound(JsonElement s, string key, string path)
    {
        if (!s.TryGetProperty(key, out var v)) return null;
        if (v.ValueKind == JsonValueKind.True || v.ValueKind == JsonValueKind.False)
            throw Unsupported(key, path, "the boolean form (draft 4)");
        if (v.ValueKind != JsonValueKind.Number) throw Invalid(path + "/" + key, "must be a number");
        if (!decimal.TryParse(v.GetRawText(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) || Math.Abs(d) > JsonNumberRules.Limit)
            throw Unsupported(key, path, $"a bound beyond ±{JsonNumberRules.Limit}");
        return d;
    }

    private static int Count(JsonElement s, string key, string path, int absent)
    {
        if (!s.TryGetProperty(key, out var v)) return absent;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDecimal(out var d) || d < 0 || d != decimal.Truncate(d))
            throw Invalid(path + "/" + key, "must be a non-negative integer");
        if (d > MaxLengthBound) throw Unsupported(key, path, $"a value above {MaxLengthBound}");
        return (int)d;
    }

    private static string Escape(string name) => name.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);

    private SchemaNode Ref(string reference, string path)
    {
        if (!reference.StartsWith('#')) throw Unsupported("$ref", path, $"only references inside the schema ('#…') are supported, found '{reference}'");
        if (_refs.TryGetValue(reference, out var known)) return known;
        var node = Add(new RefNode { Pointer = reference });
        _refs[reference] = node;
        return node;
    }

    private void ResolveRefs()
    {
        // Compiling a target may add more references; resolve until none is left.
        var done = new HashSet<string>(StringComparer.Ordinal);
        while (true)
        {
            var pending = _refs.Where(kv => !done.Contains(kv.Key)).ToList();
            if (pending.Count == 0) break;
            foreach (var (pointer, node) in pending)
            {
                done.Add(pointer);
                var target = ResolvePointer(pointer);
                node.Target = Node(target, pointer, 1);
            }
        }
        // A cycle of bare references (a → b → a) describes no value.
        foreach (var r in _nodes.OfType<RefNode>())
        {
            var seen = new HashSet<SchemaNode>(ReferenceEqualityComparer.Instance);
            SchemaNode n = r;
            while (n is RefNode rr)
            {
                if (!seen.Add(rr)) throw Invalid(r.Pointer, "'$ref' cycle that never reaches a schema");
                n = rr.Target!;
            }
        }
    }

    private JsonElement ResolvePointer(string reference)
    {
        string pointer = Uri.UnescapeDataString(reference.Substring(1));
        var e = _root;
        if (pointer.Length == 0) return e;
        if (pointer[0] != '/') throw Unsupported("$ref", reference, "anchors are not supported (use a JSON pointer)");
        foreach (var raw in pointer.Substring(1).Split('/'))
        {
            string part = raw.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
            if (e.ValueKind == JsonValueKind.Object && e.TryGetProperty(part, out var next)) e = next;
            else if (e.ValueKind == JsonValueKind.Array && int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int i) && i < e.GetArrayLength()) e = e[i];
            else throw Invalid(reference, "'$ref' points to nothing");
        }
        return e;
    }

    private void ComputeMinLengths() => Fixpoint(_nodes);

    private static void Fixpoint(List<SchemaNode> nodes)
    {
        for (int pass = 0; pass <= nodes.Count + 1; pass++)
        {
            bool changed = false;
            foreach (var n in nodes)
            {
                int v = n.ComputeMinLen();
                if (v < n.MinLen)
                {
                    n.MinLen = v;
                    changed = true;
                }
            }
            if (!changed) return;
        }
    }
}

internal sealed class ByteArrayComparer : IEqualityComparer<byte[]>
{
    public static readonly ByteArrayComparer Instance = new();
    public bool Equals(byte[]? x, byte[]? y) => x.AsSpan().SequenceEqual(y);
    public int GetHashCode(byte[] obj)
    {
        var h = new HashCode();
        h.AddBytes(obj);
        return h.ToHashCode();
    }
}

/// <summary>JSON number grammar and bounds on a prefix of a number's text.</summary>
internal static class JsonNumberRules
{
    public const decimal Limit = 1e15m;
    public const int MaxIntDigits = 15, MaxFracDigits = 12, MaxExpDigits = 2;

    public static bool InRange(NumberNode n, decimal v)
    {
        if (n.Minimum is { } lo && (n.ExclusiveMinimum ? v <= lo : v < lo)) return false;
        if (n.Maximum is { } hi && (n.ExclusiveMaximum ? v >= hi : v > hi)) return false;
        return true;
    }

    private ref struct Parts
    {
        public bool Negative;
        public ReadOnlySpan<char> Int, Frac, Exp;
        public bool Dot, E, ExpSign;
    }

    /// <summary>Splits a prefix; false when it is not a prefix of a JSON number that the node's grammar allows.</summary>
    private static bool Split(NumberNode n, ReadOnlySpan<char> t, out Parts p)
    {
        p = default;
        int i = 0;
        if (i < t.Length && t[i] == '-') { p.Negative = true; i++; }
        int s = i;
        while (i < t.Length && char.IsAsciiDigit(t[i])) i++;
        p.Int = t[s..i];
        if (p.Int.Length > 1 && p.Int[0] == '0') return false;
        if (p.Int.Length > MaxIntDigits) return false;
        if (i < t.Length && t[i] == '.')
        {
            if (n.Integer || p.Int.Length == 0) return false;
            p.Dot = true;
            i++;
            s = i;
            while (i < t.Length && char.IsAsciiDigit(t[i])) i++;
            p.Frac = t[s..i];
            if (p.Frac.Length > MaxFracDigits) return false;
        }
        if (i < t.Length && (t[i] == 'e' || t[i] == 'E'))
        {
            if (n.Integer || n.Bounded || p.Int.Length == 0 || (p.Dot && p.Frac.Length == 0)) return false;
            p.E = true;
            i++;
            if (i < t.Length && (t[i] == '+' || t[i] == '-')) { p.ExpSign = true; i++; }
            s = i;
            while (i < t.Length && char.IsAsciiDigit(t[i])) i++;
            p.Exp = t[s..i];
            if (p.Exp.Length > MaxExpDigits) return false;
        }
        return i == t.Length;
    }

    /// <summary>Whether <paramref name="text"/> is a whole number the node accepts.</summary>
    public static bool Complete(NumberNode n, ReadOnlySpan<char> text)
    {
        if (!Split(n, text, out var p)) return false;
        if (p.Int.Length == 0 || (p.Dot && p.Frac.Length == 0) || (p.E && p.Exp.Length == 0)) return false;
        if (p.E || !n.Bounded) return true;
        return InRange(n, decimal.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture));
    }

    /// <summary>Whether <paramref name="text"/> can still be completed into a number the node accepts.</summary>
    public static bool Feasible(NumberNode n, ReadOnlySpan<char> text)
    {
        if (!Split(n, text, out var p)) return false;
        if (p.E || !n.Bounded) return true;
        // The reachable magnitudes are a union of intervals; a sign mirrors them.
        decimal? lo = n.Minimum, hi = n.Maximum;
        bool exLo = n.ExclusiveMinimum, exHi = n.ExclusiveMaximum;
        if (p.Negative)
        {
            (lo, hi) = (hi is { } h ? -h : null, lo is { } l ? -l : null);
            (exLo, exHi) = (exHi, exLo);
        }
        if (p.Int.Length == 0)
        {
            // Magnitudes [0, 10^15) (integers: [0, 10^15 - 1]).
            if (text.Length == 0 && Feasible(n, "-")) return true;
            return Overlaps(n.Integer, 0m, Limit, lo, hi, exLo, exHi);
        }
        decimal m = decimal.Parse(p.Int, NumberStyles.None, CultureInfo.InvariantCulture);
        if (p.Dot)
        {
            decimal v = m;
            decimal scale = 1m;
            foreach (char c in p.Frac)
            {
                scale /= 10m;
                v += (c - '0') * scale;
            }
            bool more = p.Frac.Length < MaxFracDigits;
            if (!more) return InRange(lo, hi, exLo, exHi, v);
            return Overlaps(false, v, v + scale, lo, hi, exLo, exHi);
        }
        int maxMore = p.Int[0] == '0' ? 0 : MaxIntDigits - p.Int.Length;
        decimal pow = 1m;
        for (int k = 0; k <= maxMore; k++, pow *= 10m)
        {
            decimal a = m * pow, b = (m + 1) * pow;
            if (Overlaps(n.Integer, a, b, lo, hi, exLo, exHi)) return true;
        }
        return false;
    }

    private static bool InRange(decimal? lo, decimal? hi, bool exLo, bool exHi, decimal v) =>
        !(lo is { } l && (exLo ? v <= l : v < l)) && !(hi is { } h && (exHi ? v >= h : v > h));

    /// <summary>Whether some value of [a, b) (integers of [a, b - 1] when <paramref name="integer"/>) is within the bounds.</summary>
    private static bool Overlaps(bool integer, decimal a, decimal b, decimal? lo, decimal? hi, bool exLo, bool exHi)
    {
        if (integer)
        {
            decimal first = a, last = b - 1;
            if (lo is { } l) first = Math.Max(first, exLo ? Math.Floor(l) + 1 : Math.Ceiling(l));
            if (hi is { } h) last = Math.Min(last, exHi ? Math.Ceiling(h) - 1 : Math.Floor(h));
            return first <= last;
        }
        // Candidates: a itself, or a value just above max(a, lo) below b and hi.
        decimal start = a;
        if (lo is { } lo2 && lo2 > start) start = lo2;
        bool startIncluded = !(lo is { } lo3 && lo3 >= a && exLo && lo3 == start) ;
        if (start >= b) return false;
        if (hi is { } hh)
        {
            if (start > hh) return false;
            if (start == hh) return startIncluded && !exHi;
        }
        return true;
    }
}
