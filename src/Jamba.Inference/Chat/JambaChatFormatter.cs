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
public sealed record JambaChatPrompt(string Text, JsonArray? Tools, bool StartsInReasoning);

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
/// <item><c>documents</c>: <c>ChatOptions.AdditionalProperties["documents"]</c> (a JSON list of objects), else <c>None</c>.</item>
/// <item>extra variables: the formatter's defaults, then <c>knobs = {"is_set": true, "response_format": "json_object"}</c>
/// for <see cref="ChatResponseFormat.Json"/> when the template reads <c>knobs</c>, then
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
        var tools = ToTemplateTools(options);
        JsonNode? documents = null;
        var kwargs = new Dictionary<string, JsonNode?>();
        foreach (var kv in _kwargs) kwargs[kv.Key] = kv.Value?.DeepClone();
        if (options?.ResponseFormat is ChatResponseFormatJson && !kwargs.ContainsKey("knobs") && Template.Source.Contains("knobs", StringComparison.Ordinal))
            kwargs["knobs"] = new JsonObject { ["is_set"] = true, ["response_format"] = "json_object" };
        if (options?.AdditionalProperties is { } props)
        {
            if (props.TryGetValue(DocumentsKey, out var docs) && docs is not null)
            {
                documents = ToNode(docs);
                if (documents is not (null or JsonArray))
                    throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{DocumentsKey}\"] must be a list of objects.", nameof(options));
            }
            if (props.TryGetValue(ChatTemplateKwargsKey, out var extra) && extra is not null)
            {
                if (ToNode(extra) is not JsonObject obj)
                    throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{ChatTemplateKwargsKey}\"] must be an object of template variables.", nameof(options));
                foreach (var kv in obj) kwargs[kv.Key] = kv.Value?.DeepClone();
            }
        }
        string text = Template.Render(templateMessages, tools, documents, addGenerationPrompt: true, BosToken, EosToken, kwargs);
        bool reasoning = text.TrimEnd().EndsWith("<think>", StringComparison.Ordinal);
        return new JambaChatPrompt(text, tools, reasoning);
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
            result.Add(obj);
        }
        if (first && !string.IsNullOrEmpty(instructions))
            result.Add(new JsonObject { ["role"] = "system", ["content"] = instructions });
        return result;
    }

    /// <summary>
    /// The template's <c>tools</c> list for <paramref name="options"/>: each <see cref="AIFunctionDeclaration"/> as
    /// <c>{"type": "function", "function": {"name", "description", "parameters"}}</c>; null when there are none or
    /// <see cref="ChatOptions.ToolMode"/> is <see cref="ChatToolMode.None"/>.
    /// </summary>
    /// <param name="options">Request options.</param>
    public static JsonArray? ToTemplateTools(ChatOptions? options)
    {
        if (options?.Tools is not { Count: > 0 } tools || options.ToolMode is NoneChatToolMode) return null;
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
