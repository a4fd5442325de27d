using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Jamba.Inference.Templates;
using Microsoft.Extensions.AI;

namespace Jamba.Inference.Chat;

/// <summary>A rendered chat prompt and what the output parser needs to know about it.</summary>
/// <param name="Text">The prompt text, exactly as <c>apply_chat_template(..., add_generation_prompt=True, tokenize=False)</c> renders it.</param>
/// <param name="Tools">The tool definitions passed to the template (null when none).</param>
/// <param name="StartsInReasoning">Whether the prompt ends inside an opened <c>&lt;think&gt;</c> block (Reasoning 3B), so the output starts with reasoning.</param>
public sealed record JambaChatPrompt(string Text, JsonArray? Tools, bool StartsInReasoning)
{
    /// <summary>The request's documents, in prompt order (empty when none); citations are resolved against them.</summary>
    public IReadOnlyList<JambaDocument> Documents { get; init; } = [];

    /// <summary>Whether the documents were rendered in the plain format (<see cref="JambaDocument.RenderPlain"/>) because the template takes none.</summary>
    public bool DocumentsRenderedPlain { get; init; }

    /// <summary>The citation mode asked for (the model is expected to end with a <c>&lt;citations&gt;</c> section).</summary>
    public JambaCitationMode CitationMode { get; init; }
}

/// <summary>
/// Renders Microsoft.Extensions.AI conversations through a checkpoint's chat template, passing the
/// same variables Hugging Face's <c>apply_chat_template(messages, tools=..., documents=...,
/// add_generation_prompt=True, **kwargs)</c> receives from an OpenAI-style request:
/// <list type="bullet">
/// <item><c>messages</c>: <c>{"role", "content"}</c> per message (text parts joined; <c>""</c> when there is
/// none); <see cref="ChatMessage.AuthorName"/> → <c>name</c>; <see cref="TextReasoningContent"/> →
/// <c>reasoning_content</c>; <see cref="FunctionCallContent"/>s → <c>tool_calls</c>
/// (<c>[{"id", "type": "function", "function": {"name", "arguments": {…}}}]</c>); every
/// <see cref="FunctionResultContent"/> → its own <c>{"role": "tool", "tool_call_id", "name", "content"}</c>
/// message (non-string results as JSON). <see cref="ChatOptions.Instructions"/> become (or are prepended to)
/// the first system message.</item>
/// <item><c>tools</c>: <c>[{"type": "function", "function": {"name", "description", "parameters"}}]</c> from the
/// <see cref="AIFunctionDeclaration"/>s in <see cref="ChatOptions.Tools"/> (none when
/// <see cref="ChatOptions.ToolMode"/> is <see cref="ChatToolMode.None"/>), else <c>None</c>.</item>
/// <item><c>documents</c>: <c>ChatOptions.AdditionalProperties["documents"]</c> (a list of <see cref="JambaDocument"/>s or
/// of JSON objects, see <see cref="JambaChatOptionsExtensions.WithDocuments"/>), else <c>None</c>. A template that takes no
/// <c>documents</c> (the plain fallback, Jamba Reasoning 3B) gets them in the documented plain format instead
/// (<see cref="JambaDocument.RenderPlain"/>, followed by the citation-mode instructions when citation mode is on), put in
/// front of the first system message (or as a new first system message).</item>
/// <item>assistant messages that carry citations (<see cref="JambaCitations.FromMessage"/>) → <c>citations</c>
/// (<c>[{"document_id": n}]</c>), rendered by the template as <c>&lt;citations&gt;[n, …]&lt;/citations&gt;</c>.</item>
/// <item>extra variables: the formatter's defaults, then <c>knobs</c> when the template reads it: the request's
/// <c>AdditionalProperties["knobs"]</c> verbatim, or the defaults' knobs with <c>is_set = true</c>,
/// <c>citation_mode</c> (from <c>AdditionalProperties["citation_mode"]</c>) and <c>response_format = "json_object"</c>
/// (for <see cref="ChatResponseFormat.Json"/>) applied; <c>{"is_set": false}</c> when past citations need a defined
/// <c>knobs</c> (the 1.6/1.7 template reads <c>knobs.is_set</c> for them); then
/// <c>ChatOptions.AdditionalProperties["chat_template_kwargs"]</c> (an object; wins on clashes).</item>
/// </list>
/// Thread-safe.
/// </summary>
public sealed class JambaChatFormatter
{
    /// <summary>The <see cref="ChatOptions.AdditionalProperties"/> key of RAG documents.</summary>
    public const string DocumentsKey = "documents";
    /// <summary>The <see cref="ChatOptions.AdditionalProperties"/> key of extra template variables (as in vLLM).</summary>
    public const string ChatTemplateKwargsKey = "chat_template_kwargs";

