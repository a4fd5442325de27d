using System.Runtime.CompilerServices;
using Jamba.Inference.Caching;
using Jamba.Inference.Engine;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Jamba.Inference.Chat;

/// <summary>
/// A set of documents read once and asked any number of questions: the conversation prefix (system prompt, documents,
/// knobs, rendered through the checkpoint's chat template) is prefilled once into a <see cref="ContextSnapshot"/>, and
/// each question pays only for its own tokens. Create one with <see cref="JambaChatClient.CreateDocumentSessionAsync"/>
/// or <see cref="LoadAsync"/>; dispose it to free the snapshot.
/// </summary>
/// <remarks>
/// <para>How the prefix is found: the template is rendered with the documents and two different sentinel questions; the
/// longest common prefix of the two token sequences, less <see cref="SafetyMarginTokens"/> tokens (so that no token that
/// could merge with the question's first characters is included), is the snapshot. Each question's prompt is rendered
/// and tokenized in full, exactly as <see cref="JambaChatClient.GetResponseAsync"/> would; if it does not start with the
/// snapshot's tokens (a template that puts the question before the documents, say), the question runs as a plain
/// request — the same answer, only slower — and a warning is logged (see <see cref="FallbackCount"/>).</para>
/// <para>Answers are the client's usual responses (text, citations, usage with
/// <see cref="UsageDetails.CachedInputTokenCount"/> = the snapshot tokens reused); the final update's
/// <c>AdditionalProperties["snapshot_reused"]</c> says whether the snapshot was used. Thread-safe: questions may run
/// concurrently (the engine batches them).</para>
/// <para>Prompt-shaping settings (documents, citation mode, JSON mode, instructions, tools, template variables) are the
/// session's options; the options of a question are read only for generation settings (temperature, max output
/// tokens, stop sequences, seed, …), falling back to the session's.</para>
/// </remarks>
public sealed class DocumentSession : IDisposable
{
    /// <summary>Tokens left out of the snapshot at the end of the common prefix.</summary>
    public const int SafetyMarginTokens = 4;
    /// <summary>The final update's <c>AdditionalProperties</c> key saying whether the snapshot was reused.</summary>
    public const string SnapshotReusedKey = "snapshot_reused";

    private const string SentinelA = "A?";
    private const string SentinelB = "Z!";

    private readonly JambaChatClient _client;
    private readonly JambaChatClient.Backend _backend;
    private readonly ChatOptions _options;
    private readonly ContextSnapshot _snapshot;
    private readonly ILogger _logger;
    private int _fallbacks;
    private int _disposed;

    private DocumentSession(JambaChatClient client, JambaChatClient.Backend backend, IReadOnlyList<JambaDocument> documents, string? systemPrompt, ChatOptions options, ContextSnapshot snapshot, ILogger logger)
    {
        _client = client;
        _backend = backend;
        Documents = documents;
        SystemPrompt = systemPrompt;
        _options = options;
        _snapshot = snapshot;
        _logger = logger;
    }

    /// <summary>The documents, in prompt order (the model cites them by position, from 0).</summary>
    public IReadOnlyList<JambaDocument> Documents { get; }

    /// <summary>The system prompt, or null.</summary>
    public string? SystemPrompt { get; }

    /// <summary>The prefilled prefix (owned by the session; do not dispose it).</summary>
    public ContextSnapshot Snapshot => _snapshot;

    /// <summary>Tokens in the prefilled prefix.</summary>
    public int PrefixTokenCount => _snapshot.Length;

    /// <summary>Questions whose prompt did not start with the snapshot and ran as plain requests.</summary>
    public int FallbackCount => Volatile.Read(ref _fallbacks);

    /// <summary>The client the session generates with.</summary>
    public JambaChatClient Client => _client;

    internal static async Task<DocumentSession> CreateAsync(
        JambaChatClient client, IEnumerable<JambaDocument> documents, string? systemPrompt, ChatOptions? options,
        IProgress<PrefillProgress>? progress, ILogger? logger, CancellationToken cancellationToken)
    {
        var (backend, engine, docs, sessionOptions, prefix) = await PrepareAsync(client, documents, systemPrompt, options, cancellationToken).ConfigureAwait(false);
        var snapshot = await engine.CreateSnapshotAsync(prefix, progress, cancellationToken).ConfigureAwait(false);
        return new DocumentSession(client, backend, docs, systemPrompt, sessionOptions, snapshot, logger ?? NullLogger.Instance);
    }

