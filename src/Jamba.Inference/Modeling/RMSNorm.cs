using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Jamba.Inference.Modeling;

/// <summary>Root-mean-square layer norm, as HF's <c>JambaRMSNorm</c>: normalise in fp32, cast back, then scale.</summary>
public sealed class RMSNorm : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    /// <summary>The scale, <c>[hidden]</c>.</summary>
    public readonly Parameter weight;
#pragma warning restore IDE1006
    private readonly double _eps;

    /// <summary>ε added to the mean square.</summary>
    internal double Epsilon => _eps;

    /// <summary>Creates the norm over the last dimension of size <paramref name="size"/>.</summary>
    public RMSNorm(long size, double eps, ModelContext ctx) : base(nameof(RMSNorm))
    {
        weight = ctx.NewParameter(size);
        _eps = eps;
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        if (!weight.requires_grad && input.numel() <= SmallInputElements && input.device_type == DeviceType.CPU
            && input.dtype == weight.dtype && input.dtype is ScalarType.Float32 or ScalarType.BFloat16 && input.is_contiguous())
            return SmallCpu(input);
        using var scope = NewDisposeScope();
        var dtype = input.dtype;
        var x = input.to(ScalarType.Float32);
        var inverse = (x * x).mean([-1], keepdim: true).PlusInPlace(_eps).rsqrt_(); // x·x, not square(): see TorchScalars
        var normed = dtype == ScalarType.Float32 ? x * inverse : (x * inverse).to(dtype);
        // in place for inference; autograd needs the unscaled value when training
        return (weight.requires_grad ? normed * weight : normed.mul_(weight)).MoveToOuterDisposeScope();
    }

    /// <summary>Inputs up to this size (a decode step's few rows) are normalised by <see cref="SmallCpu"/>.</summary>
    private const long SmallInputElements = 1 << 16;

    /// <summary>
    /// The same computation in one pass over raw memory, for the small inputs of decoding, where the eight tensor ops above
    /// cost more in dispatch than in arithmetic. Rounding points match the tensor path: fp32 statistics, <c>x·rsqrt</c>
    /// rounded to the dtype, then the product with the weight rounded again.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private unsafe Tensor SmallCpu(Tensor input)
    {
        bool half = input.dtype == ScalarType.BFloat16;
        int width = (int)input.shape[^1];
        long rows = input.numel() / width;
        var output = torch.empty(input.shape, dtype: input.dtype);
        nint src = SelectiveScan.Address(input), dst = SelectiveScan.Address(output), w = SelectiveScan.Address(weight);
        for (long r = 0; r < rows; r++)
        {
            long o = r * width;
            float sum = 0f;
            for (int i = 0; i < width; i++)
            {
                float v = BFloat16Bits.Load(src, o + i, half);
                sum += v * v;
            }
            float inverse = 1f / MathF.Sqrt(sum / width + (float)_eps);
            for (int i = 0; i < width; i++)
            {
                float normed = BFloat16Bits.Load(src, o + i, half) * inverse;
                if (half) normed = BFloat16Bits.Round(normed);
                BFloat16Bits.Store(dst, o + i, normed * BFloat16Bits.Load(w, i, half), half);
            }
        }
        return output;
    }
}

/// <summary>The activation named by <c>hidden_act</c>.</summary>
public static class Activations
{
    /// <summary>Applies <paramref name="name"/> to <paramref name="x"/>.</summary>
    public static Tensor Apply(string name, Tensor x) => name switch
    {
        "silu" or "swish" => nn.functional.silu(x),
        "gelu" => nn.functional.gelu(x),
        "gelu_pytorch_tanh" or "gelu_new" => nn.functional.gelu(x, TorchSharp.Modules.GELU.Approximate.tanh),
        "relu" => nn.functional.relu(x),
        _ => throw new ArgumentException($"Unknown activation '{name}'.", nameof(name)),
    };
}
