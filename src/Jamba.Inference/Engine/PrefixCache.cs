using Jamba.Inference.Caching;

namespace Jamba.Inference.Engine;

/// <summary>
/// Automatic prefix reuse: snapshots of recent prompts, looked up by the longest one that the new prompt
/// starts with, evicted least-recently-used first under a byte budget. Scheduler thread only.
/// </summary>
internal sealed class PrefixCache : IDisposable
{
    private readonly long _budget;
    private readonly LinkedList<ContextSnapshot> _lru = new();

    public PrefixCache(long budgetBytes) => _budget = budgetBytes;

    public int Count => _lru.Count;
    public long Bytes => _lru.Sum(s => s.SizeInBytes);

    /// <summary>The longest snapshot whose tokens start <paramref name="prompt"/>, or null.</summary>
    public ContextSnapshot? FindLongestPrefix(IReadOnlyList<int> prompt)
    {
        LinkedListNode<ContextSnapshot>? best = null;
        for (var node = _lru.First; node is not null; node = node.Next)
            if ((best is null || node.Value.Length > best.Value.Length) && GenerationRequest.StartsWith(prompt, node.Value.Tokens))
                best = node;
        if (best is null) return null;
        _lru.Remove(best);
        _lru.AddFirst(best);
        return best.Value;
    }

    /// <summary>Whether a snapshot of exactly <paramref name="tokens"/> is kept.</summary>
    public bool Contains(IReadOnlyList<int> tokens) => _lru.Any(s => s.Length == tokens.Count && GenerationRequest.StartsWith(tokens, s.Tokens));

    /// <summary>Keeps <paramref name="snapshot"/> (owned from now on), evicting old ones to stay within budget.</summary>
    public void Add(ContextSnapshot snapshot)
    {
        if (snapshot.SizeInBytes > _budget)
        {
            snapshot.Dispose();
            return;
        }
        _lru.AddFirst(snapshot);
        long total = Bytes;
        while (total > _budget && _lru.Last is { } last)
        {
            total -= last.Value.SizeInBytes;
            last.Value.Dispose();
            _lru.RemoveLast();
        }
    }

    public void Dispose()
    {
        foreach (var s in _lru) s.Dispose();
        _lru.Clear();
    }
}