    /// <summary>
    /// Loads a session saved by <see cref="Save"/>: the same documents, system prompt and options must be given (the
    /// prefix is rendered again and must match the saved snapshot token for token).
    /// </summary>
    /// <param name="client">A client over the same model (architecture and dtype) that saved it.</param>
    /// <param name="path">The snapshot file.</param>
    /// <param name="documents">The documents the session was created with.</param>
    /// <param name="systemPrompt">Its system prompt.</param>
    /// <param name="options">Its options.</param>
    /// <param name="logger">Receives a warning for each question that cannot reuse the snapshot.</param>
    /// <param name="cancellationToken">Cancels loading the model (a lazily created client).</param>
    /// <exception cref="SnapshotFormatException">The file is damaged or belongs to another model or dtype.</exception>
    /// <exception cref="InvalidDataException">The file holds another prefix (other documents, system prompt, options, template or tokenizer).</exception>
    public static async Task<DocumentSession> LoadAsync(
        JambaChatClient client, string path, IEnumerable<JambaDocument> documents, string? systemPrompt = null, ChatOptions? options = null,
        ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentException.ThrowIfNullOrEmpty(path);
        var (backend, engine, docs, sessionOptions, prefix) = await PrepareAsync(client, documents, systemPrompt, options, cancellationToken).ConfigureAwait(false);
        var snapshot = await Task.Run(() => engine.LoadSnapshot(path), cancellationToken).ConfigureAwait(false);
        if (!snapshot.Tokens.SequenceEqual(prefix))
        {
            int n = snapshot.Tokens.Count;
            snapshot.Dispose();
            throw new InvalidDataException($"{path}: the snapshot holds another prefix ({n} tokens; these documents, system prompt and options render {prefix.Length}). It was saved for other documents, options, chat template or tokenizer.");
        }
        return new DocumentSession(client, backend, docs, systemPrompt, sessionOptions, snapshot, logger ?? NullLogger.Instance);
    }

