using System.Text.Json;
using Json.Schema;

namespace Jamba.Testing;

/// <summary>
/// Realistic JSON schemas for constrained-decoding tests, and an independent check of an output against one (the
/// JsonSchema.Net package, with format validation on).
/// </summary>
public static class JsonSchemaCheck
{
    /// <summary>Named schemas of the shapes applications ask for.</summary>
    public static IReadOnlyDictionary<string, string> Schemas { get; } = new Dictionary<string, string>
    {
        ["person"] = """
            {"type":"object","properties":{"name":{"type":"string","minLength":1,"maxLength":20},"age":{"type":"integer","minimum":0,"maximum":120},
             "email":{"type":["string","null"]},"nickname":{"type":"string"}},"required":["name","age","email"],"additionalProperties":false}
            """,
        ["order"] = """
            {"type":"object","properties":{"id":{"type":"string","format":"uuid"},"placed":{"type":"string","format":"date-time"},
             "status":{"type":"string","enum":["pending","shipped","delivered","cancelled"]},
             "lines":{"type":"array","minItems":1,"maxItems":3,"items":{"type":"object","properties":{
               "sku":{"type":"string","maxLength":8},"qty":{"type":"integer","minimum":1,"maximum":99},"price":{"type":"number","exclusiveMinimum":0,"maximum":1000}},
               "required":["sku","qty","price"]}},"note":{"type":"string"}},"required":["id","status","lines"]}
            """,
        ["weather"] = """
            {"$schema":"https://json-schema.org/draft/2020-12/schema","title":"Weather","type":"object","properties":{
             "city":{"type":"string","description":"City name"},"date":{"type":"string","format":"date"},
             "temperatureC":{"type":"number","minimum":-90,"maximum":60},"conditions":{"enum":["sunny","cloudy","rain","snow",null]},
             "windKph":{"anyOf":[{"type":"integer","minimum":0,"maximum":400},{"type":"null"}]}},"required":["city","date","temperatureC","conditions"]}
            """,
        ["tasks"] = """
            {"type":"object","properties":{"title":{"type":"string"},"tasks":{"type":"array","maxItems":4,"items":{"$ref":"#/$defs/task"}}},
             "required":["title","tasks"],"$defs":{"task":{"type":"object","properties":{"text":{"type":"string","maxLength":30},
             "done":{"type":"boolean"},"priority":{"type":"integer","enum":[1,2,3]}},"required":["text","done"],"additionalProperties":false}}}
            """,
        ["tree"] = """
            {"$ref":"#/$defs/node","$defs":{"node":{"type":"object","properties":{"label":{"type":"string","maxLength":12},
             "children":{"type":"array","maxItems":2,"items":{"$ref":"#/$defs/node"}}},"required":["label"],"additionalProperties":false}}}
            """,
        ["matrix"] = """
            {"type":"object","properties":{"rows":{"type":"array","minItems":1,"maxItems":3,"items":{"type":"array","maxItems":3,"items":{"type":"number"}}},
             "tags":{"type":"object","additionalProperties":{"type":"string","maxLength":10}}},"required":["rows"]}
            """,
        ["quote"] = """
            {"type":"object","properties":{"text":{"type":"string","minLength":3},"lang":{"const":"fr"},"score":{"type":"number","minimum":-1,"maximum":1}},
             "required":["text","lang","score"]}
            """,
    };

    /// <summary>Whether <paramref name="json"/> parses and is valid against <paramref name="schema"/>; the reason when not.</summary>
    public static (bool Valid, string Detail) Validate(string schema, string json)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json); }
        catch (JsonException e) { return (false, "not JSON: " + e.Message + " in " + json); }
        using (doc)
        {
            var s = JsonSchema.FromText(schema);
            var result = s.Evaluate(doc.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List, RequireFormatValidation = true });
            if (result.IsValid) return (true, "");
            var errors = result.Details?.Where(d => d.Errors is { Count: > 0 }).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}")) ?? [];
            return (false, string.Join("; ", errors) + " in " + json);
        }
    }
}
