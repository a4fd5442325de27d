namespace Jamba.Inference.Generation;

/// <summary>
/// Turns one row of next-token logits into a token: penalties (repetition as HF, presence/frequency as OpenAI),
/// temperature, top-k, top-p, min-p, then a draw from a per-sequence seeded generator (or argmax when greedy).
/// Works on host memory; one instance per sequence.
/// </summary>
public sealed class LogitsSampler
{
    private readonly GenerationOptions _options;
    private readonly Random _random;
    private readonly Dictionary<int, int> _outputCounts = new();
    private readonly HashSet<int> _seen = new();
    private float[] _scratch = [];
    private int[] _order = [];

    /// <summary>Creates a sampler for one sequence with its prompt (for the repetition penalty).</summary>
    public LogitsSampler(GenerationOptions options, IEnumerable<int> promptTokens)
    {
        _options = options;
        long seed = options.Seed ?? Random.Shared.NextInt64();
        _random = new Random(unchecked((int)(seed ^ (seed >> 32))));
        if (options.RepetitionPenalty != 1f) foreach (var t in promptTokens) _seen.Add(t);
    }

    /// <summary>Records a generated token (for penalties).</summary>
    public void Accept(int token)
    {
        _outputCounts[token] = _outputCounts.GetValueOrDefault(token) + 1;
        if (_options.RepetitionPenalty != 1f) _seen.Add(token);
    }

    /// <summary>Picks the next token from <paramref name="logits"/> (modified in place by the penalties).</summary>
    public int Sample(Span<float> logits)
    {
        ApplyPenalties(logits);
        if (_options.IsGreedy) return ArgMax(logits);
        int n = logits.Length;
        if (_scratch.Length != n)
        {
            _scratch = new float[n];
            _order = new int[n];
        }
        float inv = 1f / _options.Temperature;
        float max = float.NegativeInfinity;
        for (int i = 0; i < n; i++) max = Math.Max(max, logits[i] * inv);
        double total = 0;
        for (int i = 0; i < n; i++)
        {
            float p = float.IsNegativeInfinity(logits[i]) ? 0f : MathF.Exp(logits[i] * inv - max);
            _scratch[i] = p;
            total += p;
        }
        // Candidates sorted by probability, cut by top-k, top-p and min-p.
        int count = n;
        for (int i = 0; i < n; i++) _order[i] = i;
        var probs = _scratch;
        Array.Sort(_order, (a, b) => probs[b].CompareTo(probs[a]) is var c && c != 0 ? c : a.CompareTo(b));
        if (_options.TopK > 0) count = Math.Min(count, _options.TopK);
        if (_options.MinP > 0f)
        {
            float floor = _options.MinP * probs[_order[0]];
            int keep = 0;
            while (keep < count && probs[_order[keep]] >= floor) keep++;
            count = Math.Max(1, keep);
        }
        if (_options.TopP < 1f)
        {
            double cum = 0, target = _options.TopP * total;
            int keep = 0;
            while (keep < count)
            {
                cum += probs[_order[keep++]];
                if (cum >= target) break;
            }
            count = Math.Max(1, keep);
        }
        double kept = 0;
        for (int i = 0; i < count; i++) kept += probs[_order[i]];
        double u = _random.NextDouble() * kept;
        for (int i = 0; i < count; i++)
        {
            u -= probs[_order[i]];
            if (u <= 0) return _order[i];
        }
        return _order[count - 1];
    }

    private void ApplyPenalties(Span<float> logits)
    {
        float rep = _options.RepetitionPenalty;
        if (rep != 1f)
            foreach (var t in _seen)
                if ((uint)t < (uint)logits.Length)
                    logits[t] = logits[t] > 0 ? logits[t] / rep : logits[t] * rep;
        if (_options.PresencePenalty != 0f || _options.FrequencyPenalty != 0f)
            foreach (var (t, c) in _outputCounts)
                if ((uint)t < (uint)logits.Length)
                    logits[t] -= _options.PresencePenalty + _options.FrequencyPenalty * c;
    }

    /// <summary>Index of the largest value (the first one on ties, as torch.argmax).</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }

    /// <summary>Log-softmax of <paramref name="logits"/> at <paramref name="token"/>, and the <paramref name="top"/> best alternatives.</summary>
    public static (float LogProb, IReadOnlyList<TokenLogProb>? Top) LogProbs(ReadOnlySpan<float> logits, int token, int top)
    {
        float max = float.NegativeInfinity;
        foreach (var v in logits) max = Math.Max(max, v);
        double sum = 0;
        foreach (var v in logits) sum += Math.Exp(v - max);
        float logZ = max + (float)Math.Log(sum);
        if (top <= 0) return (logits[token] - logZ, null);
        var best = new List<TokenLogProb>(top + 1);
        for (int i = 0; i < logits.Length; i++)
        {
            if (best.Count == top && logits[i] <= best[^1].LogProb) continue;
            int at = 0;
            while (at < best.Count && best[at].LogProb >= logits[i]) at++;
            best.Insert(at, new TokenLogProb(i, logits[i]));
            if (best.Count > top) best.RemoveAt(best.Count - 1);
        }
        return (logits[token] - logZ, best.Select(b => b with { LogProb = b.LogProb - logZ }).ToList());
    }
}