    /// <summary>Saves the prefilled prefix (versioned, checksummed; see <see cref="ContextSnapshot.Save"/>) for <see cref="LoadAsync"/>.</summary>
    /// <param name="path">The file to write (replaced atomically).</param>
    public void Save(string path)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        _snapshot.Save(path);
    }

    /// <summary>Answers <paramref name="question"/> from the documents.</summary>
    /// <param name="question">The user's question.</param>
    /// <param name="options">Generation settings for this answer (null: the session's).</param>
    /// <param name="cancellationToken">Stops the generation.</param>
    /// <exception cref="ContextLengthExceededException">The prompt with this question does not fit the context limit (before any work).</exception>
    public Task<ChatResponse> AskAsync(string question, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        AskStreamingAsync(question, options, cancellationToken).ToChatResponseAsync(cancellationToken);

    /// <summary>Streams the answer to <paramref name="question"/> (see <see cref="AskAsync(string, ChatOptions?, CancellationToken)"/>).</summary>
    /// <param name="question">The user's question.</param>
    /// <param name="options">Generation settings for this answer (null: the session's).</param>
    /// <param name="cancellationToken">Stops the generation.</param>
    public async IAsyncEnumerable<ChatResponseUpdate> AskStreamingAsync(string question, ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(question);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var prompt = _backend.Formatter.Format(Messages(SystemPrompt, question), _options);
        var tokens = _backend.Tokenizer!.Encode(prompt.Text, addSpecialTokens: false);
        bool reuse = StartsWith(tokens, _snapshot.Tokens) && tokens.Count > _snapshot.Length;
        if (!reuse)
        {
            Interlocked.Increment(ref _fallbacks);
            _logger.LogWarning("The prompt of this question does not start with the document session's {Tokens} prefilled tokens; it runs as a plain request (correct, but the documents are read again).", _snapshot.Length);
        }
        var engine = _backend.Handle!.Engine;
        var snapshot = reuse ? _snapshot : null;
        var generationSource = options ?? _options;
        await foreach (var update in _client.StreamPromptAsync(_backend, prompt, generationSource, (g, ct) => engine.GenerateAsync(new GenerationRequest(tokens, g, snapshot), ct), cancellationToken).ConfigureAwait(false))
        {
            if (update.FinishReason is not null) (update.AdditionalProperties ??= [])[SnapshotReusedKey] = reuse;
            yield return update;
        }
    }

    /// <summary>
    /// Answers the last user message of a multi-turn <paramref name="conversation"/> (user, assistant and tool messages, after
    /// the session's system prompt) from the documents.
    /// </summary>
    /// <remarks>
    /// <para>Placement: the documents stay where a one-question conversation has them — the template's own document block,
    /// right before the first user turn — and every later turn follows, rendered by the template as usual. So the prompt of
    /// turn <c>n + 1</c> starts with the prompt and answer of turn <c>n</c>: the documents come from the session's snapshot,
    /// and with the engine's prefix cache on (<see cref="EngineOptions.PrefixCacheBytes"/>, the default) the earlier turns
    /// from the previous turn's kept prompt, so a turn prefills only its new tokens (the last answer and the new question;
    /// <see cref="UsageDetails.CachedInputTokenCount"/> says how many were reused). A one-turn conversation renders exactly
    /// as <see cref="AskAsync(string, ChatOptions?, CancellationToken)"/>. (The template alone would move the documents
    /// before the last user message every turn, changing the prefix.)</para>
    /// </remarks>
    /// <param name="conversation">The turns so far, ending with the user's new message.</param>
    /// <param name="options">Generation settings for this answer (null: the session's).</param>
    /// <param name="cancellationToken">Stops the generation.</param>
    /// <exception cref="ArgumentException">The conversation is empty, holds a system message, or does not end with a user message.</exception>
    public Task<ChatResponse> AskAsync(IEnumerable<ChatMessage> conversation, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        AskStreamingAsync(conversation, options, cancellationToken).ToChatResponseAsync(cancellationToken);

    /// <summary>Streams the answer to the last user message of <paramref name="conversation"/> (see <see cref="AskAsync(IEnumerable{ChatMessage}, ChatOptions?, CancellationToken)"/>).</summary>
    /// <param name="conversation">The turns so far, ending with the user's new message.</param>
    /// <param name="options">Generation settings for this answer (null: the session's).</param>
    /// <param name="cancellationToken">Stops the generation.</param>
    public async IAsyncEnumerable<ChatResponseUpdate> AskStreamingAsync(IEnumerable<ChatMessage> conversation, ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(conversation);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var turns = conversation.ToList();
        if (turns.Count == 0 || turns[^1].Role != ChatRole.User)
            throw new ArgumentException("The conversation must end with the user's new message.", nameof(conversation));
        if (turns.Any(m => m.Role == ChatRole.System))
            throw new ArgumentException("The session's system prompt is its own; the conversation holds the turns after it (no system message).", nameof(conversation));
        var prompt = FormatConversation(turns);
        var tokens = _backend.Tokenizer!.Encode(prompt.Text, addSpecialTokens: false);
        bool reuse = StartsWith(tokens, _snapshot.Tokens) && tokens.Count > _snapshot.Length;
        if (!reuse)
        {
            Interlocked.Increment(ref _fallbacks);
            _logger.LogWarning("The prompt of this conversation does not start with the document session's {Tokens} prefilled tokens; it runs as a plain request.", _snapshot.Length);
        }
        var engine = _backend.Handle!.Engine;
        var snapshot = reuse ? _snapshot : null;
        await foreach (var update in _client.StreamPromptAsync(_backend, prompt, options ?? _options, (g, ct) => engine.GenerateAsync(new GenerationRequest(tokens, g, snapshot), ct), cancellationToken).ConfigureAwait(false))
        {
            if (update.FinishReason is not null) (update.AdditionalProperties ??= [])[SnapshotReusedKey] = reuse;
            yield return update;
        }
    }

    /// <summary>The text before the first user message's content, with and without the documents (made on the first multi-turn question).</summary>
    private (string Docs, string Plain)? _heads;

    /// <summary>The documents' part of a one-question prompt, then the conversation as the template renders it without them.</summary>
    internal JambaChatPrompt FormatConversation(IReadOnlyList<ChatMessage> turns)
    {
        var withDocs = _backend.Formatter.Format(Messages(SystemPrompt, turns[^1].Text), _options);
        if (turns.Count == 1) return withDocs;
        var formatter = _backend.Formatter;
        var plainOptions = new ChatOptions { Instructions = _options.Instructions };
        // The two heads depend only on the session (documents, system prompt, options): rendered once, not every turn.
        var (docsHead, plainHead) = _heads ??= (
            CommonPrefix(formatter.Format(Messages(SystemPrompt, SentinelA), _options).Text, formatter.Format(Messages(SystemPrompt, SentinelB), _options).Text),
            CommonPrefix(formatter.Format(Messages(SystemPrompt, SentinelA), plainOptions).Text, formatter.Format(Messages(SystemPrompt, SentinelB), plainOptions).Text));
        var all = new List<ChatMessage>(turns.Count + 1);
        if (!string.IsNullOrEmpty(SystemPrompt)) all.Add(new ChatMessage(ChatRole.System, SystemPrompt));
        all.AddRange(turns);
        string plain = formatter.Format(all, plainOptions).Text;
        if (!plain.StartsWith(plainHead, StringComparison.Ordinal)) return withDocs with { Text = plain }; // not expected: no reuse, still correct
        return withDocs with { Text = docsHead + plain[plainHead.Length..] };
    }

    private static string CommonPrefix(string a, string b)
    {
        int n = 0;
        while (n < a.Length && n < b.Length && a[n] == b[n]) n++;
        return a[..n];
    }

    /// <summary>Frees the snapshot (answers already started are unaffected).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _snapshot.Dispose();
    }

    private static async Task<(JambaChatClient.Backend Backend, JambaEngine Engine, IReadOnlyList<JambaDocument> Documents, ChatOptions Options, int[] Prefix)> PrepareAsync(
        JambaChatClient client, IEnumerable<JambaDocument> documents, string? systemPrompt, ChatOptions? options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(documents);
        var docs = documents.ToList();
        var backend = await client.GetBackendAsync(cancellationToken).ConfigureAwait(false);
        if (backend.Handle is null || backend.Tokenizer is null)
            throw new NotSupportedException("A document session needs a client over a loaded model with a tokenizer.");
        var sessionOptions = options?.Clone() ?? new ChatOptions();
        sessionOptions.AdditionalProperties = sessionOptions.AdditionalProperties is null ? [] : new AdditionalPropertiesDictionary(sessionOptions.AdditionalProperties);
        sessionOptions.WithDocuments(docs);
        var prefix = PrefixTokens(backend, systemPrompt, sessionOptions);
        var engine = backend.Handle.Engine;
        if (prefix.Length >= engine.MaxContextTokens) throw new ContextLengthExceededException(prefix.Length, engine.MaxContextTokens);
        return (backend, engine, docs, sessionOptions, prefix);
    }

    /// <summary>The snapshot tokens: the longest common prefix of two renderings with different questions, less the safety margin.</summary>
    internal static int[] PrefixTokens(JambaChatClient.Backend backend, string? systemPrompt, ChatOptions options)
    {
        var a = backend.Tokenizer!.Encode(backend.Formatter.Format(Messages(systemPrompt, SentinelA), options).Text, addSpecialTokens: false);
        var b = backend.Tokenizer.Encode(backend.Formatter.Format(Messages(systemPrompt, SentinelB), options).Text, addSpecialTokens: false);
        int n = 0;
        while (n < a.Count && n < b.Count && a[n] == b[n]) n++;
        n -= SafetyMarginTokens;
        if (n < 1) throw new InvalidOperationException("The chat template renders the question before anything that could be prefilled; a document session cannot share a prefix with this template.");
        return a.Take(n).ToArray();
    }

    private static List<ChatMessage> Messages(string? systemPrompt, string question)
    {
        var messages = new List<ChatMessage>(2);
        if (!string.IsNullOrEmpty(systemPrompt)) messages.Add(new ChatMessage(ChatRole.System, systemPrompt));
        messages.Add(new ChatMessage(ChatRole.User, question));
        return messages;
    }

    private static bool StartsWith(IReadOnlyList<int> tokens, IReadOnlyList<int> prefix)
    {
        if (prefix.Count > tokens.Count) return false;
        for (int i = 0; i < prefix.Count; i++)
            if (tokens[i] != prefix[i]) return false;
        return true;
    }
}
