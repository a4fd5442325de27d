namespace Jamba.Inference.Engine;

/// <summary>What the engine does when its request queue is full.</summary>
public enum QueueFullBehavior
{
    /// <summary>Throw <see cref="EngineBusyException"/> at once.</summary>
    Throw,
    /// <summary>Wait (asynchronously, cancellable) for a free slot.</summary>
    Wait,
}

/// <summary>Limits and tuning of an engine. Defaults suit a CPU server; <see cref="Validate"/> checks ranges.</summary>
public sealed class EngineOptions
{
    /// <summary>Sequences decoded together in one batch (1…1024; default 16).</summary>
    public int MaxConcurrentSequences { get; set; } = 16;
    /// <summary>Requests waiting for a slot before <see cref="QueueFull"/> applies (0…100000; default 1024).</summary>
    public int MaxQueuedRequests { get; set; } = 1024;
    /// <summary>What happens when the queue is full (default <see cref="QueueFullBehavior.Wait"/>).</summary>
    public QueueFullBehavior QueueFull { get; set; } = QueueFullBehavior.Wait;
    /// <summary>Longest context (prompt + generated tokens) per sequence; null = the model's <c>max_position_embeddings</c>.</summary>
    public int? MaxContextTokens { get; set; }
    /// <summary>Prompt tokens prefilled per scheduler step; long prompts alternate chunks with decode steps (16…65536; default 512).</summary>
    public int PrefillChunkTokens { get; set; } = 512;
    /// <summary>Prompt tokens prefilled per scheduler step while the prefilling request is the only one the engine has (nothing
    /// else decoding or waiting), so no other stream's latency is at stake: larger chunks run the projections as larger, more
    /// efficient GEMMs (a 2048-token prompt ~12 % faster here in one chunk than in four). Used while the chunk's attention fits
    /// the fused kernel (chunk × context ≤ <see cref="Kernels.AttentionKernels.FusedMaxPairs"/>, i.e. the first 4096
    /// tokens at 2048); longer contexts continue in <see cref="PrefillChunkTokens"/> chunks. Never below
    /// <see cref="PrefillChunkTokens"/> (16…65536; default 2048).</summary>
    public int SoloPrefillChunkTokens { get; set; } = 2048;
    /// <summary>Memory budget of automatic prefix snapshots (0 disables automatic prefix reuse; default 512 MiB).</summary>
    public long PrefixCacheBytes { get; set; } = 512L * 1024 * 1024;
    /// <summary>Prompts at least this long are kept as automatic prefix snapshots (1…; default 256).</summary>
    public int PrefixCacheMinTokens { get; set; } = 256;
    /// <summary>Intra-op threads for the compute (null leaves TorchSharp's default).</summary>
    public int? IntraOpThreads { get; set; }

    /// <summary>Checks every option.</summary>
    /// <exception cref="ArgumentException">Names the option and the allowed range.</exception>
    public void Validate()
    {
        static void Check(bool ok, string name, string range, object? value)
        {
            if (!ok) throw new ArgumentException($"{name} must be {range}; found {value}.", name);
        }
        Check(MaxConcurrentSequences is >= 1 and <= 1024, nameof(MaxConcurrentSequences), "between 1 and 1024", MaxConcurrentSequences);
        Check(MaxQueuedRequests is >= 0 and <= 100000, nameof(MaxQueuedRequests), "between 0 and 100000", MaxQueuedRequests);
        Check(MaxContextTokens is null or >= 1, nameof(MaxContextTokens), "positive or null", MaxContextTokens);
        Check(PrefillChunkTokens is >= 16 and <= 65536, nameof(PrefillChunkTokens), "between 16 and 65536", PrefillChunkTokens);
        Check(SoloPrefillChunkTokens is >= 16 and <= 65536, nameof(SoloPrefillChunkTokens), "between 16 and 65536", SoloPrefillChunkTokens);
        Check(PrefixCacheBytes >= 0, nameof(PrefixCacheBytes), "non-negative", PrefixCacheBytes);
        Check(PrefixCacheMinTokens >= 1, nameof(PrefixCacheMinTokens), "positive", PrefixCacheMinTokens);
        Check(IntraOpThreads is null or (>= 1 and <= 1024), nameof(IntraOpThreads), "between 1 and 1024 or null", IntraOpThreads);
    }

