using Jamba.Inference.Modeling;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Jamba.Inference.Tests;

/// <summary>The decode GEMV kernel against an fp32 product of the same bf16 values, rounded once to bf16.</summary>
public sealed class Bf16GemvTests
{
    [Theory]
    [InlineData(7, 32, 1, false)]      // fewer outputs than a block of four
    [InlineData(96, 2048, 1, false)]   // x_proj-like
    [InlineData(4099, 1024, 3, true)]  // a remainder after blocks of four, several rows, bias
    [InlineData(1030, 512, 8, true)]   // the most rows the kernel takes
    public void Equals_the_fp32_product_rounded_to_bf16(int outFeatures, int inFeatures, int rows, bool withBias)
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(42);
        var w = (torch.randn([outFeatures, inFeatures], generator: gen).Times(0.05)).to(ScalarType.BFloat16);
        var x = torch.randn([1, rows, inFeatures], generator: gen).to(ScalarType.BFloat16);
        var b = withBias ? torch.randn([outFeatures], generator: gen).to(ScalarType.BFloat16) : null;
        Assert.True(Bf16Gemv.Applies(x, w));
        var actual = Bf16Gemv.Run(x, w, b);
        Assert.Equal(new long[] { 1, rows, outFeatures }, actual.shape);
        var exact = nn.functional.linear(x.to(ScalarType.Float32), w.to(ScalarType.Float32), b?.to(ScalarType.Float32));
        var a = actual.to(ScalarType.Float32).data<float>().ToArray();
        var e = exact.data<float>().ToArray();
        for (int i = 0; i < a.Length; i++)
        {
            // one bf16 rounding of the result (half an ulp: 2⁻⁹ relative) plus fp32 summation-order noise
            float tolerance = Math.Abs(e[i]) * (1f / 256) + 1e-4f;
            Assert.True(Math.Abs(a[i] - e[i]) <= tolerance, $"element {i}: {a[i]} vs {e[i]}");
        }
    }

    [Fact]
    public void Leaves_other_products_to_libtorch()
    {
        using var scope = NewDisposeScope();
        var w = torch.zeros([64, 64], dtype: ScalarType.BFloat16);
        Assert.False(Bf16Gemv.Applies(torch.zeros([1, 9, 64], dtype: ScalarType.BFloat16), w));                 // a GEMM: too many rows
        Assert.False(Bf16Gemv.Applies(torch.zeros([1, 1, 48], dtype: ScalarType.BFloat16), torch.zeros([64, 48], dtype: ScalarType.BFloat16))); // in % 32
        Assert.False(Bf16Gemv.Applies(torch.zeros([1, 1, 64]), torch.zeros([64, 64])));                           // fp32
        Assert.False(Bf16Gemv.Applies(torch.zeros([1, 1, 64], dtype: ScalarType.BFloat16), torch.zeros([64, 64], dtype: ScalarType.BFloat16).requires_grad_())); // training
    }
}
