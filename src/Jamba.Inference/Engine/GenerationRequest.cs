using Jamba.Inference.Caching;
using Jamba.Inference.Generation;

namespace Jamba.Inference.Engine;

/// <summary>One generation: a prompt as token ids (continuing an optional snapshot) and the options.</summary>
public sealed class GenerationRequest
{
    /// <summary>Creates a request.</summary>
    /// <param name="promptTokens">The whole prompt. With a <paramref name="snapshot"/> it must start with the snapshot's tokens
    /// (use <see cref="ContinueFrom"/> to pass only the continuation).</param>
    /// <param name="options">Generation options (copied; null = defaults).</param>
    /// <param name="snapshot">Continue from this prefilled context.</param>
    /// <exception cref="ArgumentException">Empty prompt, invalid options, or a prompt that does not start with the snapshot's tokens.</exception>
    public GenerationRequest(IReadOnlyList<int> promptTokens, GenerationOptions? options = null, ContextSnapshot? snapshot = null)
    {
        ArgumentNullException.ThrowIfNull(promptTokens);
        Options = (options ?? new GenerationOptions()).Clone();
        Options.Validate();
        Snapshot = snapshot;
        if (snapshot is not null && !StartsWith(promptTokens, snapshot.Tokens))
            throw new ArgumentException($"The prompt ({promptTokens.Count} tokens) does not start with the snapshot's {snapshot.Length} tokens; " +
                                        "pass the whole prompt, or use GenerationRequest.ContinueFrom(snapshot, continuation).", nameof(promptTokens));
        PromptTokens = promptTokens.ToArray();
        if (PromptTokens.Count == 0) throw new ArgumentException("The prompt must have at least one token.", nameof(promptTokens));
    }

    /// <summary>A request whose prompt is <paramref name="snapshot"/>'s tokens followed by <paramref name="continuation"/>.</summary>
    public static GenerationRequest ContinueFrom(ContextSnapshot snapshot, IReadOnlyList<int> continuation, GenerationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        ArgumentNullException.ThrowIfNull(continuation);
        return new GenerationRequest(snapshot.Tokens.Concat(continuation).ToArray(), options, snapshot);
    }

    /// <summary>The whole prompt (snapshot tokens included).</summary>
    public IReadOnlyList<int> PromptTokens { get; }
    /// <summary>The options (a private copy).</summary>
    public GenerationOptions Options { get; }
    /// <summary>The snapshot to continue from, if any.</summary>
    public ContextSnapshot? Snapshot { get; }

    internal static bool StartsWith(IReadOnlyList<int> tokens, IReadOnlyList<int> prefix)
    {
        if (prefix.Count > tokens.Count) return false;
        for (int i = 0; i < prefix.Count; i++)
            if (tokens[i] != prefix[i]) return false;
        return true;
    }
}

/// <summary>Progress of a long prefill.</summary>
/// <param name="TokensDone">Prompt tokens processed.</param>
/// <param name="TokensTotal">Prompt tokens to process.</param>
public readonly record struct PrefillProgress(int TokensDone, int TokensTotal)
{
    /// <summary>Fraction done, 0..1.</summary>
    public double Fraction => TokensTotal == 0 ? 1 : (double)TokensDone / TokensTotal;
}

/// <summary>Counters of an engine (a consistent copy).</summary>
public sealed record EngineMetrics
{
    /// <summary>Requests accepted.</summary>
    public long RequestsSubmitted { get; init; }
    /// <summary>Requests finished (any reason).</summary>
    public long RequestsCompleted { get; init; }
    /// <summary>Requests cancelled.</summary>
    public long RequestsCancelled { get; init; }
    /// <summary>Prompt tokens run through the model.</summary>
    public long PrefillTokens { get; init; }
    /// <summary>Prompt tokens taken from snapshots (explicit or automatic).</summary>
    public long ReusedPrefixTokens { get; init; }
    /// <summary>Tokens generated.</summary>
    public long DecodedTokens { get; init; }
    /// <summary>Batched decode steps run.</summary>
    public long DecodeSteps { get; init; }
    /// <summary>Largest decode batch seen.</summary>
    public int MaxBatch { get; init; }
    /// <summary>Snapshots currently kept for automatic prefix reuse.</summary>
    public int PrefixCacheEntries { get; init; }
    /// <summary>Bytes held by automatic prefix snapshots.</summary>
    public long PrefixCacheBytes { get; init; }
    /// <summary>Whether the scheduler was idle (nothing queued or running) when these counters were taken.</summary>
    public bool Idle { get; init; }
}
