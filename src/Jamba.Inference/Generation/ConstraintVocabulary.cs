using System.Runtime.CompilerServices;
using System.Text;
using Jamba.Inference.Tokenization;

namespace Jamba.Inference.Generation;

/// <summary>
/// A tokenizer's vocabulary as bytes, for constrained decoding: each ordinary token's text exactly as
/// <see cref="StreamingDetokenizer"/> produces it (byte-fallback <c>&lt;0xNN&gt;</c> pieces as their byte, the metaspace
/// as a space), arranged in a byte trie stored in preorder so that a mask is one depth-first walk that stops at the first
/// byte the matcher rejects. Special tokens, empty tokens and tokens longer than <see cref="MaxTokenBytes"/> are never
/// allowed. Built once per tokenizer.
/// </summary>
internal sealed class ConstraintVocabulary
{
    public const int MaxTokenBytes = 64;
    private static readonly ConditionalWeakTable<TokenDecodeTable, ConstraintVocabulary> ByTable = new();

    /// <summary>Tokens by id (null: never allowed).</summary>
    public readonly byte[]?[] Tokens;
    public int Size => Tokens.Length;
    // Trie in preorder: node i's subtree is [i, End[i]); its first child is i + 1, the next sibling of child c is End[c].
    internal readonly byte[] EdgeByte;
    internal readonly int[] End;
    internal readonly int[] TokenStart;
    internal readonly int[] TokenCount;
    internal readonly int[] SortedIds;
    internal readonly int MaxDepth;

    public static ConstraintVocabulary For(JambaTokenizer tokenizer) => For(tokenizer.DecodeTable);

    public static ConstraintVocabulary For(TokenDecodeTable table) => ByTable.GetValue(table, t => FromTable(t));

    private static ConstraintVocabulary FromTable(TokenDecodeTable t)
    {
        var tokens = new byte[]?[t.Text.Length];
        for (int id = 0; id < tokens.Length; id++)
        {
            if (t.Special[id]) continue;
            if (t.Bytes[id] >= 0) tokens[id] = [(byte)t.Bytes[id]];
            else if (t.Text[id] is { Length: > 0 } text)
                tokens[id] = Encoding.UTF8.GetBytes(t.Decoder.JoinWithSpaces ? " " + text : text);
        }
        return new ConstraintVocabulary(tokens);
    }

    /// <summary>A vocabulary of raw token bytes (tests and the benchmark's synthetic vocabulary).</summary>
    public ConstraintVocabulary(byte[]?[] tokens)
    {
        Tokens = tokens;
        var ids = new List<int>(tokens.Length);
        for (int i = 0; i < tokens.Length; i++)
            if (tokens[i] is { Length: > 0 and <= MaxTokenBytes }) ids.Add(i);
            else tokens[i] = null;
        ids.Sort((a, b) => tokens[a].AsSpan().SequenceCompareTo(tokens[b]) is var c && c != 0 ? c : a.CompareTo(b));
        SortedIds = ids.ToArray();
        var edge = new List<byte> { 0 };
        var end = new List<int> { 0 };
        var tokStart = new List<int> { 0 };
        var tokCount = new List<int> { 0 };
        var path = new List<int> { 0 }; // node at each depth
        byte[] prev = [];
        for (int k = 0; k < SortedIds.Length; k++)
        {
            var bytes = tokens[SortedIds[k]]!;
            int lcp = 0;
            while (lcp < prev.Length && lcp < bytes.Length && prev[lcp] == bytes[lcp] && lcp + 1 < path.Count) lcp++;
            // Close the nodes deeper than the common prefix.
            while (path.Count > lcp + 1)
            {
                end[path[^1]] = edge.Count;
                path.RemoveAt(path.Count - 1);
            }
            for (int d = lcp; d < bytes.Length; d++)
            {
                int node = edge.Count;
                edge.Add(bytes[d]);
                end.Add(0);
                tokStart.Add(0);
                tokCount.Add(0);
                path.Add(node);
            }
            int at = path[bytes.Length];
            if (tokCount[at] == 0) tokStart[at] = k;
            tokCount[at]++;
            prev = bytes;
        }
        while (path.Count > 0)
        {
            end[path[^1]] = edge.Count;
            path.RemoveAt(path.Count - 1);
        }
        EdgeByte = edge.ToArray();
        End = end.ToArray();
        TokenStart = tokStart.ToArray();
        TokenCount = tokCount.ToArray();
        MaxDepth = MaxTokenBytes + 1;
    }
}

