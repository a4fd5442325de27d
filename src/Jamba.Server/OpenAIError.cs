using System.Text.Json.Nodes;
using Jamba.Inference.Engine;
using Jamba.Inference.Templates;
using Microsoft.AspNetCore.Http;

namespace Jamba.Server;

/// <summary>
/// A request failed with an HTTP status and an error in OpenAI's shape:
/// <c>{"error": {"message", "type", "param", "code"}}</c>.
/// </summary>
public sealed class OpenAIErrorException : Exception
{
    /// <summary>Creates the error.</summary>
    public OpenAIErrorException(int status, string message, string type, string? param = null, string? code = null, Exception? inner = null)
        : base(message, inner)
    {
        Status = status;
        Type = type;
        Param = param;
        Code = code;
    }

    /// <summary>The HTTP status.</summary>
    public int Status { get; }
    /// <summary>OpenAI's error type (<c>invalid_request_error</c>, <c>authentication_error</c>, …).</summary>
    public string Type { get; }
    /// <summary>The request parameter at fault, by its OpenAI name (e.g. <c>top_p</c>, <c>messages[1].content</c>).</summary>
    public string? Param { get; }
    /// <summary>A machine-readable code (e.g. <c>model_not_found</c>, <c>context_length_exceeded</c>).</summary>
    public string? Code { get; }
    /// <summary>Seconds to send as <c>Retry-After</c> (429 and 503).</summary>
    public int? RetryAfterSeconds { get; init; }

    /// <summary>The body: <c>{"error": {…}}</c>.</summary>
    public JsonObject ToJson() => new()
    {
        ["error"] = new JsonObject
        {
            ["message"] = Message,
            ["type"] = Type,
            ["param"] = Param,
            ["code"] = Code,
        },
    };

    internal static OpenAIErrorException BadRequest(string message, string? param = null, string? code = null) =>
        new(StatusCodes.Status400BadRequest, message, "invalid_request_error", param, code);

    /// <summary>Maps what the request's processing threw to the status and error a client sees.</summary>
    internal static OpenAIErrorException From(Exception ex, int retryAfterSeconds) => ex switch
    {
        OpenAIErrorException e => e,
        EngineBusyException => new(StatusCodes.Status429TooManyRequests, "The server is busy: the engine's request queue is full. Retry after a moment.",
            "rate_limit_error", null, "engine_busy", ex) { RetryAfterSeconds = retryAfterSeconds },
        ContextLengthExceededException c => new(StatusCodes.Status400BadRequest,
            $"This model's maximum context length is {c.Limit} tokens; the prompt has {c.PromptTokens} tokens. Shorten the prompt.",
            "invalid_request_error", "messages", "context_length_exceeded", ex),
        TemplateException => new(StatusCodes.Status400BadRequest, $"The chat template rejected the conversation: {ex.Message}", "invalid_request_error", "messages", null, ex),
        ArgumentException a => new(StatusCodes.Status400BadRequest, StripParameter(a.Message), "invalid_request_error", a.ParamName is "options" or "request" ? null : a.ParamName, null, ex),
        _ => new(StatusCodes.Status500InternalServerError, $"The server failed to process the request ({ex.GetType().Name}).", "server_error", null, null, ex),
    };

    private static string StripParameter(string message)
    {
        int at = message.IndexOf(" (Parameter '", StringComparison.Ordinal);
        return at >= 0 ? message[..at] : message;
    }
}
