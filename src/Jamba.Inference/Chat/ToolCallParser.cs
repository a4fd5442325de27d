using System.Diagnostics.CodeAnalysis;
using System.Text.Json;
using Jamba.Inference.Templates;
using Microsoft.Extensions.AI;

namespace Jamba.Inference.Chat;

/// <summary>How a chat template asks the model to write tool calls (and so how its output is parsed).</summary>
public enum ToolCallFormat
{
    /// <summary>No tool-call markup: the output is plain text.</summary>
    None,
    /// <summary>
    /// Jamba 1.5 / 1.6 / 1.7: one JSON list per turn,
    /// <c>&lt;tool_calls&gt;[{"name": …, "arguments": {…}}, …]&lt;/tool_calls&gt;</c>.
    /// </summary>
    JambaToolCalls,
    /// <summary>
    /// Jamba Reasoning 3B (Hermes / Qwen style): one JSON object per call,
    /// <c>&lt;tool_call&gt;{"name": …, "arguments": {…}}&lt;/tool_call&gt;</c>, possibly repeated.
    /// </summary>
    HermesToolCall,
}

/// <summary>Parses the JSON inside tool-call markup into <see cref="FunctionCallContent"/>s.</summary>
public static class ToolCallParser
{
    private static readonly JsonDocumentOptions Lenient = new() { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip };

    /// <summary>The opening tag of <paramref name="format"/> (empty for <see cref="ToolCallFormat.None"/>).</summary>
    public static string OpenTag(ToolCallFormat format) => format switch
    {
        ToolCallFormat.JambaToolCalls => "<tool_calls>",
        ToolCallFormat.HermesToolCall => "<tool_call>",
        _ => "",
    };

    /// <summary>The closing tag of <paramref name="format"/> (empty for <see cref="ToolCallFormat.None"/>).</summary>
    public static string CloseTag(ToolCallFormat format) => format switch
    {
        ToolCallFormat.JambaToolCalls => "</tool_calls>",
        ToolCallFormat.HermesToolCall => "</tool_call>",
        _ => "",
    };

    /// <summary>
    /// The format a chat template uses: <see cref="ToolCallFormat.JambaToolCalls"/> when it mentions
    /// <c>&lt;tool_calls&gt;</c> (Jamba 1.5+), <see cref="ToolCallFormat.HermesToolCall"/> when it mentions
    /// <c>&lt;tool_call&gt;</c> (Reasoning 3B), otherwise <see cref="ToolCallFormat.None"/>.
    /// </summary>
    /// <param name="template">The chat template.</param>
    public static ToolCallFormat DetectFormat(ChatTemplate template)
    {
        ArgumentNullException.ThrowIfNull(template);
        if (template.Source.Contains("<tool_calls>", StringComparison.Ordinal)) return ToolCallFormat.JambaToolCalls;
        if (template.Source.Contains("<tool_call>", StringComparison.Ordinal)) return ToolCallFormat.HermesToolCall;
        return ToolCallFormat.None;
    }

    /// <summary>
    /// Parses the text between the tags: a JSON list of calls or a single call object. Each call is
    /// <c>{"name": string, "arguments": object | JSON-object string | null}</c>; an OpenAI-style
    /// <c>{"id"?, "function": {"name", "arguments"}}</c> wrapper and <c>"parameters"</c> instead of
    /// <c>"arguments"</c> are accepted too. Never throws on model output.
    /// </summary>
    /// <param name="body">The JSON text.</param>
    /// <param name="calls">The calls (each with a fresh call id unless the model wrote one).</param>
    /// <param name="error">Why the text is not a valid call list.</param>
    /// <returns>Whether <paramref name="body"/> is a valid call list.</returns>
    public static bool TryParse(string body, [NotNullWhen(true)] out IReadOnlyList<FunctionCallContent>? calls, [NotNullWhen(false)] out string? error)
    {
        ArgumentNullException.ThrowIfNull(body);
        calls = null;
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(body.Trim(), Lenient);
        }
        catch (JsonException ex)
        {
            error = "invalid JSON: " + ex.Message;
            return false;
        }
        using (doc)
        {
            var root = doc.RootElement;
            var list = new List<FunctionCallContent>();
            if (root.ValueKind == JsonValueKind.Array)
            {
                int i = 0;
                foreach (var item in root.EnumerateArray())
                {
                    if (!TryParseCall(item, out var call, out error))
                    {
                        error = $"call {i}: {error}";
                        return false;
                    }
                    list.Add(call);
                    i++;
                }
            }
            else if (root.ValueKind == JsonValueKind.Object)
            {
                if (!TryParseCall(root, out var call, out error)) return false;
                list.Add(call);
            }
            else
            {
                error = $"expected a JSON list or object, found {root.ValueKind}";
                return false;
            }
            calls = list;
            error = null;
            return true;
        }
    }

    private static bool TryParseCall(JsonElement item, [NotNullWhen(true)] out FunctionCallContent? call, [NotNullWhen(false)] out string? error)
    {
        call = null;
        if (item.ValueKind != JsonValueKind.Object)
        {
            error = $"a call must be a JSON object, found {item.ValueKind}";
            return false;
        }
        string? id = item.TryGetProperty("id", out var idEl) && idEl.ValueKind == JsonValueKind.String ? idEl.GetString() : null;
        if (item.TryGetProperty("function", out var fn) && fn.ValueKind == JsonValueKind.Object) item = fn;
        if (!item.TryGetProperty("name", out var nameEl) || nameEl.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(nameEl.GetString()))
        {
            error = "missing or empty \"name\"";
            return false;
        }
        JsonElement args = default;
        bool hasArgs = item.TryGetProperty("arguments", out args) || item.TryGetProperty("parameters", out args);
        var arguments = new Dictionary<string, object?>();
        if (hasArgs)
        {
            switch (args.ValueKind)
            {
                case JsonValueKind.Null:
                case JsonValueKind.Undefined:
                    break;
                case JsonValueKind.Object:
                    AddArguments(args, arguments);
                    break;
                case JsonValueKind.String:
                    {
                        string text = args.GetString()!;
                        if (text.Trim().Length == 0) break;
                        try
                        {
                            using var inner = JsonDocument.Parse(text, Lenient);
                            if (inner.RootElement.ValueKind != JsonValueKind.Object)
                            {
                                error = "\"arguments\" string is not a JSON object";
                                return false;
                            }
                            AddArguments(inner.RootElement, arguments);
                        }
                        catch (JsonException ex)
                        {
                            error = "\"arguments\" string is not valid JSON: " + ex.Message;
                            return false;
                        }
                        break;
                    }
                default:
                    error = $"\"arguments\" must be an object, found {args.ValueKind}";
                    return false;
            }
        }
        call = new FunctionCallContent(string.IsNullOrEmpty(id) ? NewCallId() : id, nameEl.GetString()!.Trim(), arguments);
        error = null;
        return true;
    }

    private static void AddArguments(JsonElement obj, Dictionary<string, object?> into)
    {
        foreach (var p in obj.EnumerateObject())
            into[p.Name] = p.Value.Clone();
    }

    /// <summary>A fresh call id (<c>call_</c> + 24 hex digits): models do not write ids.</summary>
    public static string NewCallId() => "call_" + Guid.NewGuid().ToString("N")[..24];
}