    private static readonly JsonSerializerOptions SerializerOptions = AIJsonUtilities.DefaultOptions;
    private readonly IReadOnlyDictionary<string, JsonNode?> _kwargs;

    /// <summary>Creates a formatter.</summary>
    /// <param name="template">The chat template.</param>
    /// <param name="bosToken">Text of the BOS token (the template's <c>bos_token</c>), or null to leave it undefined.</param>
    /// <param name="eosToken">Text of the EOS token (<c>eos_token</c>), or null.</param>
    /// <param name="templateKwargs">Extra template variables for every prompt (copied).</param>
    public JambaChatFormatter(ChatTemplate template, string? bosToken = null, string? eosToken = null, IEnumerable<KeyValuePair<string, JsonNode?>>? templateKwargs = null)
    {
        Template = template ?? throw new ArgumentNullException(nameof(template));
        BosToken = bosToken;
        EosToken = eosToken;
        _kwargs = (templateKwargs ?? []).ToDictionary(kv => kv.Key, kv => kv.Value?.DeepClone());
    }

    /// <summary>The chat template.</summary>
    public ChatTemplate Template { get; }
    /// <summary>The BOS token text passed as <c>bos_token</c>.</summary>
    public string? BosToken { get; }
    /// <summary>The EOS token text passed as <c>eos_token</c>.</summary>
    public string? EosToken { get; }

