using Jamba.Inference.Kernels;
using Jamba.Inference.Caching;
using Jamba.Inference.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Jamba.Inference.Modeling;

/// <summary>The token embedding table, <c>embed_tokens.weight</c> <c>[vocab, hidden]</c>.</summary>
public sealed class TokenEmbedding : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    /// <summary>The table.</summary>
    public readonly Parameter weight;
#pragma warning restore IDE1006

    /// <summary>Creates the table.</summary>
    public TokenEmbedding(long vocab, long hidden, ModelContext ctx) : base(nameof(TokenEmbedding))
    {
        weight = ctx.NewParameter(vocab, hidden);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor ids)
    {
        var shape = ids.shape.Append(weight.shape[1]).ToArray();
        return weight.index_select(0, ids.reshape(-1)).view(shape);
    }
}

/// <summary>The Jamba decoder stack (HF <c>JambaModel</c>): <c>embed_tokens</c> → <c>layers</c> → <c>final_layernorm</c>.</summary>
public sealed class JambaModel : nn.Module
{
#pragma warning disable IDE1006
    /// <summary>Token embedding.</summary>
    public readonly TokenEmbedding embed_tokens;
    /// <summary>Decoder layers.</summary>
    public readonly ModuleList<JambaDecoderLayer> layers;
    /// <summary>The final RMSNorm.</summary>
    public readonly RMSNorm final_layernorm;
#pragma warning restore IDE1006
    private readonly JambaConfig _config;

    /// <summary>Creates the stack.</summary>
    public JambaModel(JambaConfig config, ModelContext ctx) : base(nameof(JambaModel))
    {
        _config = config;
        embed_tokens = new TokenEmbedding(config.VocabSize, config.HiddenSize, ctx);
        layers = new ModuleList<JambaDecoderLayer>(Enumerable.Range(0, config.NumHiddenLayers).Select(i => new JambaDecoderLayer(config, i, ctx)).ToArray());
        final_layernorm = new RMSNorm(config.HiddenSize, config.RmsNormEps, ctx);
        RegisterComponents();
    }

    /// <summary>Runs the stack on <paramref name="inputIds"/> (<c>[B, L]</c>) and returns the final-normed hidden states.</summary>
    /// <param name="inputIds">Token ids of the new positions.</param>
    /// <param name="attentionMask">1/0 mask over every position so far (<c>[B, past+L]</c>); null when nothing is padded.</param>
    /// <param name="cache">Continues from and updates this cache; null for a stateless forward from position 0.</param>
    /// <param name="observer">Optional observer of intermediate values.</param>
    public Tensor Forward(Tensor inputIds, Tensor? attentionMask, IHybridCacheView? cache, IForwardObserver? observer = null)
    {
        using var scope = NewDisposeScope();
        long b = inputIds.shape[0], l = inputIds.shape[1];
        if (cache is not null && cache.BatchSize != b)
            throw new ArgumentException($"The cache holds {cache.BatchSize} sequences but the input has {b} rows.", nameof(cache));
        if (cache is CacheBatch && attentionMask is not null)
            throw new ArgumentException("Rows of a CacheBatch are never padded; pass no attention mask.", nameof(attentionMask));
        // A padded batch advances together in one HybridCache; a CacheBatch masks each row itself.
        int past = (cache as HybridCache)?.Length ?? 0;
        if (attentionMask is not null && (attentionMask.shape[0] != b || attentionMask.shape[1] != past + l))
            throw new ArgumentException($"attentionMask must be [{b}, {past + l}] (past {past} + new {l}), found [{string.Join(", ", attentionMask.shape)}].", nameof(attentionMask));

        var hidden = embed_tokens.forward(inputIds);
        observer?.OnEmbeddings(hidden);
        var masks = cache is CacheBatch ? new ForwardMasks(null, null) : BuildMasks(attentionMask, past, l, hidden.dtype, hidden.device);
        foreach (var layer in layers)
        {
            if (observer is not null && layer.feed_forward is JambaSparseMoeBlock moe)
                moe.RouterObserver = (experts, weights) => observer.OnRouter(layer.Index, experts, weights);
            try
            {
                hidden = layer.Forward(hidden, masks, cache);
            }
            finally
            {
                if (layer.feed_forward is JambaSparseMoeBlock m) m.RouterObserver = null;
            }
            observer?.OnLayerOutput(layer.Index, hidden);
        }
        cache?.Advance((int)l);
        return final_layernorm.forward(hidden).MoveToOuterDisposeScope();
    }

    /// <summary>Builds the masks for <paramref name="newTokens"/> positions after <paramref name="past"/> cached ones.</summary>
    internal static ForwardMasks BuildMasks(Tensor? attentionMask, int past, long newTokens, ScalarType dtype, Device device)
    {
        // Whether any position is padding: a host read, which the device path skips (a mask of ones changes nothing).
        bool padded = attentionMask is not null && (!CpuKernels.Enabled || attentionMask.device_type != DeviceType.CPU
            || HostReads.Item<bool>(attentionMask.eq(TorchScalars.Zero).any()));
        // Without padding the attention kernel applies the causal rule (offset by the cached prefix) itself, block by
        // block, so no [L, past+L] mask is ever built: memory stays flat however long the context.
        if (!padded) return new ForwardMasks(null, null);
        long total = past + newTokens;
        // Query i (absolute position past+i) may see key j iff j <= past+i and j is not padding.
        var queryPos = TorchScalars.Arange(past, total, device).unsqueeze(1);   // [L, 1]
        var keyPos = TorchScalars.Arange(0, total, device).unsqueeze(0);        // [1, S]
        var allowed = keyPos.le(queryPos).unsqueeze(0).unsqueeze(0);             // [1, 1, L, S]
        Tensor? positions = null;
        if (padded)
        {
            var keep = attentionMask!.to(device).ne(TorchScalars.Zero);
            allowed = allowed.logical_and(keep.unsqueeze(1).unsqueeze(1));       // [B, 1, L, S]
            positions = keep.narrow(1, past, newTokens).to(dtype);
        }
        double min = dtype switch
        {
            ScalarType.Float16 => -65504.0,
            ScalarType.BFloat16 => -3.3895313892515355e38,
            ScalarType.Float64 => double.MinValue,
            _ => float.MinValue,
        };
        var additive = torch.zeros(allowed.shape, dtype: dtype, device: device).MaskedFill(allowed.logical_not(), min);
        return new ForwardMasks(additive, positions);
    }
}
