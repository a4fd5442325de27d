using Jamba.Inference.Engine;
using Microsoft.Extensions.Logging;

namespace Jamba.Server;

/// <summary>Settings of a <see cref="JambaServer"/> (what <c>jamba serve</c> fills from its flags).</summary>
public sealed class JambaServerOptions
{
    /// <summary>The checkpoint folder (with tokenizer files and, for chat, a chat template). Required.</summary>
    public string ModelPath { get; set; } = "";

    /// <summary>The model name clients ask for (<c>model</c>) and that responses report; null = the folder's name. A request
    /// naming another model gets 404.</summary>
    public string? ServedModelName { get; set; }

    /// <summary>The address to listen on: an IP address, <c>localhost</c>, or <c>0.0.0.0</c> / <c>*</c> for every interface (default <c>127.0.0.1</c>).</summary>
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>The port (default 8000; 0 picks a free one, see <see cref="JambaServer.BaseAddress"/>).</summary>
    public int Port { get; set; } = 8000;

    /// <summary>The key clients must send as <c>Authorization: Bearer KEY</c> on <c>/v1/*</c>; null = no authentication.
    /// <c>/health</c> and <c>/metrics</c> stay open.</summary>
    public string? ApiKey { get; set; }

    /// <summary>Largest request body accepted, in bytes (default 8 MiB); larger bodies get 413.</summary>
    public long MaxRequestBodyBytes { get; set; } = 8L * 1024 * 1024;

    /// <summary>Log prompt and completion text (default false: only sizes, timings and outcomes are logged).</summary>
    public bool LogPrompts { get; set; }

    /// <summary>Device and dtype of the model, and engine limits (<see cref="EngineOptions.MaxConcurrentSequences"/>,
    /// <see cref="EngineOptions.MaxQueuedRequests"/>, context). The server always sets <see cref="EngineOptions.QueueFull"/>
    /// to <see cref="QueueFullBehavior.Throw"/>: a full queue answers 429 instead of holding the connection.</summary>
    public ModelLoadOptions Load { get; set; } = new();

    /// <summary>The registry the model is loaded through (default <see cref="JambaModelRegistry.Shared"/>, so in-process
    /// clients of the same checkpoint share the server's engine).</summary>
    public JambaModelRegistry? Registry { get; set; }

    /// <summary><c>max_tokens</c> of a chat request that sets none (default 1024; the context limit applies too).</summary>
    public int DefaultMaxTokens { get; set; } = 1024;

    /// <summary>Largest <c>n</c> (choices per request; default 8). The choices run concurrently in the one engine.</summary>
    public int MaxChoices { get; set; } = 8;

    /// <summary>Seconds a 429 or 503 answer asks the client to wait (<c>Retry-After</c>; default 1).</summary>
    public int RetryAfterSeconds { get; set; } = 1;

    /// <summary>Where the server logs (null: no logging).</summary>
    public ILoggerFactory? LoggerFactory { get; set; }

    /// <summary>Loads the model instead of <see cref="JambaModelRegistry.LoadAsync"/> (tests delay it to observe the loading state).</summary>
    public Func<CancellationToken, Task<JambaModelHandle>>? ModelLoader { get; set; }

    /// <summary>Makes the chat client over the loaded model (tests script the model's output through it); null = the model's own.</summary>
    internal Func<JambaModelHandle, Jamba.Inference.Chat.JambaChatClient>? ChatClientFactory { get; set; }

    /// <summary>Checks the options.</summary>
    /// <exception cref="ArgumentException">Names the option.</exception>
    public void Validate()
    {
        static void Check(bool ok, string name, string message)
        {
            if (!ok) throw new ArgumentException($"{name} {message}", name);
        }
        Check(!string.IsNullOrWhiteSpace(ModelPath) || ModelLoader is not null, nameof(ModelPath), "is required: the checkpoint folder.");
        Check(Port is >= 0 and <= 65535, nameof(Port), $"must be between 0 and 65535; found {Port}.");
        Check(!string.IsNullOrWhiteSpace(Host), nameof(Host), "is required.");
        Check(ApiKey is null || ApiKey.Length > 0, nameof(ApiKey), "must be null or non-empty.");
        Check(MaxRequestBodyBytes >= 1024, nameof(MaxRequestBodyBytes), $"must be at least 1024; found {MaxRequestBodyBytes}.");
        Check(DefaultMaxTokens is >= 1 and <= 1 << 20, nameof(DefaultMaxTokens), $"must be between 1 and 1048576; found {DefaultMaxTokens}.");
        Check(MaxChoices is >= 1 and <= 128, nameof(MaxChoices), $"must be between 1 and 128; found {MaxChoices}.");
        Check(RetryAfterSeconds is >= 0 and <= 3600, nameof(RetryAfterSeconds), $"must be between 0 and 3600; found {RetryAfterSeconds}.");
        Check(ServedModelName is null || ServedModelName.Length > 0, nameof(ServedModelName), "must be null or non-empty.");
    }
}
