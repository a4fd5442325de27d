using Jamba.Inference.Caching;
using Jamba.Inference.Config;

namespace Jamba.Cli.Infrastructure;

/// <summary>Parameter counts and memory sizes computed from a configuration alone (no weights, no allocation).
/// Follows the module shapes of <c>Jamba.Inference.Modeling</c>; a test checks the counts against a built model.</summary>
internal static class ModelArithmetic
{
    /// <summary>One MLP (or expert): gate, up and down projections.</summary>
    public static long MlpParameters(JambaConfig c) => 3L * c.HiddenSize * c.IntermediateSize;

    /// <summary>q, k, v, o projections (no biases).</summary>
    public static long AttentionParameters(JambaConfig c)
    {
        long h = c.HiddenSize, hd = c.HeadDim;
        return h * c.NumAttentionHeads * hd * 2 + 2 * h * c.NumKeyValueHeads * hd;
    }

    /// <summary>in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj and the dt/B/C RMSNorms.</summary>
    public static long MambaParameters(JambaConfig c)
    {
        long h = c.HiddenSize, di = c.MambaDInner, ds = c.MambaDState, r = c.MambaDtRank, k = c.MambaDConv;
        long p = h * 2 * di + (c.MambaProjBias ? 2 * di : 0);     // in_proj
        p += di * k + (c.MambaConvBias ? di : 0);                  // conv1d
        p += di * (r + 2 * ds);                                   // x_proj
        p += r * di + di;                                         // dt_proj (+bias)
        p += di * ds + di;                                        // A_log, D
        p += di * h + (c.MambaProjBias ? h : 0);                  // out_proj
        p += r + 2 * ds;                                          // dt/b/c layernorms
        return p;
    }

    /// <summary>Feed-forward of layer <paramref name="layer"/>: a router and its experts, or one dense MLP.</summary>
    public static long FeedForwardParameters(JambaConfig c, int layer) =>
        c.IsMoeLayer(layer) ? (long)c.HiddenSize * c.NumExperts + c.NumExperts * MlpParameters(c) : MlpParameters(c);

    /// <summary>All parameters of decoder layer <paramref name="layer"/> (two RMSNorms, mixer, feed-forward).</summary>
    public static long LayerParameters(JambaConfig c, int layer) =>
        2L * c.HiddenSize
        + (c.MixerKind(layer) == JambaMixerKind.Attention ? AttentionParameters(c) : MambaParameters(c))
        + FeedForwardParameters(c, layer);

    /// <summary>Parameters of layer <paramref name="layer"/> used per token (unchosen experts excluded).</summary>
    public static long LayerActiveParameters(JambaConfig c, int layer) =>
        LayerParameters(c, layer) - (c.IsMoeLayer(layer) ? (long)(c.NumExperts - c.NumExpertsPerTok) * MlpParameters(c) : 0);

    /// <summary>The embedding table (and the LM head when untied).</summary>
    public static long EmbeddingParameters(JambaConfig c) => (long)c.VocabSize * c.HiddenSize;

    /// <summary>Total parameters (a tied embedding counted once).</summary>
    public static long TotalParameters(JambaConfig c) =>
        EmbeddingParameters(c) * (c.TieWordEmbeddings ? 1 : 2) + c.HiddenSize
        + Enumerable.Range(0, c.NumHiddenLayers).Sum(i => LayerParameters(c, i));

    /// <summary>Parameters used per token: all but the unchosen experts (as <c>JambaForCausalLM.ActiveParameterCount</c>).</summary>
    public static long ActiveParameters(JambaConfig c) =>
        TotalParameters(c) - Enumerable.Range(0, c.NumHiddenLayers).Where(c.IsMoeLayer).Sum(_ => (long)(c.NumExperts - c.NumExpertsPerTok) * MlpParameters(c));

    /// <summary>Weights read to decode one token at batch 1: the active parameters, of which the (untied) embedding
    /// table contributes a single row. Times the element size, this bounds decode speed by memory bandwidth.</summary>
    public static long ParametersReadPerToken(JambaConfig c) =>
        c.TieWordEmbeddings ? ActiveParameters(c) : ActiveParameters(c) - EmbeddingParameters(c) + c.HiddenSize;

    /// <summary>Attention K/V bytes added per token of context.</summary>
    public static long KvBytesPerToken(JambaConfig c, int elementSize) => HybridCache.BytesFor(c, 1, elementSize) - HybridCache.BytesFor(c, 0, elementSize);

    /// <summary>Mamba conv window and SSM state bytes per sequence (independent of length).</summary>
    public static long MambaStateBytes(JambaConfig c, int elementSize) => HybridCache.BytesFor(c, 0, elementSize);

    /// <summary>Cache bytes of one sequence of <paramref name="tokens"/> positions.</summary>
    public static long CacheBytes(JambaConfig c, long tokens, int elementSize) => HybridCache.BytesFor(c, tokens, elementSize);

    /// <summary>Human-readable bytes (binary units).</summary>
    public static string FormatBytes(double bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        int u = 0;
        while (Math.Abs(bytes) >= 1024 && u < units.Length - 1)
        {
            bytes /= 1024;
            u++;
        }
        return u == 0 ? $"{bytes:0} B" : $"{bytes:0.##} {units[u]}";
    }

    /// <summary>Human-readable count (M, B).</summary>
    public static string FormatCount(long n) => n switch
    {
        >= 1_000_000_000 => $"{n / 1e9:0.###}B",
        >= 1_000_000 => $"{n / 1e6:0.###}M",
        >= 1_000 => $"{n / 1e3:0.###}K",
        _ => n.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };
}