    /// <summary>Renders <paramref name="messages"/> (and the tools, documents and template variables of <paramref name="options"/>) with the generation prompt.</summary>
    /// <param name="messages">The conversation.</param>
    /// <param name="options">Request options (read only).</param>
    /// <exception cref="TemplateException">The template rejected the conversation (e.g. an unsupported role order).</exception>
    /// <exception cref="ArgumentException">An additional property has an unusable value.</exception>
    public JambaChatPrompt Format(IEnumerable<ChatMessage> messages, ChatOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var templateMessages = ToTemplateMessages(messages, options?.Instructions);
        if (SchemaInstructions(options?.ResponseFormat) is { } schemaText)
        {
            // The template's JSON mode asks to follow "any schema given": the schema goes into the system message.
            if (templateMessages.Count > 0 && templateMessages[0] is JsonObject sys && (string?)sys["role"] == "system")
            {
                string existing = sys["content"] is JsonValue v && v.TryGetValue<string>(out var t) ? t : "";
                sys["content"] = existing.Length == 0 ? schemaText : existing + "\n\n" + schemaText;
            }
            else templateMessages.Insert(0, new JsonObject { ["role"] = "system", ["content"] = schemaText });
        }
        var tools = ToTemplateTools(options);
        var (documentNodes, documentList) = ReadDocumentNodes(options);
        JsonNode? documents = null;
        bool plain = false;
        var kwargs = new Dictionary<string, JsonNode?>();
        foreach (var kv in _kwargs) kwargs[kv.Key] = kv.Value?.DeepClone();
        bool readsKnobs = Template.Source.Contains("knobs", StringComparison.Ordinal);
        var knobs = BuildKnobs(options, kwargs.TryGetValue("knobs", out var defaultKnobs) ? defaultKnobs : null);
        if (readsKnobs && knobs is not null) kwargs["knobs"] = knobs;
        var citationMode = knobs?["citation_mode"] is JsonValue cm && cm.TryGetValue<string>(out var cms) && cms == "fast" ? JambaCitationMode.Fast : JambaCitationMode.Off;
        if (documentNodes is { Count: > 0 })
        {
            if (SupportsDocuments)
            {
                documents = documentNodes;
            }
            else
            {
                plain = true;
                string block = JambaDocument.RenderPlain(documentNodes.Cast<JsonObject>());
                if (citationMode == JambaCitationMode.Fast) block += "\n\n" + JambaDocument.PlainCitationInstructions;
                if (templateMessages.Count > 0 && templateMessages[0] is JsonObject first && (string?)first["role"] == "system")
                {
                    string existing = first["content"] is JsonValue v && v.TryGetValue<string>(out var t) ? t : "";
                    first["content"] = existing.Length == 0 ? block : block + "\n\n" + existing;
                }
                else
                {
                    templateMessages.Insert(0, new JsonObject { ["role"] = "system", ["content"] = block });
                }
            }
        }
        if (options?.AdditionalProperties is { } props && props.TryGetValue(ChatTemplateKwargsKey, out var extra) && extra is not null)
        {
            if (ToNode(extra) is not JsonObject obj)
                throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{ChatTemplateKwargsKey}\"] must be an object of template variables.", nameof(options));
            foreach (var kv in obj) kwargs[kv.Key] = kv.Value?.DeepClone();
        }
        if (readsKnobs && !kwargs.ContainsKey("knobs") && templateMessages.Any(m => m is JsonObject o && o.ContainsKey("citations")))
            kwargs["knobs"] = new JsonObject { ["is_set"] = false };
        string text = Template.Render(templateMessages, tools, documents, addGenerationPrompt: true, BosToken, EosToken, kwargs);
        bool reasoning = text.TrimEnd().EndsWith("<think>", StringComparison.Ordinal);
        if (kwargs.TryGetValue("knobs", out var finalKnobs))
            citationMode = finalKnobs?["is_set"] is JsonValue isSet && isSet.TryGetValue<bool>(out var b) && b
                && finalKnobs["citation_mode"] is JsonValue fm && fm.TryGetValue<string>(out var fms) && fms == "fast" ? JambaCitationMode.Fast : JambaCitationMode.Off;
        return new JambaChatPrompt(text, tools, reasoning) { Documents = documentList, DocumentsRenderedPlain = plain, CitationMode = citationMode };
    }

    /// <summary>Whether the template reads the <c>documents</c> variable (Jamba 1.5+); otherwise documents are rendered in the plain format.</summary>
    public bool SupportsDocuments => Template.Source.Contains("documents", StringComparison.Ordinal);

    /// <summary>
    /// The <c>knobs</c> a request asks for, or null when it asks for none: <c>AdditionalProperties["knobs"]</c> verbatim,
    /// else <paramref name="defaults"/> (copied) with <c>is_set = true</c>, <c>citation_mode</c> and
    /// <c>response_format = "json_object"</c> applied when the request sets them.
    /// </summary>
    internal static JsonObject? BuildKnobs(ChatOptions? options, JsonNode? defaults = null)
    {
        var props = options?.AdditionalProperties;
        if (props is not null && props.TryGetValue(JambaChatOptionsExtensions.KnobsKey, out var rawKnobs) && rawKnobs is not null)
        {
            return ToNode(rawKnobs) as JsonObject
                ?? throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{JambaChatOptionsExtensions.KnobsKey}\"] must be an object.", nameof(options));
        }
        string? citation = null;
        if (props is not null && props.TryGetValue(JambaChatOptionsExtensions.CitationModeKey, out var rawMode) && rawMode is not null)
        {
            citation = rawMode switch
            {
                JambaCitationMode m => m == JambaCitationMode.Fast ? "fast" : "off",
                _ => ToNode(rawMode) is JsonValue v && v.TryGetValue<string>(out var s) ? s : null,
            };
            if (citation is not ("fast" or "off"))
                throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{JambaChatOptionsExtensions.CitationModeKey}\"] must be \"fast\" or \"off\"; found {rawMode}.", nameof(options));
        }
        bool json = options?.ResponseFormat is ChatResponseFormatJson;
        if (citation is null && !json) return defaults?.DeepClone() as JsonObject;
        var knobs = defaults?.DeepClone() as JsonObject ?? new JsonObject();
        knobs["is_set"] = true;
        if (citation is not null) knobs["citation_mode"] = citation;
        if (json) knobs["response_format"] = "json_object";
        return knobs;
    }

    /// <summary>The text that gives the model a <see cref="ChatResponseFormat.ForJsonSchema(JsonElement, string?, string?)"/> schema
    /// (with its name and description), or null without one.</summary>
    internal static string? SchemaInstructions(ChatResponseFormat? format)
    {
        if (format is not ChatResponseFormatJson { Schema: { } schema } json) return null;
        var sb = new System.Text.StringBuilder("Respond with one JSON value");
        if (!string.IsNullOrEmpty(json.SchemaName)) sb.Append(" (").Append(json.SchemaName).Append(')');
        sb.Append(" that matches this JSON schema");
        if (!string.IsNullOrEmpty(json.SchemaDescription)) sb.Append(" — ").Append(json.SchemaDescription);
        sb.Append(":\n").Append(schema.GetRawText());
        return sb.ToString();
    }

    /// <summary>The request's documents as <see cref="JambaDocument"/>s.</summary>
    internal static IReadOnlyList<JambaDocument> ReadDocuments(ChatOptions? options) => ReadDocumentNodes(options).Documents;

    private static (JsonArray? Nodes, IReadOnlyList<JambaDocument> Documents) ReadDocumentNodes(ChatOptions? options)
    {
        if (options?.AdditionalProperties is not { } props || !props.TryGetValue(DocumentsKey, out var docs) || docs is null) return (null, []);
        var nodes = new JsonArray();
        var list = new List<JambaDocument>();
        if (docs is IEnumerable<JambaDocument> typed)
        {
            foreach (var d in typed)
            {
                ArgumentNullException.ThrowIfNull(d, nameof(options));
                nodes.Add(d.ToTemplateObject());
                list.Add(d);
            }
            return (nodes, list);
        }
        if (ToNode(docs) is not JsonArray array)
            throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{DocumentsKey}\"] must be a list of objects.", nameof(options));
        foreach (var item in array)
        {
            if (item is not JsonObject obj)
                throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{DocumentsKey}\"] must be a list of objects.", nameof(options));
            nodes.Add(obj.DeepClone());
            list.Add(JambaDocument.FromTemplateObject(obj));
        }
        return (nodes, list);
    }

    /// <summary>Converts a conversation to the template's <c>messages</c> list (see the class remarks).</summary>
    /// <param name="messages">The conversation.</param>
    /// <param name="instructions">System instructions to put first (merged into a leading system message), or null.</param>
    public static JsonArray ToTemplateMessages(IEnumerable<ChatMessage> messages, string? instructions = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var result = new JsonArray();
        var callNames = new Dictionary<string, string>(StringComparer.Ordinal);
        bool first = true;
        foreach (var message in messages)
        {
            ArgumentNullException.ThrowIfNull(message, nameof(messages));
            string role = message.Role.Value;
            var text = new StringBuilder();
            var reasoning = new StringBuilder();
            var calls = new JsonArray();
            var results = new List<FunctionResultContent>();
            foreach (var content in message.Contents)
            {
                switch (content)
                {
                    case TextContent t: text.Append(t.Text); break;
                    case TextReasoningContent r: reasoning.Append(r.Text); break;
                    case FunctionCallContent c:
                        callNames[c.CallId] = c.Name;
                        calls.Add(new JsonObject
                        {
                            ["id"] = c.CallId,
                            ["type"] = "function",
                            ["function"] = new JsonObject { ["name"] = c.Name, ["arguments"] = ArgumentsToNode(c.Arguments) },
                        });
                        break;
                    case FunctionResultContent r: results.Add(r); break;
                    case DataContent d when d.MediaType.StartsWith("text/", StringComparison.OrdinalIgnoreCase):
                        text.Append(Encoding.UTF8.GetString(d.Data.Span));
                        break;
                    case DataContent d:
                        throw new NotSupportedException($"Jamba models read text only: a message holds {d.MediaType} data{(d.Name is { } n ? $" ('{n}')" : "")}. Extract its text first (e.g. OCR or a PDF text extractor) and send that.");
                    case UriContent u:
                        throw new NotSupportedException($"Jamba models read text only: a message refers to {u.MediaType} content at {u.Uri}. Fetch it and send its text.");
                }
            }
            if (first)
            {
                first = false;
                if (!string.IsNullOrEmpty(instructions))
                {
                    if (role == "system")
                    {
                        result.Add(new JsonObject { ["role"] = "system", ["content"] = text.Length == 0 ? instructions : instructions + "\n\n" + text });
                        continue;
                    }
                    result.Add(new JsonObject { ["role"] = "system", ["content"] = instructions });
                }
            }
            if (results.Count > 0 || role == "tool")
            {
                foreach (var r in results)
                {
                    var tool = new JsonObject { ["role"] = "tool", ["tool_call_id"] = r.CallId };
                    if (callNames.TryGetValue(r.CallId, out var name)) tool["name"] = name;
                    tool["content"] = ResultToString(r);
                    result.Add(tool);
                }
                if (results.Count == 0) // a tool message carrying plain text
                    result.Add(new JsonObject { ["role"] = role, ["content"] = text.ToString() });
                continue;
            }
            var obj = new JsonObject { ["role"] = role, ["content"] = text.ToString() };
            if (!string.IsNullOrEmpty(message.AuthorName)) obj["name"] = message.AuthorName;
            if (reasoning.Length > 0) obj["reasoning_content"] = reasoning.ToString();
            if (calls.Count > 0) obj["tool_calls"] = calls;
            if (role == "assistant" && JambaCitations.FromMessage(message) is { } cited)
                obj["citations"] = new JsonArray(cited.Select(i => (JsonNode)new JsonObject { ["document_id"] = i }).ToArray());
            result.Add(obj);
        }
        if (first && !string.IsNullOrEmpty(instructions))
            result.Add(new JsonObject { ["role"] = "system", ["content"] = instructions });
        return result;
    }

    /// <summary>
    /// The template's <c>tools</c> list for <paramref name="options"/>: each <see cref="AIFunctionDeclaration"/> as
    /// <c>{"type": "function", "function": {"name", "description", "parameters"}}</c>; null when there are none or
    /// </summary>
    /// <remarks>With <see cref="ChatToolMode.None"/> the tools are still described (Semantic Kernel's
    /// <c>FunctionChoiceBehavior.None</c>: the model knows them, is never asked to call them); <see cref="JambaChatClient"/>
    /// then parses no tool calls.</remarks>
    /// <param name="options">Request options.</param>
    public static JsonArray? ToTemplateTools(ChatOptions? options)
    {
        if (options?.Tools is not { Count: > 0 } tools) return null; // ToolMode None: described, never called (the client does not parse calls)
        var list = new JsonArray();
        foreach (var tool in tools)
        {
            if (tool is not AIFunctionDeclaration f) continue;
            var function = new JsonObject { ["name"] = f.Name };
            if (!string.IsNullOrEmpty(f.Description)) function["description"] = f.Description;
            function["parameters"] = f.JsonSchema.ValueKind == JsonValueKind.Undefined
                ? new JsonObject { ["type"] = "object", ["properties"] = new JsonObject() }
                : JsonNode.Parse(f.JsonSchema.GetRawText());
            list.Add(new JsonObject { ["type"] = "function", ["function"] = function });
        }
        return list.Count == 0 ? null : list;
    }

    /// <summary>The text a tool result is rendered as: strings verbatim, anything else as JSON; an exception without result as <c>Error: message</c>.</summary>
    /// <param name="result">The function result.</param>
    public static string ResultToString(FunctionResultContent result)
    {
        ArgumentNullException.ThrowIfNull(result);
        return result.Result switch
        {
            null => result.Exception is { } ex ? "Error: " + ex.Message : "",
            string s => s,
            JsonElement { ValueKind: JsonValueKind.String } e => e.GetString()!,
            JsonElement { ValueKind: JsonValueKind.Undefined } => "",
            JsonElement e => e.GetRawText(),
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            JsonNode n => n.ToJsonString(SerializerOptions),
            TextContent t => t.Text,
            var other => JsonSerializer.Serialize(other, other.GetType(), SerializerOptions),
        };
    }

    private static JsonObject ArgumentsToNode(IDictionary<string, object?>? arguments)
    {
        var obj = new JsonObject();
        if (arguments is null) return obj;
        foreach (var kv in arguments) obj[kv.Key] = ToNode(kv.Value);
        return obj;
    }

    /// <summary>A value as a JSON node (JSON values kept as written, other objects serialized).</summary>
    internal static JsonNode? ToNode(object? value) => value switch
    {
        null => null,
        JsonNode n => n.DeepClone(),
        JsonElement { ValueKind: JsonValueKind.Undefined or JsonValueKind.Null } => null,
        JsonElement e => JsonNode.Parse(e.GetRawText()),
        JsonDocument d => JsonNode.Parse(d.RootElement.GetRawText()),
        string s => JsonValue.Create(s),
        _ => JsonSerializer.SerializeToNode(value, value.GetType(), SerializerOptions),
    };
}
