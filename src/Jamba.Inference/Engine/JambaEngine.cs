using Jamba.Inference.Kernels;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Jamba.Inference.Caching;
using Jamba.Inference.Generation;
using Jamba.Inference.Modeling;
using Jamba.Inference.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Engine;

/// <summary>
/// Runs generations for one loaded model. A single scheduler thread owns the device: requests arrive through a
/// queue, prompts are prefilled in chunks interleaved with decode steps, every decode step runs all active
/// sequences as one batch (each over its own cache, so sequences join and leave between steps), and finished
/// or cancelled sequences leave without disturbing the others. Public methods are thread-safe.
/// </summary>
public sealed class JambaEngine : IDisposable, IAsyncDisposable
{
    private readonly JambaForCausalLM _model;
    private readonly Channel<Work> _incoming = Channel.CreateUnbounded<Work>(new UnboundedChannelOptions { SingleReader = true });
    private readonly SemaphoreSlim _slots;
    private readonly Thread _thread;
    private readonly HashSet<int> _eos;
    private readonly PrefixCache _prefixCache;
    private readonly object _metricsGate = new();
    private EngineMetrics _metrics = new();
    private volatile bool _stopping;
    private int _disposed;
    private volatile int _queued;
    private volatile int _running;
    private long _activeCacheBytes;

    /// <summary>Creates an engine over <paramref name="model"/> (not owned) and starts its scheduler thread.</summary>
    /// <param name="model">The loaded model.</param>
    /// <param name="tokenizer">Its tokenizer, for text output; null produces token ids only.</param>
    /// <param name="options">Limits and tuning (copied and validated).</param>
    /// <param name="eosTokenIds">Tokens that end generation; null takes the config's and the tokenizer's.</param>
    public JambaEngine(JambaForCausalLM model, JambaTokenizer? tokenizer = null, EngineOptions? options = null, IEnumerable<int>? eosTokenIds = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
        Tokenizer = tokenizer;
        Options = (options ?? new EngineOptions()).Clone();
        Options.Validate();
        MaxContextTokens = Options.MaxContextTokens ?? model.Config.MaxPositionEmbeddings;
        _eos = (eosTokenIds ?? model.Config.EosTokenIds.Concat(tokenizer?.EosTokenIds ?? [])).ToHashSet();
        _slots = new SemaphoreSlim(Options.MaxQueuedRequests + Options.MaxConcurrentSequences);
        _prefixCache = new PrefixCache(Options.PrefixCacheBytes);
        _thread = new Thread(SchedulerLoop) { IsBackground = true, Name = "jamba-engine" };
        _thread.Start();
        EngineInstruments.Register(this);
    }

    /// <summary>The name the engine's metrics carry as their <c>model</c> tag (the checkpoint folder's name when the registry
    /// loads it; default <c>jamba</c>).</summary>
    public string Name { get; set; } = "jamba";

    /// <summary>Requests waiting for a sequence slot (as of the scheduler's last step).</summary>
    public int QueuedCount => _queued;

    /// <summary>Sequences admitted, prefilling or decoding (as of the scheduler's last step).</summary>
    public int RunningCount => _running;

    /// <summary>Bytes allocated for the running sequences' caches (as of the scheduler's last step).</summary>
    public long ActiveCacheBytes => Interlocked.Read(ref _activeCacheBytes);

    /// <summary>The model.</summary>
    public JambaForCausalLM Model => _model;
    /// <summary>The tokenizer, if any.</summary>
    public JambaTokenizer? Tokenizer { get; }
    /// <summary>The options in force.</summary>
    public EngineOptions Options { get; }
    /// <summary>Longest context per sequence.</summary>
    public int MaxContextTokens { get; }
    /// <summary>Tokens that end generation.</summary>
    public IReadOnlyCollection<int> EosTokenIds => _eos;

