using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Jamba.Inference.Generation;

namespace Jamba.Remote;

/// <summary>One raw completion of a remote server.</summary>
/// <param name="Text">The generated text.</param>
/// <param name="FinishReason"><c>stop</c> or <c>length</c>.</param>
/// <param name="PromptTokens">Prompt tokens (the server's count).</param>
/// <param name="CompletionTokens">Generated tokens (the server's count).</param>
public sealed record RemoteCompletion(string Text, string FinishReason, int PromptTokens, int CompletionTokens);

/// <summary>
/// Raw prompt continuations (<c>POST /v1/completions</c>: no chat template) on an OpenAI-compatible server (<c>jamba serve</c>,
/// vLLM), with the engine's <see cref="GenerationOptions"/> sent under the names vLLM reads (<c>top_k</c>, <c>min_p</c>,
/// <c>repetition_penalty</c>, <c>ignore_eos</c>, <c>skip_special_tokens</c>). The OpenAI .NET client has no legacy
/// completions API, so this is a small HTTP client of its own. Thread-safe; requests run concurrently.
/// </summary>
public sealed class RemoteCompletionClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly bool _ownsHttp;
    private readonly Uri _completions;

    /// <summary>Creates a client of <paramref name="modelId"/> at <paramref name="endpoint"/>.</summary>
    /// <param name="endpoint">The server (<c>http://host:8000</c> or <c>…/v1</c>).</param>
    /// <param name="apiKey">The server's key, or null.</param>
    /// <param name="modelId">The served model name.</param>
    /// <param name="http">The HTTP client to use (not disposed); null creates one.</param>
    public RemoteCompletionClient(Uri endpoint, string? apiKey, string modelId, HttpClient? http = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelId);
        ModelId = modelId;
        ApiKey = apiKey;
        _completions = new Uri(RemoteEndpoint.ApiRoot(endpoint), "completions");
        _ownsHttp = http is null;
        _http = http ?? new HttpClient { Timeout = TimeSpan.FromMinutes(30) };
    }

    /// <summary>The served model name.</summary>
    public string ModelId { get; }

    private string? ApiKey { get; }

    /// <summary>The request body for <paramref name="prompt"/> and <paramref name="options"/>.</summary>
    public JsonObject CreateRequest(string prompt, GenerationOptions options)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(options);
        var body = new JsonObject
        {
            ["model"] = ModelId,
            ["prompt"] = prompt,
            ["max_tokens"] = options.MaxNewTokens,
            ["temperature"] = options.Temperature,
            ["top_p"] = options.TopP,
            ["top_k"] = options.TopK == 0 ? -1 : options.TopK,
            ["min_p"] = options.MinP,
            ["repetition_penalty"] = options.RepetitionPenalty,
            ["presence_penalty"] = options.PresencePenalty,
            ["frequency_penalty"] = options.FrequencyPenalty,
            ["skip_special_tokens"] = !options.IncludeSpecialTokensInText,
        };
        if (options.Seed is { } seed) body["seed"] = seed;
        if (options.IgnoreEos) body["ignore_eos"] = true;
        if (options.StopSequences.Count > 0) body["stop"] = new JsonArray(options.StopSequences.Select(s => (JsonNode)s).ToArray());
        if (options.Constraint is { } constraint)
            body["response_format"] = constraint.SchemaText is { } schema
                ? new JsonObject { ["type"] = "json_schema", ["json_schema"] = new JsonObject { ["name"] = "output", ["schema"] = JsonNode.Parse(schema) } }
                : new JsonObject { ["type"] = "json_object" };
        if (options.StopTokenIds.Count > 0) body["stop_token_ids"] = new JsonArray(options.StopTokenIds.Select(s => (JsonNode)s).ToArray());
        return body;
    }

    /// <summary>Generates a continuation of <paramref name="prompt"/>.</summary>
    /// <exception cref="HttpRequestException">The server answered with an error (its message included).</exception>
    public async Task<RemoteCompletion> CompleteAsync(string prompt, GenerationOptions options, CancellationToken cancellationToken = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, _completions)
        {
            Content = new StringContent(CreateRequest(prompt, options).ToJsonString(), Encoding.UTF8, "application/json"),
        };
        if (!string.IsNullOrEmpty(ApiKey)) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", ApiKey);
        using var response = await _http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        string text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            string message = text;
            try { message = JsonNode.Parse(text)?["error"]?["message"]?.GetValue<string>() ?? text; }
            catch (JsonException) { }
            throw new HttpRequestException($"{_completions} answered {(int)response.StatusCode}: {message}", null, response.StatusCode);
        }
        var root = JsonNode.Parse(text) ?? throw new HttpRequestException($"{_completions} answered an empty body.");
        var choice = root["choices"]?[0] ?? throw new HttpRequestException($"{_completions} answered no choice.");
        return new RemoteCompletion(
            choice["text"]?.GetValue<string>() ?? "",
            choice["finish_reason"]?.GetValue<string>() ?? "stop",
            root["usage"]?["prompt_tokens"]?.GetValue<int>() ?? 0,
            root["usage"]?["completion_tokens"]?.GetValue<int>() ?? 0);
    }

    /// <summary>Disposes the HTTP client when this client created it.</summary>
    public void Dispose()
    {
        if (_ownsHttp) _http.Dispose();
    }
}
