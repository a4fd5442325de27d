using Jamba.Inference.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Modeling;

/// <summary>
/// Random initialisation of a <see cref="JambaForCausalLM"/> for training and for random-weight checkpoints
/// (benchmarks, tests): as HF's <c>_init_weights</c> plus Mamba's standard parameterisation.
/// </summary>
public static class JambaInitializer
{
    /// <summary>Fills every parameter of <paramref name="model"/> from a generator seeded with <paramref name="seed"/>.</summary>
    public static void Initialize(JambaForCausalLM model, long seed)
    {
        ArgumentNullException.ThrowIfNull(model);
        var config = model.Config;
        using var gen = new Generator((ulong)seed);
        using var noGrad = torch.no_grad();
        double std = config.InitializerRange;
        foreach (var (name, p) in model.named_parameters())
        {
            using var scope = NewDisposeScope();
            Tensor value;
            long[] shape = p.shape;
            if (name.EndsWith("layernorm.weight", StringComparison.Ordinal) || name.EndsWith("final_layernorm.weight", StringComparison.Ordinal))
                value = torch.ones(shape);
            else if (name.EndsWith(".A_log", StringComparison.Ordinal))
                value = torch.log(TorchScalars.Arange(1, shape[1] + 1, CPU).to(ScalarType.Float32)).unsqueeze(0).expand(shape).contiguous();
            else if (name.EndsWith(".D", StringComparison.Ordinal))
                value = torch.ones(shape);
            else if (name.EndsWith("dt_proj.bias", StringComparison.Ordinal))
            {
                // dt ~ logU(0.001, 0.1), bias = softplus⁻¹(dt)
                using var floor = 1e-4.ToScalar();
                var dt = torch.exp(torch.rand(shape, generator: gen).Times(Math.Log(0.1) - Math.Log(0.001)).Plus(Math.Log(0.001))).clamp_min(floor);
                value = dt.Plus(torch.log(-torch.expm1(-dt)));
            }
            else if (name.EndsWith("dt_proj.weight", StringComparison.Ordinal))
            {
                value = Uniform(shape, Math.Pow(config.MambaDtRank, -0.5), gen);
            }
            else if (name.EndsWith("conv1d.weight", StringComparison.Ordinal) || name.EndsWith("conv1d.bias", StringComparison.Ordinal))
            {
                value = Uniform(shape, 1.0 / Math.Sqrt(config.MambaDConv), gen);
            }
            else if (name.EndsWith(".bias", StringComparison.Ordinal))
                value = torch.zeros(shape);
            else
                value = torch.randn(shape, generator: gen).Times(std);
            p.copy_(value);
        }
    }

    /// <summary>U(−bound, bound).</summary>
    private static Tensor Uniform(long[] shape, double bound, Generator gen) =>
        torch.rand(shape, generator: gen).Times(2).Plus(-1).Times(bound);
}
