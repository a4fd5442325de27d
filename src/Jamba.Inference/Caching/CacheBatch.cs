using Jamba.Inference.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Caching;

/// <summary>
/// What a forward pass needs from the caches of the rows it runs: either one <see cref="HybridCache"/> whose
/// rows advance together (padded batches), or a <see cref="CacheBatch"/> of independent single-sequence caches
/// at different lengths (continuous batching).
/// </summary>
public interface IHybridCacheView
{
    /// <summary>Rows.</summary>
    int BatchSize { get; }

    /// <summary>The conv windows <c>[B, d_inner, d_conv−1]</c> and SSM states <c>[B, d_inner, d_state]</c> (fp32) of Mamba
    /// layer <paramref name="layer"/>. The tensors may be copies: write results back with <see cref="CommitMamba"/>.</summary>
    (Tensor Conv, Tensor Ssm) MambaStates(int layer);

    /// <summary>Stores updated Mamba states (no-op when <see cref="MambaStates"/> returned the cache's own tensors).</summary>
    void CommitMamba(int layer, Tensor conv, Tensor ssm);

    /// <summary>Stores the new keys/values <c>[B, kvh, L, hd]</c> of attention layer <paramref name="layer"/> after the
    /// positions already held and returns every key and value so far, as one <see cref="KeyValueRows"/> per group of rows
    /// that share a length (one for a <see cref="HybridCache"/>, one per row for a <see cref="CacheBatch"/>). The cache only
    /// stores: the attention itself is the attention module's.</summary>
    IReadOnlyList<KeyValueRows> AppendKeyValue(int layer, Tensor k, Tensor v);

    /// <summary>Records that every row processed <paramref name="tokens"/> more positions.</summary>
    void Advance(int tokens);
}

/// <summary>The keys and values an attention layer attends to for rows <see cref="FirstRow"/> … <see cref="FirstRow"/> +
/// <see cref="Rows"/> − 1 of its batch, all at the same length.</summary>
/// <param name="Keys">Keys so far, <c>[rows, kvh, Length, hd]</c> (a view of <paramref name="KeyBuffer"/>).</param>
/// <param name="Values">Values so far, <c>[rows, kvh, Length, hd]</c>.</param>
/// <param name="KeyBuffer">The whole preallocated key buffer, <c>[rows, kvh, capacity, hd]</c> (contiguous; decode kernels read it directly).</param>
/// <param name="ValueBuffer">The whole preallocated value buffer.</param>
/// <param name="Length">Positions held, the new ones included.</param>
/// <param name="FirstRow">The first batch row these keys belong to.</param>
/// <param name="Rows">Rows covered.</param>
public readonly record struct KeyValueRows(Tensor Keys, Tensor Values, Tensor KeyBuffer, Tensor ValueBuffer, int Length, int FirstRow, int Rows);

/// <summary>
/// Independent single-sequence caches run as one batch: projections, Mamba layers and experts see one
/// <c>[B, …]</c> tensor, while each row attends over its own keys and values, so sequences of any lengths
/// (joined at any time) decode together without padding. Does not own the caches.
/// </summary>
public sealed class CacheBatch : IHybridCacheView
{
    private readonly IReadOnlyList<HybridCache> _caches;

    /// <summary>Wraps <paramref name="caches"/> (each holding one sequence, all of the same model).</summary>
    public CacheBatch(IReadOnlyList<HybridCache> caches)
    {
        ArgumentNullException.ThrowIfNull(caches);
        if (caches.Count == 0) throw new ArgumentException("At least one cache is needed.", nameof(caches));
        foreach (var c in caches)
            if (c.BatchSize != 1) throw new ArgumentException("Every cache of a CacheBatch must hold exactly one sequence.", nameof(caches));
        _caches = caches;
    }

    /// <inheritdoc />
    public int BatchSize => _caches.Count;

    /// <summary>The caches, in row order.</summary>
    public IReadOnlyList<HybridCache> Caches => _caches;

    /// <inheritdoc />
    public (Tensor Conv, Tensor Ssm) MambaStates(int layer)
    {
        if (_caches.Count == 1) return (_caches[0].ConvState(layer), _caches[0].SsmState(layer));
        return (torch.cat(_caches.Select(c => c.ConvState(layer)).ToArray(), 0), torch.cat(_caches.Select(c => c.SsmState(layer)).ToArray(), 0));
    }

    /// <inheritdoc />
    public void CommitMamba(int layer, Tensor conv, Tensor ssm)
    {
        if (_caches.Count == 1) return;
        for (int i = 0; i < _caches.Count; i++)
        {
            _caches[i].ConvState(layer).copy_(conv.narrow(0, i, 1));
            _caches[i].SsmState(layer).copy_(ssm.narrow(0, i, 1));
        }
    }

    /// <inheritdoc />
    public IReadOnlyList<KeyValueRows> AppendKeyValue(int layer, Tensor k, Tensor v)
    {
        if (_caches.Count == 1) return _caches[0].AppendKeyValue(layer, k, v);
        var rows = new KeyValueRows[_caches.Count];
        for (int i = 0; i < _caches.Count; i++)
            rows[i] = _caches[i].AppendKeyValue(layer, k.narrow(0, i, 1), v.narrow(0, i, 1))[0] with { FirstRow = i };
        return rows;
    }

    /// <inheritdoc />
    public void Advance(int tokens)
    {
        foreach (var c in _caches) c.Advance(tokens);
    }
}
