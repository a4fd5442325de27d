using Jamba.Inference.Kernels;
using Jamba.Inference.Caching;
using Jamba.Inference.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Modeling;

/// <summary>
/// One Jamba block (paper Fig. 1): <c>h += mixer(input_layernorm(h)); h += feed_forward(pre_ff_layernorm(h))</c>,
/// where the mixer is <see cref="JambaAttention"/> (<c>self_attn</c>) or <see cref="JambaMambaMixer"/> (<c>mamba</c>)
/// and the feed-forward is a <see cref="JambaSparseMoeBlock"/> or a dense <see cref="JambaMlp"/>.
/// </summary>
public sealed class JambaDecoderLayer : nn.Module
{
#pragma warning disable IDE1006
    /// <summary>Norm before the mixer.</summary>
    public readonly RMSNorm input_layernorm;
    /// <summary>The attention mixer (attention layers only).</summary>
    public readonly JambaAttention? self_attn;
    /// <summary>The Mamba mixer (Mamba layers only).</summary>
    public readonly JambaMambaMixer? mamba;
    /// <summary>Norm before the feed-forward.</summary>
    public readonly RMSNorm pre_ff_layernorm;
    /// <summary>The feed-forward: <see cref="JambaSparseMoeBlock"/> or <see cref="JambaMlp"/>.</summary>
    public readonly nn.Module<Tensor, Tensor> feed_forward;
#pragma warning restore IDE1006

    /// <summary>Creates decoder layer <paramref name="layer"/> as the config's schedule says.</summary>
    public JambaDecoderLayer(JambaConfig config, int layer, ModelContext ctx) : base(nameof(JambaDecoderLayer))
    {
        Index = layer;
        Kind = config.MixerKind(layer);
        input_layernorm = new RMSNorm(config.HiddenSize, config.RmsNormEps, ctx);
        if (Kind == JambaMixerKind.Attention) self_attn = new JambaAttention(config, layer, ctx);
        else mamba = new JambaMambaMixer(config, layer, ctx);
        pre_ff_layernorm = new RMSNorm(config.HiddenSize, config.RmsNormEps, ctx);
        feed_forward = config.IsMoeLayer(layer) ? new JambaSparseMoeBlock(config, ctx) : new JambaMlp(config, ctx);
        RegisterComponents();
    }

    /// <summary>Layer index.</summary>
    public int Index { get; }
    /// <summary>Attention or Mamba.</summary>
    public JambaMixerKind Kind { get; }

    /// <summary>Runs the block on the new positions.</summary>
    public Tensor Forward(Tensor hidden, ForwardMasks masks, IHybridCacheView? cache)
    {
        using var scope = NewDisposeScope();
        var normed = input_layernorm.forward(hidden);
        var mixed = Kind == JambaMixerKind.Attention
            ? self_attn!.Forward(normed, masks.Attention, cache)
            : mamba!.Forward(normed, masks.Positions, cache);
        var h = hidden.Plus(mixed);
        h = h.Plus(feed_forward.forward(pre_ff_layernorm.forward(h)));
        return h.MoveToOuterDisposeScope();
    }
}

/// <summary>The masks of one forward: additive attention mask <c>[B,1,L,past+L]</c> (null for plain causal) and the
/// 1/0 mask of the new positions <c>[B, L]</c> for the Mamba layers (null when nothing is padded).</summary>
public readonly record struct ForwardMasks(Tensor? Attention, Tensor? Positions);