    /// <summary>A copy of the counters.</summary>
    public EngineMetrics Metrics
    {
        get { lock (_metricsGate) return _metrics; }
    }

    /// <summary>Streams the generation of <paramref name="request"/>. Cancelling <paramref name="cancellationToken"/> (or
    /// abandoning the enumeration) stops it within one step and throws <see cref="OperationCanceledException"/>.</summary>
    /// <exception cref="ContextLengthExceededException">The prompt does not fit the context limit (thrown at once).</exception>
    /// <exception cref="EngineBusyException">The queue is full and <see cref="EngineOptions.QueueFull"/> is Throw (thrown at once).</exception>
    public IAsyncEnumerable<GenerationUpdate> GenerateAsync(GenerationRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (request.PromptTokens.Count >= MaxContextTokens)
            throw new ContextLengthExceededException(request.PromptTokens.Count, MaxContextTokens);
        foreach (int t in request.PromptTokens)
            if ((uint)t >= (uint)_model.Config.VocabSize)
                throw new ArgumentException($"Prompt token id {t} is outside the vocabulary [0, {_model.Config.VocabSize}).", nameof(request));
        if (request.Snapshot is { } snap && snap.Fingerprint != ContextSnapshot.ModelFingerprint(_model.Config, _model.DType))
            throw new ArgumentException("The snapshot was made by another model or dtype.", nameof(request));
        var work = new Work(request);
        if (Options.QueueFull == QueueFullBehavior.Throw)
        {
            if (!_slots.Wait(0)) throw Busy();
            work.HasSlot = true;
        }
        return Stream(work, cancellationToken);
    }

    /// <summary>Generates to the end and returns the whole result (built on <see cref="GenerateAsync"/>).</summary>
    public async Task<GenerationResult> GenerateTextAsync(GenerationRequest request, CancellationToken cancellationToken = default)
    {
        var tokens = new List<int>();
        var text = new System.Text.StringBuilder();
        GenerationUpdate? last = null;
        await foreach (var update in GenerateAsync(request, cancellationToken).ConfigureAwait(false))
        {
            if (update.TokenId is { } id) tokens.Add(id);
            text.Append(update.Text);
            last = update;
        }
        return new GenerationResult(tokens, text.ToString(), last!.FinishReason!.Value, last.Usage!, last.PrefillSeconds ?? 0, last.DecodeSeconds ?? 0)
        {
            ConstraintIncomplete = last.ConstraintIncomplete,
        };
    }

    /// <summary>Prefills <paramref name="tokens"/> once into a reusable <see cref="ContextSnapshot"/> (owned by the caller).</summary>
    public async Task<ContextSnapshot> CreateSnapshotAsync(IReadOnlyList<int> tokens, IProgress<PrefillProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (tokens.Count == 0) throw new ArgumentException("A snapshot needs at least one token.", nameof(tokens));
        if (tokens.Count >= MaxContextTokens) throw new ContextLengthExceededException(tokens.Count, MaxContextTokens);
        var work = new Work(tokens.ToArray(), progress);
        await AcquireSlot(work, cancellationToken).ConfigureAwait(false);
        using var registration = cancellationToken.Register(() => Cancel(work));
        Submit(work);
        return await work.SnapshotResult!.Task.ConfigureAwait(false);
    }

