using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Jamba.Inference.Chat;

/// <summary>
/// A document for retrieval-augmented generation, as the Jamba 1.5+ chat templates take it in their <c>documents</c>
/// variable: a title, the text and any other fields (rendered by the template as <c>Key: value</c> lines, the key
/// title-cased, in the order given). The template numbers documents from 0 (<c>## Document ID: 0</c>) and the model cites
/// them by that number; <see cref="Id"/> is the caller's own identifier, reported back in <see cref="JambaCitation"/>s
/// and never shown to the model.
/// </summary>
/// <param name="Text">The document's text.</param>
/// <param name="Title">Its title, or null.</param>
/// <param name="Id">The caller's identifier (not rendered), or null.</param>
public sealed record JambaDocument(string Text, string? Title = null, string? Id = null)
{
    /// <summary>
    /// Other fields passed to the template (e.g. <c>source</c>, <c>year</c>, <c>url</c>), in rendering order. Values are
    /// strings, numbers, booleans or JSON values (<see cref="JsonNode"/>/<see cref="JsonElement"/>); the template prints
    /// them with Python's <c>str()</c>. The keys <c>title</c> and <c>text</c> are reserved.
    /// </summary>
    public IReadOnlyDictionary<string, object?>? Fields { get; init; }

    /// <summary>
    /// The template's view of this document: <c>{"title"?, "text", …fields}</c> (the order of the recorded
    /// Hugging Face cases; the template prints the title, then the other fields, then the text).
    /// </summary>
    public JsonObject ToTemplateObject()
    {
        var obj = new JsonObject();
        if (Title is not null) obj["title"] = Title;
        obj["text"] = Text ?? "";
        if (Fields is not null)
        {
            foreach (var kv in Fields)
            {
                if (kv.Key is "title" or "text")
                    throw new ArgumentException($"The document field name '{kv.Key}' is reserved; use the {(kv.Key == "title" ? "Title" : "Text")} property.", nameof(Fields));
                obj[kv.Key] = JambaChatFormatter.ToNode(kv.Value);
            }
        }
        return obj;
    }

    /// <summary>
    /// Reads a document from the template form (<c>{"title", "text", …}</c>; an <c>id</c> key becomes <see cref="Id"/>
    /// and stays a field too, so that the rendering is unchanged).
    /// </summary>
    /// <param name="node">A JSON object.</param>
    /// <exception cref="ArgumentException">Not an object.</exception>
    public static JambaDocument FromTemplateObject(JsonNode? node)
    {
        if (node is not JsonObject obj) throw new ArgumentException("A document must be a JSON object.", nameof(node));
        string? title = obj["title"] is JsonValue t && t.TryGetValue<string>(out var ts) ? ts : obj["title"]?.ToJsonString();
        string text = obj["text"] is JsonValue x && x.TryGetValue<string>(out var xs) ? xs : obj["text"]?.ToJsonString() ?? "";
        string? id = obj["id"] switch
        {
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            JsonNode n => n.ToJsonString(),
            null => null,
        };
        var fields = new Dictionary<string, object?>();
        foreach (var kv in obj)
            if (kv.Key is not ("title" or "text")) fields[kv.Key] = kv.Value?.DeepClone();
        return new JambaDocument(text, title, id) { Fields = fields.Count == 0 ? null : fields };
    }

    /// <summary>
    /// The documented plain rendering used for chat templates that take no <c>documents</c> (the plain fallback,
    /// Jamba Reasoning 3B): the same text the Jamba 1.5+ templates put inside <c>&lt;documents&gt;</c>, so the
    /// document numbers (from 0) mean the same:
    /// <code>
    /// # Documents
    ///
    /// You can use the following documents for reference:
    ///
    /// ## Document ID: 0
    /// Title: …
    /// Source: …
    /// Text: …
    /// </code>
    /// Field keys are title-cased as jinja's <c>title</c> filter does; values are printed as Python's <c>str()</c> would
    /// for JSON values (strings verbatim, <c>True</c>/<c>False</c>/<c>None</c>, lists and objects in Python repr).
    /// </summary>
    /// <param name="documents">The documents (template objects, see <see cref="ToTemplateObject"/>).</param>
    public static string RenderPlain(IEnumerable<JsonObject> documents)
    {
        ArgumentNullException.ThrowIfNull(documents);
        var sb = new StringBuilder("# Documents\n\nYou can use the following documents for reference:");
        int i = 0;
        foreach (var doc in documents)
        {
            sb.Append("\n\n## Document ID: ").Append(i++);
            if (doc["title"] is { } title) sb.Append("\nTitle: ").Append(PythonStr(title));
            foreach (var kv in doc)
                if (kv.Key is not ("title" or "text")) sb.Append('\n').Append(TitleCase(kv.Key)).Append(": ").Append(PythonStr(kv.Value));
            sb.Append("\nText: ").Append(PythonStr(doc["text"]));
        }
        return sb.ToString();
    }

    /// <summary>The citation-mode instructions of the Jamba 1.5+ templates (used with the plain rendering).</summary>
    internal const string PlainCitationInstructions =
        "## Citation Mode\n\nProvide a list of references only for the documents you base your response on. Format your response" +
        " with the original answer followed by a citation section. Use this template: `{answer}<citations>DOCUMENT_IDS</citations>`," +
        " where DOCUMENT_IDS are the relevant document numbers (e.g. [2, 5, 9]), or [] if the answer cannot be supported by the provided documents.";

    private static string TitleCase(string key)
    {
        var sb = new StringBuilder(key.Length);
        bool start = true;
        foreach (char c in key)
        {
            if (char.IsWhiteSpace(c) || c is '-' or '(' or '{' or '[' or '<')
            {
                sb.Append(c);
                start = true;
                continue;
            }
            sb.Append(start ? char.ToUpperInvariant(c) : char.ToLowerInvariant(c));
            start = false;
        }
        return sb.ToString();
    }

    private static string PythonStr(JsonNode? node, bool nested = false)
    {
        switch (node)
        {
            case null: return "None";
            case JsonArray a: return "[" + string.Join(", ", a.Select(x => PythonStr(x, true))) + "]";
            case JsonObject o: return "{" + string.Join(", ", o.Select(kv => PythonRepr(kv.Key) + ": " + PythonStr(kv.Value, true))) + "}";
            case JsonValue v:
                using (var doc = JsonDocument.Parse(v.ToJsonString()))
                {
                    var e = doc.RootElement;
                    return e.ValueKind switch
                    {
                        JsonValueKind.String => nested ? PythonRepr(e.GetString()!) : e.GetString()!,
                        JsonValueKind.True => "True",
                        JsonValueKind.False => "False",
                        JsonValueKind.Null => "None",
                        _ => e.GetRawText(),
                    };
                }
            default: return node.ToJsonString();
        }
    }

    private static string PythonRepr(string s) =>
        s.Contains('\'') && !s.Contains('"') ? "\"" + s + "\"" : "'" + s.Replace("\\", "\\\\").Replace("'", "\\'") + "'";
}

/// <summary>A document the model cited.</summary>
/// <param name="DocumentIndex">The document's number in the prompt (0-based, as the template numbers them).</param>
/// <param name="DocumentId">The caller's <see cref="JambaDocument.Id"/> of that document, or null.</param>
/// <param name="Title">The document's title, or null (also null when the number is out of range).</param>
public sealed record JambaCitation(int DocumentIndex, string? DocumentId, string? Title);
