using Jamba.Inference.Caching;
using Jamba.Inference.Config;
using Jamba.Inference.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Modeling;

/// <summary>
/// Grouped-query causal self-attention with no positional embedding (Jamba's attention layers rely on
/// the Mamba layers for position). Parameter names follow HF: <c>q_proj</c>, <c>k_proj</c>, <c>v_proj</c>, <c>o_proj</c>.
/// </summary>
public sealed class JambaAttention : nn.Module
{
#pragma warning disable IDE1006
    /// <summary>Query projection.</summary>
    public readonly Projection q_proj;
    /// <summary>Key projection.</summary>
    public readonly Projection k_proj;
    /// <summary>Value projection.</summary>
    public readonly Projection v_proj;
    /// <summary>Output projection.</summary>
    public readonly Projection o_proj;
#pragma warning restore IDE1006
    private readonly int _layer;
    private readonly int _heads;
    private readonly int _kvHeads;
    private readonly int _headDim;

    /// <summary>Creates the attention mixer of decoder layer <paramref name="layer"/>.</summary>
    public JambaAttention(JambaConfig config, int layer, ModelContext ctx) : base(nameof(JambaAttention))
    {
        _layer = layer;
        _heads = config.NumAttentionHeads;
        _kvHeads = config.NumKeyValueHeads;
        _headDim = config.HeadDim;
        q_proj = new Projection(config.HiddenSize, _heads * _headDim, false, ctx, quantizable: true);
        k_proj = new Projection(config.HiddenSize, _kvHeads * _headDim, false, ctx, quantizable: true);
        v_proj = new Projection(config.HiddenSize, _kvHeads * _headDim, false, ctx, quantizable: true);
        o_proj = new Projection(_heads * _headDim, config.HiddenSize, false, ctx, quantizable: true);
        RegisterComponents();
    }

    /// <summary>Attends the <c>L</c> new positions of <paramref name="hidden"/> (<c>[B, L, hidden]</c>) to every position so far.</summary>
    /// <param name="hidden">Normalised input.</param>
    /// <param name="mask">Additive mask <c>[B, 1, L, past+L]</c>, or null for plain causal attention without padding.</param>
    /// <param name="cache">Caches that receive this layer's K/V, or null for a stateless forward.</param>
    public Tensor Forward(Tensor hidden, Tensor? mask, IHybridCacheView? cache)
    {
        using var scope = NewDisposeScope();
        long b = hidden.shape[0], l = hidden.shape[1];
        var q = q_proj.forward(hidden).view(b, l, _heads, _headDim).transpose(1, 2);
        var k = k_proj.forward(hidden).view(b, l, _kvHeads, _headDim).transpose(1, 2);
        var v = v_proj.forward(hidden).view(b, l, _kvHeads, _headDim).transpose(1, 2);
        var attn = cache is null ? AttentionKernels.Attend(q, k, v, mask) : AttendCached(q, cache.AppendKeyValue(_layer, k, v), mask);
        // [B, H, L, hd] → [B, L, H·hd]; for one position a reshape of the contiguous result keeps row-major strides.
        var merged = l == 1 ? attn.contiguous().reshape(b, 1, _heads * _headDim) : attn.transpose(1, 2).reshape(b, l, _heads * _headDim);
        var output = o_proj.forward(merged);
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>Attends the queries of each group of rows to that group's keys and values so far (one group for a padded
    /// batch, one per row when independent sequences decode together); a single query per row takes the decode kernel.</summary>
    private static Tensor AttendCached(Tensor q, IReadOnlyList<KeyValueRows> groups, Tensor? mask)
    {
        if (groups.Count > 1 && mask is not null)
            throw new ArgumentException("Rows of independent caches build their own causal masks; they are never padded.", nameof(mask));
        var outputs = new Tensor[groups.Count];
        for (int i = 0; i < groups.Count; i++)
        {
            var g = groups[i];
            var rows = groups.Count == 1 ? q : q.narrow(0, g.FirstRow, g.Rows);
            outputs[i] = mask is null && DecodeAttention.Applies(rows, g.KeyBuffer)
                ? DecodeAttention.Attend(rows, g.KeyBuffer, g.ValueBuffer, g.Length)
                : AttentionKernels.Attend(rows, g.Keys, g.Values, mask);
        }
        return outputs.Length == 1 ? outputs[0] : torch.cat(outputs, 0);
    }
}
