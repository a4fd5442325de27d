using System.ComponentModel;
using Jamba.Cli.Infrastructure;
using Jamba.Inference.Engine;
using Jamba.Server;
using Microsoft.Extensions.Logging;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Jamba.Cli.Commands;

internal sealed class ServeSettings : ModelSettings
{
    [CommandOption("--host <ADDRESS>")]
    [Description("Address to listen on: an IP address, localhost, or 0.0.0.0 for every interface.")]
    [DefaultValue("127.0.0.1")]
    public string Host { get; set; } = "127.0.0.1";

    [CommandOption("--port <PORT>")]
    [Description("Port to listen on (0 picks a free one).")]
    [DefaultValue(8000)]
    public int Port { get; set; } = 8000;

    [CommandOption("--api-key <KEY>")]
    [Description("Key clients must send as 'Authorization: Bearer KEY' on /v1/*. Default: $JAMBA_API_KEY, else none.")]
    public string? ApiKey { get; set; }

    [CommandOption("--served-model-name <NAME>")]
    [Description("The model name clients use (the 'model' field); default: the checkpoint folder's name.")]
    public string? ServedModelName { get; set; }

    [CommandOption("--max-concurrent <N>")]
    [Description("Sequences decoded together (the engine's batch).")]
    [DefaultValue(16)]
    public int MaxConcurrent { get; set; } = 16;

    [CommandOption("--max-queued <N>")]
    [Description("Requests waiting for a sequence slot before the server answers 429.")]
    [DefaultValue(256)]
    public int MaxQueued { get; set; } = 256;

    [CommandOption("--max-model-len <TOKENS>")]
    [Description("Longest context (prompt + completion) per request; default: the model's max_position_embeddings.")]
    public int? MaxModelLen { get; set; }

    [CommandOption("--max-body-bytes <BYTES>")]
    [Description("Largest request body accepted (larger ones get 413).")]
    [DefaultValue(8L * 1024 * 1024)]
    public long MaxBodyBytes { get; set; } = 8L * 1024 * 1024;

    [CommandOption("--default-max-tokens <N>")]
    [Description("max_tokens of chat requests that set none.")]
    [DefaultValue(1024)]
    public int DefaultMaxTokens { get; set; } = 1024;

    [CommandOption("--log-prompts")]
    [Description("Log prompt and completion text (off by default: only sizes and timings are logged).")]
    public bool LogPrompts { get; set; }

    public override ValidationResult Validate()
    {
        var baseResult = base.Validate();
        if (!baseResult.Successful) return baseResult;
        if (Port is < 0 or > 65535) return ValidationResult.Error($"--port must be between 0 and 65535; found {Port}.");
        if (MaxConcurrent is < 1 or > 1024) return ValidationResult.Error($"--max-concurrent must be between 1 and 1024; found {MaxConcurrent}.");
        if (MaxQueued is < 0 or > 100000) return ValidationResult.Error($"--max-queued must be between 0 and 100000; found {MaxQueued}.");
        if (MaxModelLen is < 1) return ValidationResult.Error($"--max-model-len must be positive; found {MaxModelLen}.");
        if (MaxBodyBytes < 1024) return ValidationResult.Error($"--max-body-bytes must be at least 1024; found {MaxBodyBytes}.");
        if (DefaultMaxTokens is < 1 or > 1 << 20) return ValidationResult.Error($"--default-max-tokens must be between 1 and 1048576; found {DefaultMaxTokens}.");
        if (ApiKey is { Length: 0 }) return ValidationResult.Error("--api-key must not be empty.");
        return ValidationResult.Success();
    }
}

/// <summary>
/// <c>jamba serve</c>: an OpenAI-compatible HTTP server (<see cref="JambaServer"/>) over one checkpoint until Ctrl+C.
/// It listens at once and loads the model in the background (503 until ready).
/// </summary>
internal sealed class ServeCommand(CliIO io) : AsyncCommand<ServeSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, ServeSettings settings, CancellationToken cancellationToken)
    {
        string path = ModelLocator.Resolve(settings.Model);
        var modelOptions = settings.ModelOptions();
        ModelLoading.CheckDevice(modelOptions.Device);
        using var loggerFactory = LoggerFactory.Create(b => b.AddProvider(new WriterLoggerProvider(io.Error)).SetMinimumLevel(LogLevel.Information));
        var options = new JambaServerOptions
        {
            ModelPath = path,
            ServedModelName = settings.ServedModelName,
            Host = settings.Host,
            Port = settings.Port,
            ApiKey = settings.ApiKey ?? (Environment.GetEnvironmentVariable("JAMBA_API_KEY") is { Length: > 0 } key ? key : null),
            MaxRequestBodyBytes = settings.MaxBodyBytes,
            DefaultMaxTokens = settings.DefaultMaxTokens,
            LogPrompts = settings.LogPrompts,
            LoggerFactory = loggerFactory,
            Load = new ModelLoadOptions
            {
                Model = modelOptions,
                Engine = new EngineOptions
                {
                    MaxConcurrentSequences = settings.MaxConcurrent,
                    MaxQueuedRequests = settings.MaxQueued,
                    MaxContextTokens = settings.MaxModelLen,
                    IntraOpThreads = settings.Threads,
                    QueueFull = QueueFullBehavior.Throw,
                },
            },
        };
        await using var server = await JambaServer.StartAsync(options, cancellationToken).ConfigureAwait(false);
        io.Error.WriteLine($"jamba serve: {server.ModelName} on {server.BaseAddress} (OpenAI API under {server.BaseAddress}v1; Ctrl+C stops)");
        io.Error.Flush();
        try
        {
            await server.ModelReady.WaitAsync(cancellationToken).ConfigureAwait(false);
            io.Error.WriteLine("jamba serve: model loaded; ready.");
            io.Error.Flush();
            await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            io.Error.WriteLine("jamba serve: stopping.");
        }
        await server.StopAsync(CancellationToken.None).ConfigureAwait(false);
        return ExitCodes.Success;
    }

    /// <summary>One line per log entry on the command's stderr.</summary>
    private sealed class WriterLoggerProvider(TextWriter writer) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new WriterLogger(writer, categoryName);

        public void Dispose() { }

        private sealed class WriterLogger(TextWriter writer, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information || (logLevel >= LogLevel.Warning && category.StartsWith("Microsoft", StringComparison.Ordinal));

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (!IsEnabled(logLevel) || (category.StartsWith("Microsoft", StringComparison.Ordinal) && logLevel < LogLevel.Warning)) return;
                string level = logLevel switch { LogLevel.Information => "info", LogLevel.Warning => "warn", LogLevel.Error => "error", LogLevel.Critical => "crit", _ => "debug" };
                string line = $"{DateTimeOffset.Now:HH:mm:ss} {level}: {formatter(state, exception)}" + (exception is null ? "" : $" ({exception.GetType().Name}: {exception.Message})");
                lock (writer)
                {
                    writer.WriteLine(line);
                    writer.Flush();
                }
            }
        }
    }
}
