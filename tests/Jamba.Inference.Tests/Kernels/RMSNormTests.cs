using Jamba.Inference.Modeling;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Jamba.Inference.Tests;

/// <summary>The CPU one-pass RMSNorm (vector rows of 16, scalar otherwise; rows split over the kernel threads when large)
/// against HF's formula in tensor ops: fp32 statistics, <c>x·rsqrt(mean(x²)+ε)</c> rounded to the dtype, times the weight.</summary>
public sealed class RMSNormTests
{
    [Theory]
    [InlineData(1, 1, 1024, false)]   // a decode step
    [InlineData(1, 512, 1024, false)] // a prefill chunk: rows split over threads
    [InlineData(3, 5, 24, false)]     // width not a multiple of 16: the scalar path
    [InlineData(1, 1, 1024, true)]
    [InlineData(1, 512, 1024, true)]
    [InlineData(2, 7, 24, true)]
    public void Equals_the_reference_formula(int batch, int length, int width, bool bf16)
    {
        var dtype = bf16 ? ScalarType.BFloat16 : ScalarType.Float32;
        using var scope = NewDisposeScope();
        torch.manual_seed(width + length);
        var norm = new RMSNorm(width, 1e-6, new ModelContext(CPU, dtype, trainable: false));
        using (torch.no_grad()) norm.weight.copy_(torch.rand(width) + 0.5);
        var x = (torch.randn(batch, length, width) * 3).to(dtype);

        var actual = norm.forward(x).to(ScalarType.Float32);
        var xf = x.to(ScalarType.Float32);
        var expected = ((xf * (xf * xf).mean([-1], keepdim: true).add(1e-6).rsqrt()).to(dtype) * norm.weight).to(ScalarType.Float32);

        Assert.Equal(expected.shape, actual.shape);
        // fp32: summation order only; bf16: at most one rounding step of the normalised value or the product.
        double tolerance = bf16 ? 1.0 / 64 : 1e-5;
        double worst = ((actual - expected).abs() / (expected.abs() + 1e-3)).max().item<float>();
        Assert.True(worst <= tolerance, $"largest relative difference {worst:E2}");
        double mismatched = (actual != expected).to(ScalarType.Float32).mean().item<float>();
        if (bf16) Assert.True(mismatched < 0.01, $"{mismatched:P1} of the bf16 values differ from the reference");
        norm.Dispose();
    }
}
