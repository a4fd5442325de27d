using Jamba.Inference.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Caching;

/// <summary>
/// The per-sequence state of a Jamba forward pass, for a batch of sequences that advance together:
/// preallocated key/value buffers for the attention layers (grown in blocks, never concatenated per
/// step) and, for the Mamba layers, the convolution window (the last <c>d_conv − 1</c> inputs) and the
/// SSM state (fp32). Owns its tensors; dispose it when the sequences are done.
/// </summary>
public sealed class HybridCache : IHybridCacheView, IDisposable
{
    /// <summary>Tokens added to the K/V capacity whenever it runs out.</summary>
    public const int DefaultBlockTokens = 256;

    private readonly Tensor?[] _keys;
    private readonly Tensor?[] _values;
    private readonly Tensor?[] _conv;
    private readonly Tensor?[] _ssm;
    private readonly int _blockTokens;
    private bool _disposed;

    /// <summary>Creates an empty cache for <paramref name="batchSize"/> sequences.</summary>
    public HybridCache(JambaConfig config, int batchSize, ScalarType dtype, Device device, int initialCapacity = 0, int blockTokens = DefaultBlockTokens)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        ArgumentOutOfRangeException.ThrowIfNegative(initialCapacity);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockTokens);
        Config = config;
        BatchSize = batchSize;
        DType = dtype;
        Device = device;
        _blockTokens = blockTokens;
        int n = config.NumHiddenLayers;
        _keys = new Tensor?[n];
        _values = new Tensor?[n];
        _conv = new Tensor?[n];
        _ssm = new Tensor?[n];
        for (int i = 0; i < n; i++)
        {
            if (config.MixerKind(i) == JambaMixerKind.Attention)
            {
                if (initialCapacity > 0)
                {
                    _keys[i] = torch.zeros([batchSize, config.NumKeyValueHeads, initialCapacity, config.HeadDim], dtype: dtype, device: device).DetachFromDisposeScope();
                    _values[i] = torch.zeros([batchSize, config.NumKeyValueHeads, initialCapacity, config.HeadDim], dtype: dtype, device: device).DetachFromDisposeScope();
                }
            }
            else
            {
                _conv[i] = torch.zeros([batchSize, config.MambaDInner, config.MambaDConv - 1], dtype: dtype, device: device).DetachFromDisposeScope();
                _ssm[i] = torch.zeros([batchSize, config.MambaDInner, config.MambaDState], dtype: ScalarType.Float32, device: device).DetachFromDisposeScope();
            }
        }
        Capacity = initialCapacity;
    }

    /// <summary>The model configuration this cache is shaped for.</summary>
    public JambaConfig Config { get; }
    /// <summary>Sequences in the batch.</summary>
    public int BatchSize { get; }
    /// <summary>Dtype of K/V and the conv window (the SSM state is always fp32).</summary>
    public ScalarType DType { get; }
    /// <summary>Device of every tensor.</summary>
    public Device Device { get; }
    /// <summary>Positions already processed (including left padding).</summary>
    public int Length { get; private set; }
    /// <summary>Positions the K/V buffers can hold before they grow.</summary>
    public int Capacity { get; private set; }

    /// <summary>Bytes of state for <see cref="Length"/> positions:
    /// <c>B · (2 · attn layers · kv heads · head dim · tokens · elt + Mamba layers · (d_inner · (d_conv−1) · elt + d_inner · d_state · 4))</c>.</summary>
    public long SizeInBytes => BytesFor(Config, Length, ElementSize(DType)) * BatchSize;

    /// <summary>Bytes actually allocated (K/V at <see cref="Capacity"/>).</summary>
    public long AllocatedBytes => BytesFor(Config, Capacity, ElementSize(DType)) * BatchSize;

    /// <summary>The cache-size formula for one sequence of <paramref name="tokens"/> positions.</summary>
    public static long BytesFor(JambaConfig config, long tokens, int elementSize)
    {
        long kv = 2L * config.NumAttentionLayers * config.NumKeyValueHeads * config.HeadDim * tokens * elementSize;
        long mamba = (long)config.NumMambaLayers * ((long)config.MambaDInner * (config.MambaDConv - 1) * elementSize + (long)config.MambaDInner * config.MambaDState * 4);
        return kv + mamba;
    }

    /// <summary>Bytes per element of <paramref name="dtype"/>.</summary>
    public static int ElementSize(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => 4,
        ScalarType.Float64 => 8,
        _ => 2,
    };

    /// <inheritdoc />
    public IReadOnlyList<KeyValueRows> AppendKeyValue(int layer, Tensor k, Tensor v)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int add = (int)k.shape[2];
        int needed = Length + add;
        EnsureCapacity(needed);
        var keys = _keys[layer]!;
        var values = _values[layer]!;
        keys.narrow(2, Length, add).copy_(k);
        values.narrow(2, Length, add).copy_(v);
        return [new KeyValueRows(keys.narrow(2, 0, needed), values.narrow(2, 0, needed), keys, values, needed, 0, BatchSize)];
    }

    /// <summary>The conv window of Mamba layer <paramref name="layer"/>, <c>[B, d_inner, d_conv−1]</c>.</summary>
    internal Tensor ConvState(int layer) => _conv[layer] ?? throw new InvalidOperationException($"Layer {layer} is not a Mamba layer.");

    /// <summary>The SSM state of Mamba layer <paramref name="layer"/>, <c>[B, d_inner, d_state]</c> fp32.</summary>
    internal Tensor SsmState(int layer) => _ssm[layer] ?? throw new InvalidOperationException($"Layer {layer} is not a Mamba layer.");

    /// <inheritdoc />
    public void Advance(int tokens) => Length += tokens;

    /// <inheritdoc />
    public (Tensor Conv, Tensor Ssm) MambaStates(int layer) => (ConvState(layer), SsmState(layer));

    /// <inheritdoc />
    public void CommitMamba(int layer, Tensor conv, Tensor ssm)
    {
        if (!ReferenceEquals(conv, _conv[layer])) ConvState(layer).copy_(conv);
        if (!ReferenceEquals(ssm, _ssm[layer])) SsmState(layer).copy_(ssm);
    }

    /// <summary>Grows every K/V buffer to hold at least <paramref name="tokens"/> positions (rounded up to whole blocks).</summary>
    public void EnsureCapacity(int tokens)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (tokens <= Capacity) return;
        int newCapacity = (tokens + _blockTokens - 1) / _blockTokens * _blockTokens;
        for (int i = 0; i < _keys.Length; i++)
        {
            if (Config.MixerKind(i) != JambaMixerKind.Attention) continue;
            _keys[i] = Grow(_keys[i], newCapacity);
            _values[i] = Grow(_values[i], newCapacity);
        }
        Capacity = newCapacity;
    }

    private Tensor Grow(Tensor? old, int capacity)
    {
        var fresh = torch.zeros([BatchSize, Config.NumKeyValueHeads, capacity, Config.HeadDim], dtype: DType, device: Device);
        if (old is not null)
        {
            if (Length > 0) fresh.narrow(2, 0, Length).copy_(old.narrow(2, 0, Length));
            old.Dispose();
        }
        return fresh.DetachFromDisposeScope();
    }

    /// <summary>An independent copy of this cache (K/V up to <see cref="Length"/>, conv windows and SSM states), with room
    /// for <paramref name="extraCapacity"/> more positions. The constant-size Mamba state makes this cheap.</summary>
    public HybridCache Clone(int extraCapacity = 0)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var copy = new HybridCache(Config, BatchSize, DType, Device, 0, _blockTokens);
        copy.EnsureCapacity(Math.Max(1, Length + extraCapacity));
        using var noGrad = torch.no_grad();
        for (int i = 0; i < _keys.Length; i++)
        {
            if (_keys[i] is { } k && Length > 0)
            {
                copy._keys[i]!.narrow(2, 0, Length).copy_(k.narrow(2, 0, Length));
                copy._values[i]!.narrow(2, 0, Length).copy_(_values[i]!.narrow(2, 0, Length));
            }
            if (_conv[i] is { } c)
            {
                copy._conv[i]!.copy_(c);
                copy._ssm[i]!.copy_(_ssm[i]!);
            }
        }
        copy.Length = Length;
        return copy;
    }

    /// <summary>The state tensors in a fixed order (name, tensor view of the used part), for serialisation.</summary>
    internal IEnumerable<(string Name, Tensor Value)> StateTensors()
    {
        for (int i = 0; i < _keys.Length; i++)
        {
            if (_keys[i] is { } k)
            {
                yield return ($"layers.{i}.keys", k.narrow(2, 0, Length));
                yield return ($"layers.{i}.values", _values[i]!.narrow(2, 0, Length));
            }
            else if (Config.MixerKind(i) == JambaMixerKind.Attention)
            {
                yield return ($"layers.{i}.keys", torch.zeros([BatchSize, Config.NumKeyValueHeads, 0, Config.HeadDim], dtype: DType, device: Device));
                yield return ($"layers.{i}.values", torch.zeros([BatchSize, Config.NumKeyValueHeads, 0, Config.HeadDim], dtype: DType, device: Device));
            }
            if (_conv[i] is { } c)
            {
                yield return ($"layers.{i}.conv", c);
                yield return ($"layers.{i}.ssm", _ssm[i]!);
            }
        }
    }

    /// <summary>Restores state written by <see cref="StateTensors"/> into an empty cache for <paramref name="length"/> positions.</summary>
    internal void Restore(int length, Func<string, long[], ScalarType, Tensor> read)
    {
        EnsureCapacity(Math.Max(1, length));
        using var noGrad = torch.no_grad();
        for (int i = 0; i < _keys.Length; i++)
        {
            if (Config.MixerKind(i) == JambaMixerKind.Attention)
            {
                long[] shape = [BatchSize, Config.NumKeyValueHeads, length, Config.HeadDim];
                using (var k = read($"layers.{i}.keys", shape, DType)) _keys[i]!.narrow(2, 0, length).copy_(k);
                using (var v = read($"layers.{i}.values", shape, DType)) _values[i]!.narrow(2, 0, length).copy_(v);
            }
            else
            {
                using (var c = read($"layers.{i}.conv", _conv[i]!.shape, DType)) _conv[i]!.copy_(c);
                using (var h = read($"layers.{i}.ssm", _ssm[i]!.shape, ScalarType.Float32)) _ssm[i]!.copy_(h);
            }
        }
        Length = length;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var arr in new[] { _keys, _values, _conv, _ssm })
            for (int i = 0; i < arr.Length; i++)
            {
                arr[i]?.Dispose();
                arr[i] = null;
            }
    }
}
