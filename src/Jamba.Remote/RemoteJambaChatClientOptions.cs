using Jamba.Inference.Chat;

namespace Jamba.Remote;

/// <summary>Settings of a <see cref="RemoteJambaChatClient"/>.</summary>
public sealed class RemoteJambaChatClientOptions
{
    /// <summary>The tool-call markup to parse when the server returns it as text (a vLLM started without
    /// <c>--tool-call-parser jamba</c>); default <see cref="ToolCallFormat.JambaToolCalls"/> (Jamba 1.5+).
    /// <see cref="ToolCallFormat.None"/> turns the parsing off.</summary>
    public ToolCallFormat ToolCallFormat { get; set; } = ToolCallFormat.JambaToolCalls;

    /// <summary>Whether the answer starts inside a reasoning block (a prompt that opens <c>&lt;think&gt;</c>, as Jamba
    /// Reasoning 3B's template does), so that the text up to <c>&lt;/think&gt;</c> is reported as reasoning when the server
    /// does not separate it (<c>reasoning_content</c>) itself. Default false.</summary>
    public bool StartsInReasoning { get; set; }

    /// <summary>The HTTP client requests go through (e.g. with a handler of the application's); null = the OpenAI client's own.</summary>
    public HttpClient? HttpClient { get; set; }

    /// <summary>Network timeout of one request (null = the OpenAI client's default, 100 s).</summary>
    public TimeSpan? NetworkTimeout { get; set; }

    internal RemoteJambaChatClientOptions Copy() => (RemoteJambaChatClientOptions)MemberwiseClone();
}
