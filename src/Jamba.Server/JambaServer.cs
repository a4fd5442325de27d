using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Jamba.Inference.Chat;
using Jamba.Inference.Engine;
using Jamba.Inference.Generation;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging.Abstractions;
using OpenTelemetry.Metrics;

namespace Jamba.Server;

/// <summary>
/// An OpenAI-compatible HTTP server over one Jamba model: <c>GET /v1/models</c>, <c>POST /v1/chat/completions</c>
/// (plain and server-sent events), <c>POST /v1/completions</c>, <c>GET /health</c> and <c>GET /metrics</c> (Prometheus text
/// format, exported by OpenTelemetry from the engine's <see cref="EngineInstruments"/> and the server's own instruments).
/// </summary>
/// <remarks>
/// <para>Kestrel starts first and the model loads in the background: until it is ready, <c>/health</c> and <c>/v1/*</c>
/// answer 503 (with <c>Retry-After</c>). Chat requests go through the session layer (<see cref="JambaChatClient"/> over the
/// loaded <see cref="JambaModelHandle"/>): the checkpoint's chat template, tool calls, documents, reasoning. Completions
/// are raw generations of the engine. Every request is a sequence of the one engine (continuous batching); nothing is
/// serialised behind a lock. A client that disconnects cancels its sequence within one engine step.</para>
/// <para>Errors use OpenAI's shape <c>{"error": {"message", "type", "param", "code"}}</c>: 400 for bad JSON or parameters
/// (named as OpenAI names them) and for prompts over the context limit, 401 for a missing or wrong key, 404 for another
/// model name, 413 for bodies over <see cref="JambaServerOptions.MaxRequestBodyBytes"/>, 429 when the engine's queue is
/// full, 503 while the model loads.</para>
/// </remarks>
public sealed class JambaServer : IAsyncDisposable
{
    /// <summary>The server's own meter (HTTP outcomes, time to first streamed byte).</summary>
    public const string MeterName = "Jamba.Server";

