using TorchSharp;
using TorchSharp.Modules;
using Jamba.Inference.Kernels;
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
        if (RmsNormKernel.Applies(input, weight))
            return RmsNormKernel.Run(input, weight, _eps);
        using var scope = NewDisposeScope();
        var dtype = input.dtype;
        var x = input.to(ScalarType.Float32);
        var inverse = (x * x).mean([-1], keepdim: true).PlusInPlace(_eps).rsqrt_(); // x·x, not square(): see TorchScalars
        var normed = dtype == ScalarType.Float32 ? x * inverse : (x * inverse).to(dtype);
        // in place for inference; autograd needs the unscaled value when training
        return (weight.requires_grad ? normed * weight : normed.mul_(weight)).MoveToOuterDisposeScope();
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