    /// <summary>A copy.</summary>
    public EngineOptions Clone() => (EngineOptions)MemberwiseClone();

    /// <summary>The options whose values differ between this and <paramref name="other"/>, as <c>Name (this vs other)</c>.</summary>
    public IReadOnlyList<string> DifferencesFrom(EngineOptions other)
    {
        ArgumentNullException.ThrowIfNull(other);
        var differences = new List<string>();
        void Compare<T>(string name, T a, T b)
        {
            if (!EqualityComparer<T>.Default.Equals(a, b)) differences.Add($"{name} ({a?.ToString() ?? "null"} vs {b?.ToString() ?? "null"})");
        }
        Compare(nameof(MaxConcurrentSequences), MaxConcurrentSequences, other.MaxConcurrentSequences);
        Compare(nameof(MaxQueuedRequests), MaxQueuedRequests, other.MaxQueuedRequests);
        Compare(nameof(QueueFull), QueueFull, other.QueueFull);
        Compare(nameof(MaxContextTokens), MaxContextTokens, other.MaxContextTokens);
        Compare(nameof(PrefillChunkTokens), PrefillChunkTokens, other.PrefillChunkTokens);
        Compare(nameof(SoloPrefillChunkTokens), SoloPrefillChunkTokens, other.SoloPrefillChunkTokens);
        Compare(nameof(PrefixCacheBytes), PrefixCacheBytes, other.PrefixCacheBytes);
        Compare(nameof(PrefixCacheMinTokens), PrefixCacheMinTokens, other.PrefixCacheMinTokens);
        Compare(nameof(IntraOpThreads), IntraOpThreads, other.IntraOpThreads);
        return differences;
    }

    /// <summary>Whether every option has its default value (a load with default options states no preference).</summary>
    public bool IsDefault => DifferencesFrom(new EngineOptions()).Count == 0;
}

/// <summary>
/// A model is already loaded (same path, device and dtype) with an engine whose options differ from the ones a later load
/// asked for. The loaded weights and their one scheduler thread are shared, so the later caller gets this answer instead of
/// silently the first caller's engine: load with the same options, with default options (no preference: share whatever is
/// loaded), or in another <see cref="JambaModelRegistry"/>.
/// </summary>
public sealed class EngineOptionsConflictException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    public EngineOptionsConflictException(string path, IReadOnlyList<string> differences)
        : base($"The model '{path}' is already loaded with other engine options: {string.Join(", ", differences)} (loaded vs asked). " +
               "Load it with the same EngineOptions, with default EngineOptions to share the loaded engine, or in another JambaModelRegistry.")
    {
        Path = path;
        Differences = differences;
    }

    /// <summary>The checkpoint folder.</summary>
    public string Path { get; }
    /// <summary>The options that differ, as <c>Name (loaded vs asked)</c>.</summary>
    public IReadOnlyList<string> Differences { get; }
}

/// <summary>The engine's queue is full and it was configured to refuse rather than wait.</summary>
public sealed class EngineBusyException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    public EngineBusyException(int queued) : base($"The engine's request queue is full ({queued} waiting; EngineOptions.MaxQueuedRequests). Retry later or set QueueFull = Wait.") { }
}

/// <summary>A prompt is longer than the configured context limit.</summary>
public sealed class ContextLengthExceededException : ArgumentException
{
    /// <summary>Creates the exception.</summary>
    public ContextLengthExceededException(int promptTokens, int limit)
        : base($"The prompt has {promptTokens} tokens but the context limit is {limit} (EngineOptions.MaxContextTokens); nothing was truncated or run.", "prompt")
    {
        PromptTokens = promptTokens;
        Limit = limit;
    }

    /// <summary>Tokens in the prompt.</summary>
    public int PromptTokens { get; }
    /// <summary>The limit.</summary>
    public int Limit { get; }
}