    private static readonly Meter ServerMeter = new(MeterName);
    internal static readonly Counter<long> HttpRequests = ServerMeter.CreateCounter<long>("jamba.server.requests", "{request}", "HTTP requests answered, by route and status.");
    internal static readonly Histogram<double> FirstChunk = ServerMeter.CreateHistogram<double>("jamba.server.time_to_first_chunk", "s",
        "Time from a streaming request's arrival to its first event.",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] });

    private readonly JambaServerOptions _options;
    private readonly WebApplication _app;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly byte[]? _keyHash;
    private Task? _loading;
    private volatile ModelState? _model;
    private volatile Exception? _loadError;
    private int _disposed;

    private JambaServer(JambaServerOptions options)
    {
        _options = options;
        _logger = options.LoggerFactory?.CreateLogger<JambaServer>() ?? NullLogger<JambaServer>.Instance;
        _keyHash = options.ApiKey is null ? null : SHA256.HashData(Encoding.UTF8.GetBytes(options.ApiKey));
        ModelName = options.ServedModelName ?? Path.GetFileName(Path.GetFullPath(options.ModelPath.Length > 0 ? options.ModelPath : ".").TrimEnd(Path.DirectorySeparatorChar));

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = "Jamba.Server", ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        if (options.LoggerFactory is { } factory) builder.Services.AddSingleton(factory);
        builder.WebHost.UseKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
            k.AddServerHeader = false;
            switch (options.Host)
            {
                case "localhost": k.ListenLocalhost(options.Port); break;
                case "*" or "0.0.0.0": k.Listen(IPAddress.Any, options.Port); break;
                case "::": k.Listen(IPAddress.IPv6Any, options.Port); break;
                default:
                    if (!IPAddress.TryParse(options.Host, out var address))
                        throw new ArgumentException($"Host must be an IP address, localhost or 0.0.0.0; found '{options.Host}'.", nameof(options));
                    k.Listen(address, options.Port);
                    break;
            }
        });
        builder.Services.AddOpenTelemetry().WithMetrics(m => m
            .AddMeter(EngineInstruments.MeterName, MeterName)
            .AddPrometheusExporter(p => p.ScrapeResponseCacheDurationMilliseconds = 0));
        _app = builder.Build();
        _app.Use(Guard);
        _app.MapPrometheusScrapingEndpoint("/metrics");
        _app.MapGet("/health", Health);
        _app.MapGet("/v1/models", Models);
        _app.MapPost("/v1/chat/completions", ctx => ChatCompletions.HandleAsync(this, ctx));
        _app.MapPost("/v1/completions", ctx => Completions.HandleAsync(this, ctx));
        _app.MapFallback(ctx => throw new OpenAIErrorException(StatusCodes.Status404NotFound, $"No route for {ctx.Request.Method} {ctx.Request.Path}.", "invalid_request_error", null, "not_found"));
    }

    /// <summary>Creates a server (not started).</summary>
    /// <exception cref="ArgumentException">Invalid options.</exception>
    public static JambaServer Create(JambaServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return new JambaServer(options);
    }

    /// <summary>Creates and starts a server; the model loads in the background (see <see cref="ModelReady"/>).</summary>
    public static async Task<JambaServer> StartAsync(JambaServerOptions options, CancellationToken cancellationToken = default)
    {
        var server = Create(options);
        try
        {
            await server.StartAsync(cancellationToken).ConfigureAwait(false);
            return server;
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The model name served (<c>model</c> of requests and responses).</summary>
    public string ModelName { get; }

    /// <summary>The address the server listens on (e.g. <c>http://127.0.0.1:8000/</c>), known once started.</summary>
    public Uri BaseAddress { get; private set; } = new("http://127.0.0.1/");

    /// <summary>Completes when the model is loaded (faults when its load failed).</summary>
    public Task ModelReady => _loading ?? throw new InvalidOperationException("The server has not been started.");

    /// <summary>Whether the model is loaded.</summary>
    public bool IsReady => _model is not null;

    /// <summary>The loaded model, or null while it loads.</summary>
    public JambaModelHandle? ModelHandle => _model?.Handle;

    internal JambaServerOptions Options => _options;
    internal ILogger Logger => _logger;

    /// <summary>Starts Kestrel, then loads the model in the background.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        await _app.StartAsync(cancellationToken).ConfigureAwait(false);
        var addresses = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses;
        string first = addresses?.FirstOrDefault() ?? $"http://{_options.Host}:{_options.Port}";
        first = first.Replace("://[::]", "://localhost", StringComparison.Ordinal).Replace("://0.0.0.0", "://localhost", StringComparison.Ordinal);
        BaseAddress = new Uri(first.EndsWith('/') ? first : first + "/");
        _logger.LogInformation("Listening on {Address}; loading {Model}", BaseAddress, _options.ModelPath);
        _loading = Task.Run(LoadAsync, CancellationToken.None);
    }

    private async Task LoadAsync()
    {
        var clock = Stopwatch.StartNew();
        JambaModelHandle? handle = null;
        try
        {
            if (_options.ModelLoader is { } loader)
            {
                handle = await loader(_stopping.Token).ConfigureAwait(false);
            }
            else
            {
                var asked = _options.Load.Engine ?? new EngineOptions();
                var engine = asked.Clone();
                engine.QueueFull = QueueFullBehavior.Throw;
                var registry = _options.Registry ?? JambaModelRegistry.Shared;
                var load = new ModelLoadOptions { Model = _options.Load.Model ?? new(), Engine = engine };
                try
                {
                    handle = await registry.LoadAsync(_options.ModelPath, load, null, _stopping.Token).ConfigureAwait(false);
                }
                catch (EngineOptionsConflictException) when (asked.IsDefault)
                {
                    // Already loaded in this process by someone else: asking for nothing but the full-queue answer, share that
                    // engine (continuous batching with its other users) under its own options.
                    handle = await registry.LoadAsync(_options.ModelPath, new ModelLoadOptions { Model = load.Model }, null, _stopping.Token).ConfigureAwait(false);
                    if (handle.Engine.Options.QueueFull != QueueFullBehavior.Throw)
                        _logger.LogWarning("{Model} is already loaded in this process with QueueFull = {Behavior}; requests over its queue wait instead of getting 429.", handle.Path, handle.Engine.Options.QueueFull);
                }
            }
            var defaults = new GenerationOptions { MaxNewTokens = _options.DefaultMaxTokens, Temperature = 1f };
            var client = _options.ChatClientFactory?.Invoke(handle) ?? new JambaChatClient(handle, new JambaChatClientOptions { ModelId = ModelName, DefaultGenerationOptions = defaults },
                _options.LoggerFactory?.CreateLogger<JambaChatClient>());
            _model = new ModelState(handle, client, handle.Tokenizer ?? throw new InvalidOperationException($"The checkpoint '{handle.Path}' has no tokenizer files; the server needs one."),
                DateTimeOffset.UtcNow.ToUnixTimeSeconds());
            _logger.LogInformation("Model {Model} ready in {Seconds:F1} s ({Device}, {DType}); serving as '{Name}'", handle.Path, clock.Elapsed.TotalSeconds, handle.Device, handle.DType, ModelName);
        }
        catch (Exception ex)
        {
            handle?.Dispose();
            _loadError = ex;
            if (ex is not OperationCanceledException) _logger.LogError(ex, "Loading {Model} failed", _options.ModelPath);
            throw;
        }
    }

    /// <summary>The loaded model, or the 503 a request gets while it loads (or after its load failed).</summary>
    internal ModelState RequireModel()
    {
        if (_model is { } model) return model;
        if (_loadError is { } error)
            throw new OpenAIErrorException(StatusCodes.Status503ServiceUnavailable, $"The model failed to load: {error.Message}", "service_unavailable", null, "model_load_failed");
        throw new OpenAIErrorException(StatusCodes.Status503ServiceUnavailable, "The model is loading; retry shortly.", "service_unavailable", null, "model_loading")
        {
            RetryAfterSeconds = _options.RetryAfterSeconds,
        };
    }

    /// <summary>404 unless <paramref name="model"/> is null or the served name.</summary>
    internal void CheckModel(string? model)
    {
        if (model is null || model == ModelName) return;
        throw new OpenAIErrorException(StatusCodes.Status404NotFound, $"The model '{model}' does not exist; this server serves '{ModelName}'.", "invalid_request_error", "model", "model_not_found");
    }

    /// <summary>Authentication, error shapes and the request counter around every endpoint.</summary>
    private async Task Guard(HttpContext ctx, RequestDelegate next)
    {
        string route = ctx.Request.Path.Value ?? "";
        try
        {
            if (_keyHash is not null && route.StartsWith("/v1", StringComparison.Ordinal)) Authenticate(ctx);
            await next(ctx).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            ctx.Response.StatusCode = 499; // client closed the request (logged as such; nothing reaches the client)
        }
        catch (Exception ex)
        {
            var error = ex is BadHttpRequestException bad
                ? new OpenAIErrorException(bad.StatusCode, bad.StatusCode == StatusCodes.Status413PayloadTooLarge
                    ? $"The request body is larger than this server accepts ({_options.MaxRequestBodyBytes} bytes)." : bad.Message,
                    "invalid_request_error", null, bad.StatusCode == StatusCodes.Status413PayloadTooLarge ? "request_too_large" : null, ex)
                : OpenAIErrorException.From(ex, _options.RetryAfterSeconds);
            if (error.Status >= 500 && error.Status != StatusCodes.Status503ServiceUnavailable) _logger.LogError(ex, "{Method} {Route} failed", ctx.Request.Method, route);
            if (!ctx.Response.HasStarted) await WriteErrorAsync(ctx, error).ConfigureAwait(false);
        }
        finally
        {
            HttpRequests.Add(1, new TagList { { "route", RouteTag(route) }, { "status", ctx.Response.StatusCode } });
        }
    }

    private static string RouteTag(string route) => route switch
    {
        "/v1/chat/completions" or "/v1/completions" or "/v1/models" or "/health" or "/metrics" => route,
        _ => "other",
    };

    internal static async Task WriteErrorAsync(HttpContext ctx, OpenAIErrorException error)
    {
        ctx.Response.Clear();
        ctx.Response.StatusCode = error.Status;
        if (error.RetryAfterSeconds is { } seconds) ctx.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (error.Status == StatusCodes.Status401Unauthorized) ctx.Response.Headers.WWWAuthenticate = "Bearer";
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(Json.Write(error.ToJson()), ctx.RequestAborted).ConfigureAwait(false);
    }

    private void Authenticate(HttpContext ctx)
    {
        string header = ctx.Request.Headers.Authorization.ToString();
        const string Bearer = "Bearer ";
        if (!header.StartsWith(Bearer, StringComparison.OrdinalIgnoreCase))
            throw new OpenAIErrorException(StatusCodes.Status401Unauthorized, "Missing API key: send it as 'Authorization: Bearer KEY'.", "authentication_error", null, "invalid_api_key");
        // Hash both sides to a fixed length so that the comparison's time says nothing about the key (not even its length).
        var given = SHA256.HashData(Encoding.UTF8.GetBytes(header[Bearer.Length..].Trim()));
        if (!CryptographicOperations.FixedTimeEquals(given, _keyHash))
            throw new OpenAIErrorException(StatusCodes.Status401Unauthorized, "Incorrect API key provided.", "authentication_error", null, "invalid_api_key");
    }

    private async Task Health(HttpContext ctx)
    {
        var status = _model is not null ? "ok" : _loadError is not null ? "failed" : "loading";
        ctx.Response.StatusCode = _model is not null ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable;
        if (_model is null && _loadError is null) ctx.Response.Headers.RetryAfter = _options.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var body = new JsonObject { ["status"] = status, ["model"] = ModelName };
        if (_model is { } m)
        {
            body["running"] = m.Handle.Engine.RunningCount;
            body["queued"] = m.Handle.Engine.QueuedCount;
        }
        if (_loadError is { } e) body["error"] = e.Message;
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(Json.Write(body), ctx.RequestAborted).ConfigureAwait(false);
    }

    private async Task Models(HttpContext ctx)
    {
        var model = RequireModel();
        var body = new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray
            {
                new JsonObject
                {
                    ["id"] = ModelName,
                    ["object"] = "model",
                    ["created"] = model.Created,
                    ["owned_by"] = "jamba",
                    ["root"] = model.Handle.Path,
                    ["max_model_len"] = model.Handle.Engine.MaxContextTokens,
                },
            },
        };
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(Json.Write(body), ctx.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>Reads the request body as a JSON object (400 for anything else; 413 past the size limit).</summary>
    internal static async Task<JsonObject> ReadBodyAsync(HttpContext ctx)
    {
        JsonNode? node;
        try
        {
            node = await JsonNode.ParseAsync(ctx.Request.Body, cancellationToken: ctx.RequestAborted).ConfigureAwait(false);
        }
        catch (JsonException ex)
        {
            throw OpenAIErrorException.BadRequest($"The request body is not valid JSON: {ex.Message}", null, "invalid_json");
        }
        return node as JsonObject ?? throw OpenAIErrorException.BadRequest("The request body must be a JSON object.", null, "invalid_json");
    }

    /// <summary>Stops accepting requests; running ones are cancelled.</summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        _stopping.Cancel();
        await _app.StopAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Completes when the server has stopped (e.g. after <see cref="StopAsync"/>).</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => _app.WaitForShutdownAsync(cancellationToken);

    /// <summary>Stops the server and releases the model lease.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _stopping.Cancel();
        try
        {
            await _app.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        await _app.DisposeAsync().ConfigureAwait(false);
        if (_loading is not null)
        {
            try { await _loading.ConfigureAwait(false); }
            catch (Exception) { /* reported by ModelReady */ }
        }
        if (_model is { } model)
        {
            model.Client.Dispose();
            model.Handle.Dispose();
        }
        _stopping.Dispose();
    }

    internal sealed record ModelState(JambaModelHandle Handle, JambaChatClient Client, Jamba.Inference.Tokenization.JambaTokenizer Tokenizer, long Created);
}
