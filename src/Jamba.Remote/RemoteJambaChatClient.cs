using System.ClientModel;
using System.ClientModel.Primitives;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Jamba.Inference.Chat;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using OpenAI;
using OpenAI.Chat;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;
using ChatFinishReason = Microsoft.Extensions.AI.ChatFinishReason;

namespace Jamba.Remote;

/// <summary>
/// An <see cref="IChatClient"/> for a Jamba model behind an OpenAI-compatible server (<c>jamba serve</c>, vLLM). Underneath it
/// is the official OpenAI client (<see cref="ChatClient"/> through Microsoft.Extensions.AI.OpenAI's <c>AsIChatClient</c>);
/// this client adds what <see cref="JambaChatClient"/> does in-process, so that the same application code runs against
/// either with one setting changed:
/// <list type="bullet">
/// <item>request: <c>documents</c> (<see cref="JambaChatOptionsExtensions.WithDocuments"/>) and <c>chat_template_kwargs</c>
/// go into the request body as vLLM reads them; <c>citation_mode</c>, <c>knobs</c> and JSON mode become the template's
/// <c>knobs</c> (in <c>chat_template_kwargs</c>); <c>top_k</c>, <c>min_p</c> and <c>repetition_penalty</c> go as vLLM's extra
/// sampling parameters;</item>
/// <item>response: tool calls a server returns as raw <c>&lt;tool_calls&gt;</c> text (vLLM without a tool-call parser) become
/// <see cref="FunctionCallContent"/>s with finish reason <c>tool_calls</c> (<see cref="ChatOutputParser"/>, the in-process
/// parser); <c>&lt;think&gt;</c> reasoning is separated (or taken from the server's <c>reasoning_content</c>); a citation
/// section is taken out of the text and reported as citations.</item>
/// </list>
/// <para>Snapshots and <see cref="DocumentSession"/> exist only in-process. Thread-safe.</para>
/// </summary>
public sealed class RemoteJambaChatClient : DelegatingChatClient
{
    private readonly RemoteJambaChatClientOptions _options;
    private readonly ILogger _logger;
    private readonly ChatClientMetadata _metadata;

