using System.Text.Json;
using System.Text.Json.Nodes;
using Jamba.Inference.Chat;
using Microsoft.Extensions.AI;

namespace Jamba.Cli.Infrastructure;

/// <summary>
/// Reads <c>chat --tools FILE</c> and <c>chat --documents FILE</c>. Every problem is a <see cref="CliException"/> with one
/// line naming the option, the file and what was expected.
/// </summary>
internal static class ChatInputFiles
{
    private const string ToolsShape = "a JSON array of function definitions {\"name\", \"description\", \"parameters\": JSON schema}";
    private const string DocumentsShape = "a JSON array of documents, each a string or {\"title\", \"text\"}";

    /// <summary>
    /// The tool declarations of <paramref name="path"/>: a JSON array of OpenAI-style function definitions,
    /// <c>{"name", "description"?, "parameters"?}</c> or the wrapped form <c>{"type": "function", "function": {…}}</c>.
    /// A function without <c>parameters</c> takes none (<c>{"type": "object", "properties": {}}</c>).
    /// </summary>
    public static IList<AITool> ReadTools(string path)
    {
        var items = ReadArray(path, "--tools", ToolsShape);
        var tools = new List<AITool>(items.Count);
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < items.Count; i++)
        {
            string where = $"--tools: '{path}' item {i}";
            var item = items[i] as JsonObject ?? throw new CliException($"{where} is not an object; expected {ToolsShape}.");
            if (item["function"] is JsonObject wrapped) item = wrapped;
            if (item["name"] is not JsonValue nameValue || !nameValue.TryGetValue<string>(out var name) || string.IsNullOrWhiteSpace(name))
                throw new CliException($"{where} has no \"name\" string; expected {ToolsShape}.");
            if (!names.Add(name)) throw new CliException($"{where}: the function name '{name}' is defined twice.");
            string? description = null;
            if (item["description"] is { } d)
            {
                if (d is not JsonValue dv || !dv.TryGetValue<string>(out description))
                    throw new CliException($"{where} ('{name}'): \"description\" must be a string.");
            }
            var parameters = item["parameters"] ?? new JsonObject { ["type"] = "object", ["properties"] = new JsonObject() };
            if (parameters is not JsonObject)
                throw new CliException($"{where} ('{name}'): \"parameters\" must be a JSON schema object, e.g. {{\"type\": \"object\", \"properties\": {{…}}}}.");
            using var schema = JsonDocument.Parse(parameters.ToJsonString());
            tools.Add(AIFunctionFactory.CreateDeclaration(name, description, schema.RootElement.Clone()));
        }
        return tools;
    }

    /// <summary>The documents of <paramref name="path"/>: a JSON array of strings (the text) or objects with a <c>text</c>
    /// string, an optional <c>title</c> and any other fields (passed to the template, see <see cref="JambaDocument"/>).</summary>
    public static IReadOnlyList<JambaDocument> ReadDocuments(string path)
    {
        var items = ReadArray(path, "--documents", DocumentsShape);
        var documents = new List<JambaDocument>(items.Count);
        for (int i = 0; i < items.Count; i++)
        {
            string where = $"--documents: '{path}' item {i}";
            switch (items[i])
            {
                case JsonValue v when v.TryGetValue<string>(out var text):
                    documents.Add(new JambaDocument(text));
                    break;
                case JsonObject o:
                    if (o["text"] is not JsonValue t || !t.TryGetValue<string>(out _))
                        throw new CliException($"{where} has no \"text\" string; expected {DocumentsShape}.");
                    if (o["title"] is { } title && (title is not JsonValue tv || !tv.TryGetValue<string>(out _)))
                        throw new CliException($"{where}: \"title\" must be a string.");
                    documents.Add(JambaDocument.FromTemplateObject(o));
                    break;
                default:
                    throw new CliException($"{where} is neither a string nor an object; expected {DocumentsShape}.");
            }
        }
        return documents;
    }

    private static JsonArray ReadArray(string path, string option, string shape)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            string why = ex is FileNotFoundException or DirectoryNotFoundException ? "does not exist" : $"cannot be read ({ex.Message})";
            throw new CliException($"{option}: '{path}' {why}; expected {shape}.");
        }
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(text, documentOptions: new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException ex)
        {
            throw new CliException($"{option}: '{path}' is not valid JSON ({ex.Message}); expected {shape}.");
        }
        return root as JsonArray ?? throw new CliException($"{option}: '{path}' holds {Describe(root)}; expected {shape}.");
    }

    private static string Describe(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject => "an object",
        JsonValue v when v.GetValueKind() == JsonValueKind.String => "a string",
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => "a number",
        _ => "a JSON value",
    };
}