    /// <summary>
    /// The log-likelihood of <paramref name="target"/> as the continuation of <paramref name="prompt"/>: the sum over the
    /// target tokens of the natural-log probability the model gives each after the prompt and the target tokens before it.
    /// Runs on the scheduler thread like every other request (prefilled in chunks, interleaved with other sequences' decode
    /// steps), never on the caller's thread.
    /// </summary>
    /// <param name="prompt">The conditioning tokens (at least one).</param>
    /// <param name="target">The tokens to score (may be empty: log-likelihood 0).</param>
    /// <param name="cancellationToken">Cancels the request within one step.</param>
    /// <exception cref="ArgumentException">The prompt is empty or a token id is outside the vocabulary.</exception>
    /// <exception cref="ContextLengthExceededException">Prompt and target together exceed the context limit.</exception>
    public async Task<ScoreResult> ScoreAsync(IReadOnlyList<int> prompt, IReadOnlyList<int> target, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(target);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (target.Count == 0) return new ScoreResult(0, []);
        if (prompt.Count == 0)
            throw new ArgumentException("Scoring needs at least one prompt token to condition the target on; the prompt is empty.", nameof(prompt));
        if (prompt.Count + target.Count > MaxContextTokens) throw new ContextLengthExceededException(prompt.Count + target.Count, MaxContextTokens);
        var ids = new int[prompt.Count + target.Count];
        for (int i = 0; i < prompt.Count; i++) ids[i] = prompt[i];
        for (int i = 0; i < target.Count; i++) ids[prompt.Count + i] = target[i];
        foreach (int t in ids)
            if ((uint)t >= (uint)_model.Config.VocabSize)
                throw new ArgumentException($"Token id {t} is outside the vocabulary [0, {_model.Config.VocabSize}).", nameof(target));
        var work = new Work(ids, prompt.Count);
        await AcquireSlot(work, cancellationToken).ConfigureAwait(false);
        using var registration = cancellationToken.Register(() => Cancel(work));
        Submit(work);
        try
        {
            return await work.ScoreResult!.Task.ConfigureAwait(false);
        }
        catch (TaskCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException(cancellationToken);
        }
    }

    /// <summary>Loads a snapshot file saved by <see cref="ContextSnapshot.Save"/> for this engine's model.</summary>
    public ContextSnapshot LoadSnapshot(string path) => ContextSnapshot.Load(path, _model.Config, _model.DType, _model.Device);

    private async IAsyncEnumerable<GenerationUpdate> Stream(Work work, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        try
        {
            await AcquireSlot(work, cancellationToken).ConfigureAwait(false);
            using var registration = cancellationToken.Register(() => Cancel(work));
            Submit(work);
            await foreach (var update in work.Output!.Reader.ReadAllAsync(CancellationToken.None).ConfigureAwait(false))
            {
                if (update.FinishReason == FinishReason.Cancelled && cancellationToken.IsCancellationRequested)
                    throw new OperationCanceledException(cancellationToken);
                yield return update;
            }
        }
        finally
        {
            Cancel(work); // the consumer left early: free the sequence at the next step
            if (work.HasSlot && !work.Submitted) Release(work);
        }
    }