    /// <summary>Wraps <paramref name="inner"/>, an OpenAI-protocol chat client of the server.</summary>
    /// <param name="inner">The client that speaks to the server (e.g. <c>new ChatClient(...).AsIChatClient()</c>).</param>
    /// <param name="modelId">The served model name.</param>
    /// <param name="endpoint">The server's API root, for metadata (null if unknown).</param>
    /// <param name="options">Settings (copied).</param>
    /// <param name="logger">Receives warnings about malformed markup.</param>
    public RemoteJambaChatClient(IChatClient inner, string modelId, Uri? endpoint = null, RemoteJambaChatClientOptions? options = null, ILogger? logger = null)
        : base(inner)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelId);
        ModelId = modelId;
        _options = (options ?? new RemoteJambaChatClientOptions()).Copy();
        _logger = logger ?? NullLogger.Instance;
        _metadata = new ChatClientMetadata("jamba-remote", endpoint, modelId);
    }

    /// <summary>
    /// A client of the model <paramref name="modelId"/> served at <paramref name="endpoint"/> (<c>http://host:8000</c> or
    /// <c>…/v1</c>), over the official OpenAI client.
    /// </summary>
    /// <param name="endpoint">The server.</param>
    /// <param name="apiKey">The server's key (<c>--api-key</c>), or null when it has none.</param>
    /// <param name="modelId">The served model name (<c>--served-model-name</c>).</param>
    /// <param name="options">Settings.</param>
    /// <param name="logger">Receives warnings.</param>
    public static RemoteJambaChatClient Create(Uri endpoint, string? apiKey, string modelId, RemoteJambaChatClientOptions? options = null, ILogger? logger = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelId);
        var root = RemoteEndpoint.ApiRoot(endpoint);
        var clientOptions = new OpenAIClientOptions { Endpoint = root };
        if (options?.HttpClient is { } http) clientOptions.Transport = new HttpClientPipelineTransport(http);
        if (options?.NetworkTimeout is { } timeout) clientOptions.NetworkTimeout = timeout;
        // A server without a key accepts any; the OpenAI client insists on one.
        var chat = new ChatClient(modelId, new ApiKeyCredential(string.IsNullOrEmpty(apiKey) ? "no-key" : apiKey), clientOptions);
        return new RemoteJambaChatClient(chat.AsIChatClient(), modelId, root, options, logger);
    }

    /// <summary>The served model name.</summary>
    public string ModelId { get; }

    /// <inheritdoc />
    public override object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is null && serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceKey is null && serviceType.IsInstanceOfType(this)) return this;
        return base.GetService(serviceType, serviceKey);
    }

    /// <inheritdoc />
    public override async Task<ChatResponse> GetResponseAsync(IEnumerable<AIChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var (remote, documents, citations) = ToRemoteOptions(options);
        var response = await base.GetResponseAsync(messages, remote, cancellationToken).ConfigureAwait(false);
        foreach (var message in response.Messages)
        {
            if (message.Role != ChatRole.Assistant) continue;
            var parser = NewParser(citations);
            var contents = new List<AIContent>();
            foreach (var content in message.Contents)
            {
                if (content is TextContent t) contents.AddRange(parser.Push(t.Text));
                else contents.Add(content);
            }
            contents.AddRange(parser.Complete());
            message.Contents = contents;
            if (parser.ToolCallCount > 0) response.FinishReason = ChatFinishReason.ToolCalls;
            if ((parser.CitedDocumentIndexes ?? ServerCitations(response.RawRepresentation)) is { } cited)
                (message.AdditionalProperties ??= [])[JambaCitations.AdditionalPropertiesKey] = JambaCitations.Resolve(cited, documents);
        }
        return response;
    }

    /// <inheritdoc />
    public override async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<AIChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var (remote, documents, citations) = ToRemoteOptions(options);
        var parser = NewParser(citations);
        bool completed = false;
        ChatResponseUpdate? last = null;
        await foreach (var update in base.GetStreamingResponseAsync(messages, remote, cancellationToken).ConfigureAwait(false))
        {
            last = update;
            var contents = new List<AIContent>();
            foreach (var content in update.Contents)
            {
                if (content is TextContent t && !completed) contents.AddRange(parser.Push(t.Text));
                else contents.Add(content);
            }
            if (update.FinishReason is not null && !completed)
            {
                completed = true;
                contents.AddRange(parser.Complete());
                if (parser.ToolCallCount > 0) update.FinishReason = ChatFinishReason.ToolCalls;
                if ((parser.CitedDocumentIndexes ?? ServerCitations(update.RawRepresentation)) is { } cited)
                    (update.AdditionalProperties ??= [])[JambaCitations.AdditionalPropertiesKey] = JambaCitations.Resolve(cited, documents);
            }
            if (contents.Count == 0 && update.FinishReason is null && update.Contents.Count > 0) continue; // held back by the parser
            update.Contents = contents;
            yield return update;
        }
        if (!completed)
        {
            var rest = parser.Complete();
            if (rest.Count > 0)
                yield return new ChatResponseUpdate(ChatRole.Assistant, rest.ToList())
                {
                    ResponseId = last?.ResponseId,
                    MessageId = last?.MessageId,
                    ModelId = last?.ModelId ?? ModelId,
                    FinishReason = parser.ToolCallCount > 0 ? ChatFinishReason.ToolCalls : null,
                };
        }
    }

    private OutputParser NewParser(bool citations) => new(_options, _logger, citations);

    /// <summary>The document numbers <c>jamba serve</c> reports in its <c>citations</c> field (the section it took out of the text).</summary>
    private static IReadOnlyList<int>? ServerCitations(object? raw)
    {
#pragma warning disable SCME0001 // JsonPatch: the OpenAI client's access to fields it has no property for
        ReadOnlyMemory<byte> json = default;
        bool found = raw switch
        {
            ChatCompletion c => c.Patch.TryGetJson("$.choices[0].message.citations"u8, out json),
            StreamingChatCompletionUpdate u => u.Patch.TryGetJson("$.choices[0].delta.citations"u8, out json),
            _ => false,
        };
#pragma warning restore SCME0001
        if (!found) return null;
        try
        {
            return JsonSerializer.Deserialize<List<int>>(json.Span);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>
    /// The in-process <see cref="ChatOutputParser"/>, made once the answer's start is known: an answer that opens with
    /// <c>&lt;think&gt;</c> (a server that does not separate reasoning) is parsed as starting in reasoning.
    /// </summary>
    private sealed class OutputParser(RemoteJambaChatClientOptions options, ILogger logger, bool citations)
    {
        private const string ThinkOpen = "<think>";
        private readonly StringBuilder _pending = new();
        private ChatOutputParser? _parser;

        public int ToolCallCount => _parser?.ToolCallCount ?? 0;
        public IReadOnlyList<int>? CitedDocumentIndexes => _parser?.CitedDocumentIndexes;

        public IReadOnlyList<AIContent> Push(string text)
        {
            if (_parser is not null) return _parser.Push(text);
            _pending.Append(text);
            string start = _pending.ToString().TrimStart();
            if (!options.StartsInReasoning && start.Length < ThinkOpen.Length && ThinkOpen.StartsWith(start, StringComparison.Ordinal)) return [];
            return Start().Push(_pending.ToString());
        }

        public IReadOnlyList<AIContent> Complete()
        {
            if (_parser is null)
            {
                var first = Start().Push(_pending.ToString());
                return first.Concat(_parser!.Complete()).ToList();
            }
            return _parser.Complete();
        }

        private ChatOutputParser Start()
        {
            bool reasoning = options.StartsInReasoning || _pending.ToString().TrimStart().StartsWith(ThinkOpen, StringComparison.Ordinal);
            return _parser = new ChatOutputParser(options.ToolCallFormat, reasoning, logger, citations);
        }
    }

    /// <summary>
    /// The request as the server receives it: the Jamba settings out of <see cref="ChatOptions.AdditionalProperties"/> (and
    /// <see cref="ChatOptions.TopK"/>, which OpenAI's API has not) into fields of the request body (through the OpenAI client's
    /// <see cref="JsonPatch"/>, set by <see cref="ChatOptions.RawRepresentationFactory"/>).
    /// </summary>
    internal static (ChatOptions? Options, IReadOnlyList<JambaDocument> Documents, bool Citations) ToRemoteOptions(ChatOptions? options)
    {
        if (options is null) return (null, [], false);
        var body = new JsonObject();
        var documents = options.GetDocuments();
        var citationMode = options.GetCitationMode();
        if (documents.Count > 0) body["documents"] = new JsonArray(documents.Select(d => (JsonNode)d.ToTemplateObject()).ToArray());
        var kwargs = new JsonObject();
        var props = options.AdditionalProperties;
        if (props is not null && props.TryGetValue(JambaChatFormatter.ChatTemplateKwargsKey, out var rawKwargs) && rawKwargs is not null)
            kwargs = ToNode(rawKwargs) as JsonObject ?? throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{JambaChatFormatter.ChatTemplateKwargsKey}\"] must be an object of template variables.", nameof(options));
        if (!kwargs.ContainsKey("knobs"))
        {
            if (props is not null && props.TryGetValue(JambaChatOptionsExtensions.KnobsKey, out var rawKnobs) && rawKnobs is not null)
            {
                kwargs["knobs"] = ToNode(rawKnobs);
            }
            else if (citationMode == JambaCitationMode.Fast || options.ResponseFormat is ChatResponseFormatJson)
            {
                var knobs = new JsonObject { ["is_set"] = true };
                if (citationMode == JambaCitationMode.Fast) knobs["citation_mode"] = "fast";
                if (options.ResponseFormat is ChatResponseFormatJson) knobs["response_format"] = "json_object";
                kwargs["knobs"] = knobs;
            }
        }
        if (kwargs.Count > 0) body["chat_template_kwargs"] = kwargs;
        if (options.TopK is { } topK) body["top_k"] = topK;
        foreach (var key in new[] { ChatGenerationSettings.MinPKey, ChatGenerationSettings.RepetitionPenaltyKey })
            if (props is not null && props.TryGetValue(key, out var value) && value is not null) body[key] = ToNode(value);

        var remote = options.Clone();
        remote.TopK = null;
        if (remote.AdditionalProperties is { } copy)
        {
            foreach (var key in new[] { JambaChatFormatter.DocumentsKey, JambaChatFormatter.ChatTemplateKwargsKey, JambaChatOptionsExtensions.KnobsKey,
                         JambaChatOptionsExtensions.CitationModeKey, ChatGenerationSettings.MinPKey, ChatGenerationSettings.RepetitionPenaltyKey })
                copy.Remove(key);
            if (copy.Count == 0) remote.AdditionalProperties = null;
        }
        if (body.Count > 0)
        {
            var previous = options.RawRepresentationFactory;
            var fields = body.Select(kv => (Path: Encoding.UTF8.GetBytes("$." + kv.Key), Json: BinaryData.FromString(kv.Value?.ToJsonString() ?? "null"))).ToList();
            remote.RawRepresentationFactory = client =>
            {
                var raw = previous?.Invoke(client) as ChatCompletionOptions ?? new ChatCompletionOptions();
#pragma warning disable SCME0001 // JsonPatch: the OpenAI client's way to add fields it has no property for (vLLM's extras)
                foreach (var (path, json) in fields) raw.Patch.Set(path, json);
#pragma warning restore SCME0001
                return raw;
            };
        }
        return (remote, documents, citationMode == JambaCitationMode.Fast);
    }

    private static JsonNode? ToNode(object? value) => value switch
    {
        null => null,
        JsonNode n => n.DeepClone(),
        JsonElement e => JsonNode.Parse(e.GetRawText()),
        _ => JsonSerializer.SerializeToNode(value, value.GetType(), AIJsonUtilities.DefaultOptions),
    };
}