/// <summary>The allowed tokens of one matcher state, with each one's fewest bytes to finish the value afterwards.</summary>
internal sealed class TokenMask
{
    public required ulong[] Bits;
    /// <summary>Allowed ids in order when few are allowed; null for a dense mask.</summary>
    public int[]? Sparse;
    /// <summary>Bytes to finish after each allowed token: parallel to <see cref="Sparse"/>, or indexed by id when dense.</summary>
    public required ushort[] CloseAfter;
    public int Count;
    public int MaxCloseAfter;
    public int MinCloseAfter;
    public long Bytes => Bits.Length * 8L + CloseAfter.Length * 2L + (Sparse?.Length ?? 0) * 4L;
}

/// <summary>Mask computation and caching for one compiled schema over one vocabulary (shared by every sequence; thread-safe).</summary>
internal sealed class MaskCache
{
    private const long MaxCacheBytes = 96L << 20;
    private readonly ConstraintVocabulary _vocab;
    private readonly Dictionary<MatcherState, TokenMask> _masks = new();
    private readonly object _lock = new();
    private long _bytes;

    public MaskCache(ConstraintVocabulary vocab) => _vocab = vocab;

    public ConstraintVocabulary Vocabulary => _vocab;

    public int Count { get { lock (_lock) return _masks.Count; } }

    public void Clear()
    {
        lock (_lock)
        {
            _masks.Clear();
            _bytes = 0;
        }
    }

    public TokenMask Get(MatcherState state)
    {
        lock (_lock)
            if (_masks.TryGetValue(state, out var m)) return m;
        var mask = Compute(state);
        lock (_lock)
        {
            if (_bytes + mask.Bytes > MaxCacheBytes)
            {
                _masks.Clear();
                _bytes = 0;
            }
            if (_masks.TryAdd(state, mask)) _bytes += mask.Bytes;
        }
        return mask;
    }

    [ThreadStatic] private static List<Frame>[]? t_levels;

    /// <summary>Walks the trie with the matcher: a subtree is skipped at the first byte no thread accepts.</summary>
    public TokenMask Compute(MatcherState state)
    {
        var v = _vocab;
        var bits = new ulong[(v.Size + 63) / 64];
        var close = new ushort[v.Size];
        int count = 0, maxClose = 0, minClose = int.MaxValue;
        var levels = t_levels;
        if (levels is null || levels.Length < v.MaxDepth + 1)
        {
            levels = new List<Frame>[v.MaxDepth + 1];
            for (int i = 0; i < levels.Length; i++) levels[i] = new List<Frame>(4);
            t_levels = levels;
        }
        levels[0].Clear();
        levels[0].AddRange(state.Threads);
        if (state.Threads.Length > 0) Walk(0, 1);

        void Walk(int node, int depth)
        {
            var cur = levels[depth - 1];
            var next = levels[depth];
            for (int c = node + 1; c < v.End[node]; c = v.End[c])
            {
                MatcherState.Step(cur, v.EdgeByte[c], next);
                if (next.Count == 0) continue;
                int n = v.TokenCount[c];
                if (n > 0)
                {
                    int mc = SchemaNode.Infinite;
                    foreach (var t in next)
                        mc = Math.Min(mc, t is RootFrame { Done: true } || t.CanPop && t.Parent is RootFrame { Done: true } ? 0 : t.MinClose());
                    ushort m16 = (ushort)Math.Min(mc, ushort.MaxValue);
                    for (int k = v.TokenStart[c], e = k + n; k < e; k++)
                    {
                        int id = v.SortedIds[k];
                        bits[id >> 6] |= 1UL << (id & 63);
                        close[id] = m16;
                    }
                    count += n;
                    maxClose = Math.Max(maxClose, m16);
                    minClose = Math.Min(minClose, m16);
                }
                if (v.End[c] > c + 1)
                {
                    Walk(c, depth + 1);
                    next = levels[depth];
                }
            }
        }

        var mask = new TokenMask { Bits = bits, CloseAfter = close, Count = count, MaxCloseAfter = maxClose, MinCloseAfter = count == 0 ? 0 : minClose };
        if (count <= v.Size / 16)
        {
            var ids = new int[count];
            var mcs = new ushort[count];
            int k = 0;
            for (int w = 0; w < bits.Length; w++)
                for (ulong word = bits[w]; word != 0; word &= word - 1)
                {
                    int id = w * 64 + System.Numerics.BitOperations.TrailingZeroCount(word);
                    ids[k] = id;
                    mcs[k++] = close[id];
                }
            mask.Sparse = ids;
            mask.CloseAfter = mcs;
        }
        return mask;
    }
}
