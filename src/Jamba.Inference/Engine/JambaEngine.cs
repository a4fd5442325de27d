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
    }

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
            if (!_slots.Wait(0)) throw new EngineBusyException(Options.MaxQueuedRequests);
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
        return new GenerationResult(tokens, text.ToString(), last!.FinishReason!.Value, last.Usage!, last.PrefillSeconds ?? 0, last.DecodeSeconds ?? 0);
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
            if (!_slots.Wait(0)) throw new EngineBusyException(Options.MaxQueuedRequests);
        }
        else
        {
            await _slots.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        work.HasSlot = true;
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
        UpdateMetrics(m => m with { RequestsSubmitted = m.RequestsSubmitted + 1 });
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
                foreach (var w in pending.Concat(active)) Finish(w, FinishReason.Cancelled, null);
                pending.Clear();
                active.Clear();
                continue;
            }

            // Leave: cancelled requests, queued or active.
            foreach (var w in pending.Where(w => w.CancelRequested).ToList()) Finish(w, FinishReason.Cancelled, null);
            if (pending.Any(w => w.Finished)) pending = new Queue<Work>(pending.Where(w => !w.Finished));
            foreach (var w in active.Where(w => w.CancelRequested)) Finish(w, FinishReason.Cancelled, null);
            active.RemoveAll(w => w.Finished);

            // Join: admit queued requests up to the concurrency limit.
            while (pending.Count > 0 && active.Count < Options.MaxConcurrentSequences)
            {
                var w = pending.Dequeue();
                if (Admit(w)) active.Add(w);
            }
            active.RemoveAll(w => w.Finished);

            // One prefill chunk (oldest first), then one decode step for everyone already decoding.
            var prefilling = active.FirstOrDefault(w => w.IsPrefilling);
            bool solo = active.Count == 1 && pending.Count == 0;
            if (prefilling is not null) Guard([prefilling], () => PrefillChunk(prefilling, solo));
            var decoding = active.Where(w => !w.Finished && !w.IsPrefilling && !w.CancelRequested).ToList();
            if (decoding.Count > 0) Guard(decoding, () => DecodeStep(decoding));
            active.RemoveAll(w => w.Finished);
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
            w.Sampler = new LogitsSampler(options, w.Prompt);
            w.Detokenizer = Tokenizer?.CreateStreamingDetokenizer(skipSpecialTokens: !options.IncludeSpecialTokensInText);
            w.Stops = new StopSequenceMatcher(options.StopSequences);
            int room = Math.Min(w.Prompt.Count + options.MaxNewTokens, MaxContextTokens);
            if (request.Snapshot is { IsDisposed: true }) throw new ObjectDisposedException(nameof(ContextSnapshot), "The request's snapshot was disposed before the request started.");
            var snapshot = request.Snapshot ?? (Options.PrefixCacheBytes > 0 ? _prefixCache.FindLongestPrefix(w.Prompt) : null);
            w.Clock.Restart();
            if (snapshot is not null && !snapshot.IsDisposed)
            {
                w.Cache = snapshot.CloneCache(room - snapshot.Length);
                w.Prefilled = w.Cached = snapshot.Length;
                UpdateMetrics(m => m with { ReusedPrefixTokens = m.ReusedPrefixTokens + snapshot.Length });
                if (!w.IsPrefilling)
                {
                    // The whole prompt is the snapshot: its stored logits give the first token with no forward at all.
                    w.PrefillSeconds = w.Clock.Elapsed.TotalSeconds;
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
        if (solo)
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
            var logits = _model.Forward(ids, null, w.Cache, LogitPositions.Last);
            w.Prefilled += n;
            if (!w.IsPrefilling) last = ToHost(logits);
        }
        UpdateMetrics(m => m with { PrefillTokens = m.PrefillTokens + n });
        w.Progress?.Report(new PrefillProgress(w.Prefilled, w.Prompt.Count));
        if (last is null) return;
        w.PrefillSeconds = w.Clock.Elapsed.TotalSeconds;
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

    /// <summary>The decode step's host logits, reused from step to step (scheduler thread only): a fresh array per step was
    /// a large-object allocation (128 KiB at a 32K vocabulary) every token.</summary>
    private float[] _decodeLogits = [];

    private void DecodeStep(List<Work> batch)
    {
        Span<float> all;
        int vocab;
        using (var scope = NewDisposeScope())
        {
            var ids = torch.tensor(batch.Select(w => (long)w.LastToken).ToArray(), [batch.Count, 1], dtype: ScalarType.Int64);
            var logits = _model.Forward(ids, null, new CacheBatch(batch.Select(w => w.Cache!).ToArray()), LogitPositions.Last);
            vocab = (int)logits.shape[^1];
            using var cpu = logits.to(DeviceType.CPU).contiguous();
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
        using var cpu = logits.to(DeviceType.CPU).contiguous();
        return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(cpu.bytes).ToArray();
    }

    private void HandleLogits(Work w, Span<float> logits)
    {
        var options = w.Request!.Options;
        if (w.CancelRequested)
        {
            Finish(w, FinishReason.Cancelled, null);
            return;
        }
        if (w.Cache!.Length >= MaxContextTokens)
        {
            Finish(w, FinishReason.Length, null);
            return;
        }
        float[]? raw = options.LogProbs ? logits.ToArray() : null;
        int token = w.Sampler!.Sample(logits);
        w.Sampler.Accept(token);
        if (w.Generated == 0) w.FirstTokenTicks = Stopwatch.GetTimestamp();
        w.Generated++;
        UpdateMetrics(m => m with { DecodedTokens = m.DecodedTokens + 1 });
        float? logProb = null;
        IReadOnlyList<TokenLogProb>? top = null;
        if (raw is not null) (logProb, top) = LogitsSampler.LogProbs(raw, token, options.TopLogProbs);
        if (!options.IgnoreEos && (_eos.Contains(token) || options.StopTokenIds.Contains(token)))
        {
            Finish(w, FinishReason.Stop, token, logProb, top);
            return;
        }
        string text = w.Detokenizer?.Append(token) ?? "";
        string released = w.Stops!.Push(text);
        if (w.Stops.Stopped)
        {
            Finish(w, FinishReason.Stop, token, logProb, top, released);
            return;
        }
        if (w.Generated >= options.MaxNewTokens)
        {
            Finish(w, FinishReason.Length, token, logProb, top, released);
            return;
        }
        w.LastToken = token;
        w.Output!.Writer.TryWrite(new GenerationUpdate { TokenId = token, Text = released, LogProb = logProb, TopLogProbs = top });
    }

    private void Finish(Work w, FinishReason reason, int? token, float? logProb = null, IReadOnlyList<TokenLogProb>? top = null, string text = "")
    {
        if (w.Finished) return;
        w.Finished = true;
        if (w.SnapshotResult is not null)
        {
            w.SnapshotResult.TrySetCanceled();
        }
        else
        {
            string rest = "";
            if (reason != FinishReason.Cancelled)
            {
                if (!w.Stops!.Stopped) rest = w.Stops.Push(w.Detokenizer?.Flush() ?? "");
                rest += w.Stops.Flush();
            }
            double decodeSeconds = w.FirstTokenTicks == 0 ? 0 : Stopwatch.GetElapsedTime(w.FirstTokenTicks).TotalSeconds;
            w.Output!.Writer.TryWrite(new GenerationUpdate
            {
                TokenId = token,
                Text = text + rest,
                LogProb = logProb,
                TopLogProbs = top,
                FinishReason = reason,
                Usage = new GenerationUsage(w.Prompt.Count, w.Generated, w.Cached),
                PrefillSeconds = w.PrefillSeconds,
                DecodeSeconds = decodeSeconds,
            });
            w.Output.Writer.TryComplete();
        }
        w.Cache?.Dispose();
        w.Cache = null;
        Release(w);
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
        UpdateMetrics(m => m with { RequestsCompleted = m.RequestsCompleted + 1 });
    }

    /// <summary>Stops the scheduler: queued and running generations end as cancelled.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
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
        public int[]? SnapshotTokens { get; }
        public IProgress<PrefillProgress>? Progress { get; }
        public Channel<GenerationUpdate>? Output { get; }
        public TaskCompletionSource<ContextSnapshot>? SnapshotResult { get; }
        public volatile bool CancelRequested;
        public volatile bool Finished;
        public bool HasSlot;
        public bool Submitted;

        public IReadOnlyList<int> Prompt = [];
        public HybridCache? Cache;
        public int Prefilled;
        public int Cached;
        public int Generated;
        public int LastToken;
        public LogitsSampler? Sampler;
        public StreamingDetokenizer? Detokenizer;
        public StopSequenceMatcher? Stops;
        public readonly Stopwatch Clock = new();
        public double PrefillSeconds;
        public long FirstTokenTicks;

        public bool IsPrefilling => Prefilled < Prompt.Count;

        public void Fail(Exception ex)
        {
            Finished = true;
            Output?.Writer.TryComplete(ex);
            SnapshotResult?.TrySetException(ex);
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
public sealed record GenerationResult(IReadOnlyList<int> Tokens, string Text, FinishReason FinishReason, GenerationUsage Usage, double PrefillSeconds, double DecodeSeconds);
