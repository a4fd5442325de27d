using System.Globalization;
using System.Text.Json;

namespace Jamba.Inference;

/// <summary>
/// A JSON value of an untrusted file together with its path (<c>model.merges[3]</c>), with typed accessors that
/// fail with the caller's exception naming the path, what was expected and what was found (never a
/// System.Text.Json <c>InvalidOperationException</c> / <c>KeyNotFoundException</c> / <c>FormatException</c>).
/// A JSON <c>null</c> counts as absent for the optional accessors.
/// </summary>
internal readonly struct JsonField
{
    /// <summary>Builds the caller's exception for a field path and a message.</summary>
    public delegate Exception ErrorFactory(string path, string message);

    private readonly ErrorFactory _error;

    public JsonField(JsonElement value, string path, ErrorFactory error)
    {
        Value = value;
        Path = path;
        _error = error;
    }

    /// <summary>The element.</summary>
    public JsonElement Value { get; }

    /// <summary>The JSON path of the element ("" for the root).</summary>
    public string Path { get; }

    /// <summary>The element's kind.</summary>
    public JsonValueKind Kind => Value.ValueKind;

    /// <summary>Whether the value is JSON null.</summary>
    public bool IsNull => Value.ValueKind == JsonValueKind.Null;

    /// <summary>An exception about this value.</summary>
    public Exception Error(string message) => _error(Path.Length == 0 ? "(root)" : Path, message);

    /// <summary>An exception about child <paramref name="name"/> of this value.</summary>
    public Exception ChildError(string name, string message) => _error(ChildPath(name), message);

    /// <summary>An exception about this value naming what was expected and what was found.</summary>
    public Exception Expected(string what) => Error($"expected {what}, found {Describe(Value)}.");

    /// <summary>The path of child <paramref name="name"/>.</summary>
    public string ChildPath(string name)
    {
        bool simple = name.Length > 0 && name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_');
        string part = simple ? name : "[" + Quote(name.Length > 60 ? name[..60] + "…" : name) + "]";
        return Path.Length == 0 ? part : simple ? Path + "." + part : Path + part;
    }

    /// <summary>This value, checked to be an object.</summary>
    public JsonField Object() => Kind == JsonValueKind.Object ? this : throw Expected("an object");

    /// <summary>This value, checked to be an array.</summary>
    public JsonField Array() => Kind == JsonValueKind.Array ? this : throw Expected("an array");

    /// <summary>Property <paramref name="name"/> of this object; null when absent or JSON null.</summary>
    public JsonField? Get(string name)
    {
        Object();
        return Value.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? new JsonField(v, ChildPath(name), _error) : null;
    }

    /// <summary>Whether this object has property <paramref name="name"/> (even JSON null).</summary>
    public bool Has(string name) => Object().Value.TryGetProperty(name, out _);

    /// <summary>Property <paramref name="name"/>, which must be present and not null.</summary>
    public JsonField Require(string name, string what) =>
        Get(name) ?? throw _error(ChildPath(name), $"is missing (expected {what}).");

    /// <summary>The string value.</summary>
    public string String() => Kind == JsonValueKind.String ? Value.GetString()! : throw Expected("a string");

    /// <summary>The boolean value.</summary>
    public bool Bool() => Kind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw Expected("true or false"),
    };

    /// <summary>The value as an integer in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public int Int(int min = int.MinValue, int max = int.MaxValue)
    {
        string range = RangeText(min, max);
        if (Kind != JsonValueKind.Number) throw Expected($"an integer{range}");
        if (!Value.TryGetInt64(out long v)) throw Expected($"an integer{range}");
        if (v < min || v > max) throw Error($"expected an integer{range}, found {v}.");
        return (int)v;
    }

    /// <summary>Property <paramref name="name"/> as a string, or null when absent / null.</summary>
    public string? OptString(string name) => Get(name)?.String();

    /// <summary>Property <paramref name="name"/> as a boolean, or null when absent / null.</summary>
    public bool? OptBool(string name) => Get(name)?.Bool();

    /// <summary>Property <paramref name="name"/> as an integer, or null when absent / null.</summary>
    public int? OptInt(string name, int min = int.MinValue, int max = int.MaxValue) => Get(name)?.Int(min, max);

    /// <summary>The items of this array, with their paths.</summary>
    public IEnumerable<JsonField> Items()
    {
        Array();
        int i = 0;
        var error = _error;
        string path = Path;
        foreach (var item in Value.EnumerateArray())
            yield return new JsonField(item, $"{path}[{i++}]", error);
    }

    /// <summary>The properties of this object, with their paths.</summary>
    public IEnumerable<(string Name, JsonField Value)> Properties()
    {
        Object();
        foreach (var p in Value.EnumerateObject())
            yield return (p.Name, new JsonField(p.Value, ChildPath(p.Name), _error));
    }

    /// <summary>Describes a value for an error message (strings shortened).</summary>
    public static string Describe(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.String => $"the string {Shorten(Quote(v.GetString()!))}",
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => $"an array of {v.GetArrayLength()}",
        JsonValueKind.Number => $"the number {Shorten(v.GetRawText())}",
        JsonValueKind.True => "true",
        JsonValueKind.False => "false",
        JsonValueKind.Null => "null",
        _ => "nothing",
    };

    private static readonly JsonSerializerOptions Readable = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>A JSON string literal for messages (only quotes, backslashes and control characters escaped).</summary>
    public static string Quote(string s) => JsonSerializer.Serialize(s, Readable);

    private static string Shorten(string s) => s.Length > 64 ? s[..64] + "…" : s;

    private static string RangeText(int min, int max) =>
        (min, max) switch
        {
            (int.MinValue, int.MaxValue) => " (32-bit)",
            (_, int.MaxValue) => $" >= {min.ToString(CultureInfo.InvariantCulture)}",
            _ => $" in [{min.ToString(CultureInfo.InvariantCulture)}, {max.ToString(CultureInfo.InvariantCulture)}]",
        };
}