    private async Task AcquireSlot(Work work, CancellationToken cancellationToken)
    {
        if (work.HasSlot) return;
        if (Options.QueueFull == QueueFullBehavior.Throw)
        {
            if (!_slots.Wait(0)) throw Busy();
        }
        else
        {
            await _slots.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        work.HasSlot = true;
    }

    private EngineBusyException Busy()
    {
        EngineInstruments.Rejected.Add(1, EngineInstruments.Tags(this));
        return new EngineBusyException(Options.MaxQueuedRequests);
    }

    private void Release(Work work)
    {
        if (!work.HasSlot) return;
        work.HasSlot = false;
        _slots.Release();
    }

    private void Submit(Work work)
    {
        work.Submitted = true;
        work.SubmittedTicks = Stopwatch.GetTimestamp();
        UpdateMetrics(m => m with { RequestsSubmitted = m.RequestsSubmitted + 1 });
        EngineInstruments.Requests.Add(1, EngineInstruments.Tags(this));
        if (!_incoming.Writer.TryWrite(work) || _stopping)
            work.Fail(new ObjectDisposedException(nameof(JambaEngine)));
    }

    private void Cancel(Work work)
    {
        if (work.Finished || work.CancelRequested) return;
        work.CancelRequested = true;
        _incoming.Writer.TryWrite(Work.Nudge);
    }

    private void UpdateMetrics(Func<EngineMetrics, EngineMetrics> change)
    {
        lock (_metricsGate) _metrics = change(_metrics);
    }

    // ---------------------------------------------------------------- scheduler thread

    private void SchedulerLoop()
    {
        if (Options.IntraOpThreads is { } threads) torch.set_num_threads(threads);
        var pending = new Queue<Work>();
        var active = new List<Work>();
        while (true)
        {
            bool idle = pending.Count == 0 && active.Count == 0;
            if (idle)
            {
                _queued = 0;
                _running = 0;
                Interlocked.Exchange(ref _activeCacheBytes, 0);
                UpdateMetrics(m => m with { PrefixCacheEntries = _prefixCache.Count, PrefixCacheBytes = _prefixCache.Bytes, Idle = true });
                if (_stopping) break;
                try
                {
                    if (!_incoming.Reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult()) break;
                }
                catch (ChannelClosedException)
                {
                    break;
                }
            }
            UpdateMetrics(m => m.Idle ? m with { Idle = false } : m);
            while (_incoming.Reader.TryRead(out var item))
                if (!ReferenceEquals(item, Work.Nudge)) pending.Enqueue(item);
            if (_stopping)
            {
                foreach (var w in pending.Concat(active)) Finish(w, FinishReason.Cancelled);
                pending.Clear();
                active.Clear();
                continue;
            }

            // Leave: cancelled requests, queued or active.
            foreach (var w in pending.Where(w => w.CancelRequested).ToList()) Finish(w, FinishReason.Cancelled);
            if (pending.Any(w => w.Finished)) pending = new Queue<Work>(pending.Where(w => !w.Finished));
            foreach (var w in active.Where(w => w.CancelRequested)) Finish(w, FinishReason.Cancelled);
            active.RemoveAll(w => w.Finished);

            // Join: admit queued requests up to the concurrency limit.
            while (pending.Count > 0 && active.Count < Options.MaxConcurrentSequences)
            {
                var w = pending.Dequeue();
                if (Admit(w)) active.Add(w);
            }
            active.RemoveAll(w => w.Finished);
            // The gauges see an admission before the step that may emit its first token (an observer woken by that token
            // must find the sequence counted).
            _queued = pending.Count;
            _running = active.Count;

            // One prefill chunk (oldest first), then one decode step for everyone already decoding.
            var prefilling = active.FirstOrDefault(w => w.IsPrefilling);
            bool solo = active.Count == 1 && pending.Count == 0;
            if (prefilling is not null) Guard([prefilling], () => PrefillChunk(prefilling, solo));
            var decoding = active.Where(w => !w.Finished && !w.IsPrefilling && !w.CancelRequested).ToList();
            if (decoding.Count > 0) Guard(decoding, () => DecodeStep(decoding));
            active.RemoveAll(w => w.Finished);
            _queued = pending.Count;
            _running = active.Count;
            long bytes = 0;
            foreach (var w in active) bytes += w.Cache?.AllocatedBytes ?? 0;
            Interlocked.Exchange(ref _activeCacheBytes, bytes);
        }
        _prefixCache.Dispose();
    }

    /// <summary>Runs a step; if it throws, the sequences in it fail with the exception and the engine goes on.</summary>
    private void Guard(IReadOnlyList<Work> works, Action step)
    {
        try
        {
            step();
        }
        catch (Exception ex)
        {
            foreach (var w in works) FailWork(w, ex);
        }
    }

    private bool Admit(Work w)
    {
        try
        {
            if (w.ScoreTokens is not null)
            {
                w.Prompt = w.ScoreTokens;
                w.Cache = _model.CreateCache(1, w.Prompt.Count);
                w.Clock.Restart();
                return true;
            }
            if (w.SnapshotTokens is not null)
            {
                w.Prompt = w.SnapshotTokens;
                w.Cache = _model.CreateCache(1, Math.Min(w.Prompt.Count, MaxContextTokens));
                w.Clock.Restart();
                return true;
            }
            var request = w.Request!;
            w.Prompt = request.PromptTokens;
            var options = request.Options;
            w.Sequence = new GenerationSequence(w.Prompt, options, _eos,
                Tokenizer?.CreateStreamingDetokenizer(skipSpecialTokens: !options.IncludeSpecialTokensInText), MaxContextTokens);
            int room = Math.Min(w.Prompt.Count + options.MaxNewTokens, MaxContextTokens);
            if (request.Snapshot is { IsDisposed: true }) throw new ObjectDisposedException(nameof(ContextSnapshot), "The request's snapshot was disposed before the request started.");
            // The request's snapshot, or a longer kept prompt that extends it (a multi-turn conversation over a document
            // snapshot: the previous turn's whole prompt), whichever covers more of the prompt.
            var cached = Options.PrefixCacheBytes > 0 ? _prefixCache.FindLongestPrefix(w.Prompt) : null;
            var snapshot = request.Snapshot is { } given && (cached is null || cached.Length <= given.Length) ? given : cached ?? request.Snapshot;
            w.Clock.Restart();
            if (snapshot is not null && !snapshot.IsDisposed)
            {
                w.Cache = snapshot.CloneCache(room - snapshot.Length);
                w.Prefilled = w.Sequence.CachedPromptTokens = snapshot.Length;
                UpdateMetrics(m => m with { ReusedPrefixTokens = m.ReusedPrefixTokens + snapshot.Length });
                EngineInstruments.ReusedPromptTokens.Add(snapshot.Length, EngineInstruments.Tags(this));
                if (!w.IsPrefilling)
                {
                    // The whole prompt is the snapshot: its stored logits give the first token with no forward at all.
                    w.Sequence.PrefillSeconds = w.Clock.Elapsed.TotalSeconds;
                    var logits = snapshot.LastLogits.ToArray();
                    HandleLogits(w, logits);
                }
            }
            else
            {
                w.Cache = _model.CreateCache(1, room);
            }
            return !w.Finished;
        }
        catch (Exception ex)
        {
            FailWork(w, ex);
            return false;
        }
    }

    private void PrefillChunk(Work w, bool solo)
    {
        int n = Math.Min(Options.PrefillChunkTokens, w.Prompt.Count - w.Prefilled);
        if (solo && w.ScoreTokens is null)
        {
            // Alone, a larger chunk runs larger GEMMs — as long as its attention stays in the fused kernel (chunk × keys within
            // its budget); past that, long contexts attend block by block, where smaller chunks are faster and use less memory.
            int big = Math.Min(Math.Max(Options.PrefillChunkTokens, Options.SoloPrefillChunkTokens), w.Prompt.Count - w.Prefilled);
            if ((long)big * (w.Prefilled + big) <= AttentionKernels.FusedMaxPairs) n = Math.Max(n, big);
        }
        float[]? last = null;
        using (var scope = NewDisposeScope())
        {
            var ids = torch.tensor(w.Prompt.Skip(w.Prefilled).Take(n).Select(t => (long)t).ToArray(), [1, n], dtype: ScalarType.Int64);
            bool scoring = w.ScoreTokens is not null;
            var logits = _model.Forward(ids, null, w.Cache, scoring ? LogitPositions.All : LogitPositions.Last);
            if (scoring) AccumulateScores(w, logits, w.Prefilled, n);
            w.Prefilled += n;
            if (!w.IsPrefilling && !scoring) last = ToHost(logits);
        }
        if (w.ScoreTokens is not null)
        {
            UpdateMetrics(m => m with { PrefillTokens = m.PrefillTokens + n });
            if (w.IsPrefilling) return;
            double sum = 0;
            foreach (float p in w.ScoreLogProbs!) sum += p;
            w.Finished = true;
            w.ScoreResult!.TrySetResult(new ScoreResult(sum, w.ScoreLogProbs));
            FreeSequence(w, FinishReason.Stop);
            return;
        }
        UpdateMetrics(m => m with { PrefillTokens = m.PrefillTokens + n });
        EngineInstruments.PromptTokens.Add(n, EngineInstruments.Tags(this));
        w.Progress?.Report(new PrefillProgress(w.Prefilled, w.Prompt.Count));
        if (last is null) return;
        if (w.Sequence is not null) w.Sequence.PrefillSeconds = w.Clock.Elapsed.TotalSeconds;
        if (w.SnapshotTokens is not null)
        {
            var snapshot = new ContextSnapshot(w.Prompt, w.Cache!, last);
            w.Cache = null; // now owned by the snapshot
            w.Finished = true;
            Release(w);
            w.SnapshotResult!.TrySetResult(snapshot);
            UpdateMetrics(m => m with { RequestsCompleted = m.RequestsCompleted + 1 });
            return;
        }
        if (Options.PrefixCacheBytes > 0 && w.Prompt.Count >= Options.PrefixCacheMinTokens && !_prefixCache.Contains(w.Prompt))
            _prefixCache.Add(new ContextSnapshot(w.Prompt, w.Cache!.Clone(), last.ToArray()));
        HandleLogits(w, last);
    }

    /// <summary>Log-probabilities of the target tokens predicted by positions <paramref name="start"/> … +<paramref name="n"/>
    /// (position <c>i</c> predicts token <c>i + 1</c>; the target starts at <c>ScoreFrom</c>).</summary>
    private static void AccumulateScores(Work w, Tensor logits, int start, int n)
    {
        int from = Math.Max(start, w.ScoreFrom - 1), to = Math.Min(start + n, w.Prompt.Count - 1); // positions [from, to)
        if (from >= to) return;
        using var scope = NewDisposeScope();
        var predicting = logits.narrow(1, from - start, to - from);          // [1, k, V] fp32
        var logProbs = predicting.log_softmax(-1);
        var wanted = torch.tensor(w.Prompt.Skip(from + 1).Take(to - from).Select(t => (long)t).ToArray(), [1, to - from, 1], dtype: ScalarType.Int64).to(logProbs.device);
        using var picked = HostReads.ToHost(logProbs.gather(2, wanted).reshape(to - from));
        w.ScoreLogProbs!.AddRange(picked.data<float>().ToArray());
    }

    /// <summary>The decode step's host logits, reused from step to step (scheduler thread only): a fresh array per step was
    /// a large-object allocation (128 KiB at a 32K vocabulary) every token.</summary>
    private float[] _decodeLogits = [];

    private void DecodeStep(List<Work> batch)
    {
        Span<float> all;
        int vocab;
        using (var scope = NewDisposeScope())
        {
            var ids = torch.tensor(batch.Select(w => (long)w.Sequence!.LastToken).ToArray(), [batch.Count, 1], dtype: ScalarType.Int64);
            var logits = _model.Forward(ids, null, new CacheBatch(batch.Select(w => w.Cache!).ToArray()), LogitPositions.Last);
            vocab = (int)logits.shape[^1];
            using var cpu = HostReads.ToHost(logits); // the step's one device→host read
            var host = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(cpu.bytes);
            if (_decodeLogits.Length < host.Length) _decodeLogits = new float[host.Length];
            host.CopyTo(_decodeLogits);
            all = _decodeLogits.AsSpan(0, host.Length);
        }
        UpdateMetrics(m => m with { DecodeSteps = m.DecodeSteps + 1, MaxBatch = Math.Max(m.MaxBatch, batch.Count) });
        for (int i = 0; i < batch.Count; i++)
            HandleLogits(batch[i], all.Slice(i * vocab, vocab));
    }

    /// <summary>fp32 logits to a host array with one block copy (the element accessor costs milliseconds per step).</summary>
    private static float[] ToHost(Tensor logits)
    {
        using var cpu = HostReads.ToHost(logits);
        return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(cpu.bytes).ToArray();
    }

    /// <summary>Hands a position's logits to the sequence's state machine and streams what it returns.</summary>
    private void HandleLogits(Work w, Span<float> logits)
    {
        if (w.CancelRequested)
        {
            Finish(w, FinishReason.Cancelled);
            return;
        }
        var update = w.Sequence!.Next(logits, w.Cache!.Length);
        if (update.TokenId is not null)
        {
            UpdateMetrics(m => m with { DecodedTokens = m.DecodedTokens + 1 });
            long now = Stopwatch.GetTimestamp();
            var tags = EngineInstruments.Tags(this);
            EngineInstruments.CompletionTokens.Add(1, tags);
            if (w.LastTokenTicks == 0) EngineInstruments.TimeToFirstToken.Record(Stopwatch.GetElapsedTime(w.SubmittedTicks, now).TotalSeconds, tags);
            else EngineInstruments.TimePerOutputToken.Record(Stopwatch.GetElapsedTime(w.LastTokenTicks, now).TotalSeconds, tags);
            w.LastTokenTicks = now;
        }
        if (update.FinishReason is null) w.Output!.Writer.TryWrite(update);
        else Complete(w, update);
    }

    /// <summary>Ends <paramref name="w"/> now for <paramref name="reason"/> (cancellation, the engine stopping).</summary>
    private void Finish(Work w, FinishReason reason)
    {
        if (w.Finished) return;
        if (w.SnapshotResult is not null || w.ScoreResult is not null)
        {
            w.Finished = true;
            w.SnapshotResult?.TrySetCanceled();
            w.ScoreResult?.TrySetCanceled();
            FreeSequence(w, reason);
            return;
        }
        var update = w.Sequence is { IsFinished: false } sequence ? sequence.End(reason)
            : new GenerationUpdate { FinishReason = reason, Usage = new GenerationUsage(w.Request!.PromptTokens.Count, 0, 0) };
        Complete(w, update);
    }

    /// <summary>Streams the final <paramref name="update"/> of <paramref name="w"/> and frees its cache and slot.</summary>
    private void Complete(Work w, GenerationUpdate update)
    {
        if (w.Finished) return;
        w.Finished = true;
        w.Output!.Writer.TryWrite(update);
        w.Output.Writer.TryComplete();
        FreeSequence(w, update.FinishReason!.Value);
    }

    private void FreeSequence(Work w, FinishReason reason)
    {
        w.Cache?.Dispose();
        w.Cache = null;
        Release(w);
        if (w.Request is not null)
            EngineInstruments.Finished.Add(1, new TagList { { "model", Name }, { "finish_reason", reason.ToString().ToLowerInvariant() } });
        UpdateMetrics(m => m with
        {
            RequestsCompleted = m.RequestsCompleted + 1,
            RequestsCancelled = m.RequestsCancelled + (reason == FinishReason.Cancelled ? 1 : 0),
            PrefixCacheEntries = _prefixCache.Count,
            PrefixCacheBytes = _prefixCache.Bytes,
        });
    }

    private void FailWork(Work w, Exception ex)
    {
        if (w.Finished) return;
        w.Finished = true;
        w.Cache?.Dispose();
        w.Cache = null;
        Release(w);
        w.Fail(ex);
        if (w.Request is not null)
            EngineInstruments.Finished.Add(1, new TagList { { "model", Name }, { "finish_reason", "error" } });
        UpdateMetrics(m => m with { RequestsCompleted = m.RequestsCompleted + 1 });
    }

    /// <summary>Stops the scheduler: queued and running generations end as cancelled.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        EngineInstruments.Unregister(this);
        _stopping = true;
        _incoming.Writer.TryWrite(Work.Nudge);
        _incoming.Writer.TryComplete();
        if (Thread.CurrentThread != _thread) _thread.Join();
        _slots.Dispose();
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>One request and, on the scheduler thread, its sequence state.</summary>
    private sealed class Work
    {
        public static readonly Work Nudge = new(Array.Empty<int>(), null);

        public Work(GenerationRequest request)
        {
            Request = request;
            Output = Channel.CreateUnbounded<GenerationUpdate>(new UnboundedChannelOptions { SingleWriter = true, SingleReader = true });
        }

        public Work(int[] snapshotTokens, IProgress<PrefillProgress>? progress)
        {
            SnapshotTokens = snapshotTokens;
            Progress = progress;
            SnapshotResult = new TaskCompletionSource<ContextSnapshot>(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        public GenerationRequest? Request { get; }
        public Work(int[] scoreTokens, int scoreFrom)
        {
            ScoreTokens = scoreTokens;
            ScoreFrom = scoreFrom;
            ScoreLogProbs = new List<float>(scoreTokens.Length - scoreFrom);
            ScoreResult = new TaskCompletionSource<ScoreResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        public int[]? SnapshotTokens { get; }
        public int[]? ScoreTokens { get; }
        public int ScoreFrom { get; }
        public List<float>? ScoreLogProbs { get; }
        public TaskCompletionSource<ScoreResult>? ScoreResult { get; }
        public IProgress<PrefillProgress>? Progress { get; }
        public Channel<GenerationUpdate>? Output { get; }
        public TaskCompletionSource<ContextSnapshot>? SnapshotResult { get; }
        public volatile bool CancelRequested;
        public volatile bool Finished;
        public bool HasSlot;
        public bool Submitted;
        public long SubmittedTicks;
        public long LastTokenTicks;

        public IReadOnlyList<int> Prompt = [];
        public HybridCache? Cache;
        public int Prefilled;
        public GenerationSequence? Sequence;
        public readonly Stopwatch Clock = new();

        public bool IsPrefilling => Prefilled < Prompt.Count;

        public void Fail(Exception ex)
        {
            Finished = true;
            Output?.Writer.TryComplete(ex);
            SnapshotResult?.TrySetException(ex);
            ScoreResult?.TrySetException(ex);
        }
    }
}

/// <summary>A whole generation.</summary>
/// <param name="Tokens">Generated token ids, a final EOS or stop token included (as many as <see cref="GenerationUsage.CompletionTokens"/>).</param>
/// <param name="Text">Generated text (stop sequences excluded).</param>
/// <param name="FinishReason">Why it ended.</param>
/// <param name="Usage">Token counts.</param>
/// <param name="PrefillSeconds">Time to prefill the prompt.</param>
/// <param name="DecodeSeconds">Time from the first to the last token.</param>
public sealed record GenerationResult(IReadOnlyList<int> Tokens, string Text, FinishReason FinishReason, GenerationUsage Usage, double PrefillSeconds, double DecodeSeconds)
{
    /// <summary>With <see cref="GenerationOptions.Constraint"/>: the JSON value was not finished (see <see cref="GenerationUpdate.ConstraintIncomplete"/>).</summary>
    public bool ConstraintIncomplete { get; init; }
}

/// <summary>The log-likelihood of a target continuation (see <see cref="JambaEngine.ScoreAsync"/>).</summary>
/// <param name="LogLikelihood">Sum of the natural-log probabilities of the target tokens.</param>
/// <param name="TokenLogProbs">Each target token's log-probability, in order.</param>
public sealed record ScoreResult(double LogLikelihood, IReadOnlyList<float> TokenLogProbs)
{
    /// <summary>Target tokens scored.</summary>
    public int Tokens => TokenLogProbs.Count;

    /// <summary><c>exp(−LogLikelihood / Tokens)</c>, NaN for an empty target.</summary>
    public double Perplexity => Tokens == 0 ? double.NaN : Math.Exp(-LogLikelihood / Tokens);
}
