using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Jamba.Cli.Infrastructure;

/// <summary>Writes <c>--json</c> results: one JSON object on one line.</summary>
internal static class JsonOutput
{
    private static readonly JsonSerializerOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static void Write(CliIO io, JsonObject value)
    {
        io.Out.WriteLine(value.ToJsonString(Options));
        io.Out.Flush();
    }

    /// <summary>A finite number rounded to <paramref name="digits"/> decimals, or null.</summary>
    public static JsonNode? Number(double? value, int digits = 3) =>
        value is { } v && double.IsFinite(v) ? JsonValue.Create(Math.Round(v, digits)) : null;

    public static JsonArray Array<T>(IEnumerable<T> items) => new(items.Select(i => JsonValue.Create(i) as JsonNode).ToArray());
}
