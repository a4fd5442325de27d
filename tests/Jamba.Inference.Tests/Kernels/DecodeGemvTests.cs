using Jamba.Inference.Modeling;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Jamba.Inference.Tests;

/// <summary>The decode GEMV kernel against libtorch's fp32 product of the same values (rounded once to bf16 for bf16).</summary>
public sealed class DecodeGemvTests
{
    [Theory]
    [InlineData(7, 32, 1, false, true)]      // fewer outputs than a block of four
    [InlineData(96, 2048, 1, false, true)]   // x_proj-like
    [InlineData(4099, 1024, 3, true, true)]  // a remainder after blocks of four, several rows, bias, threads
    [InlineData(1030, 512, 8, true, true)]   // the most rows the kernel takes
    [InlineData(36, 64, 2, false, true)]     // two input rows share each widened weight vector
    [InlineData(260, 1024, 5, true, true)]   // four rows, then one
    [InlineData(260, 1024, 6, false, true)]  // four, then two
    [InlineData(260, 1024, 7, true, true)]   // four, then three (the fourth slot idle)
    [InlineData(7, 16, 1, false, false)]     // fp32
    [InlineData(4099, 1024, 3, true, false)]
    [InlineData(1030, 512, 8, true, false)]
    public void Equals_libtorchs_fp32_product(int outFeatures, int inFeatures, int rows, bool withBias, bool bf16)
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(42);
        var dtype = bf16 ? ScalarType.BFloat16 : ScalarType.Float32;
        var w = (torch.randn([outFeatures, inFeatures], generator: gen).Times(0.05)).to(dtype);
        var x = torch.randn([1, rows, inFeatures], generator: gen).to(dtype);
        var b = withBias ? torch.randn([outFeatures], generator: gen).to(dtype) : null;
        // AVX-512 code: it applies exactly where 512-bit vectors are accelerated (an AVX2-only CPU runs libtorch's linear).
        Assert.Equal(System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated && CpuKernels.Enabled && DecodeGemv.Enabled, DecodeGemv.Applies(x, w));
        if (!DecodeGemv.Applies(x, w)) return;
        var actual = DecodeGemv.Run(x, w, b);
        Assert.Equal(dtype, actual.dtype);
        Assert.Equal(new long[] { 1, rows, outFeatures }, actual.shape);
        var exact = nn.functional.linear(x.to(ScalarType.Float32), w.to(ScalarType.Float32), b?.to(ScalarType.Float32));
        var a = actual.to(ScalarType.Float32).data<float>().ToArray();
        var e = exact.data<float>().ToArray();
        for (int i = 0; i < a.Length; i++)
        {
            // bf16: one rounding of the result (half an ulp: 2⁻⁹ relative); both: fp32 summation-order noise
            float tolerance = (bf16 ? Math.Abs(e[i]) / 256 : 0f) + 1e-4f;
            Assert.True(Math.Abs(a[i] - e[i]) <= tolerance, $"element {i}: {a[i]} vs {e[i]}");
        }
    }

    [Theory]
    [InlineData(2816, 1024, 1, true)]
    [InlineData(100, 64, 3, true)]
    [InlineData(2816, 1024, 2, false)]
    [InlineData(36, 32, 1, false)]
    public void Gated_pair_equals_silu_gate_times_up(int outFeatures, int inFeatures, int rows, bool bf16)
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(3);
        var dtype = bf16 ? ScalarType.BFloat16 : ScalarType.Float32;
        var wg = torch.randn([outFeatures, inFeatures], generator: gen).Times(0.05).to(dtype);
        var wu = torch.randn([outFeatures, inFeatures], generator: gen).Times(0.05).to(dtype);
        var x = torch.randn([1, rows, inFeatures], generator: gen).to(dtype);
        var actual = DecodeGemv.RunGated(x, wg, wu).to(ScalarType.Float32).data<float>().ToArray();
        var xf = x.to(ScalarType.Float32);
        var expected = (nn.functional.silu(nn.functional.linear(xf, wg.to(ScalarType.Float32))) * nn.functional.linear(xf, wu.to(ScalarType.Float32)))
            .data<float>().ToArray();
        for (int i = 0; i < actual.Length; i++)
        {
            float tolerance = (bf16 ? Math.Abs(expected[i]) / 256 : 0f) + 1e-4f;
            Assert.True(Math.Abs(actual[i] - expected[i]) <= tolerance, $"element {i}: {actual[i]} vs {expected[i]}");
        }
    }

    [Fact]
    public void Leaves_other_products_to_libtorch()
    {
        using var scope = NewDisposeScope();
        var w = torch.zeros([64, 64], dtype: ScalarType.BFloat16);
        Assert.False(DecodeGemv.Applies(torch.zeros([1, 9, 64], dtype: ScalarType.BFloat16), w));                 // a GEMM: too many rows
        Assert.False(DecodeGemv.Applies(torch.zeros([1, 1, 48], dtype: ScalarType.BFloat16), torch.zeros([64, 48], dtype: ScalarType.BFloat16))); // in % 32
        Assert.False(DecodeGemv.Applies(torch.zeros([1, 1, 64]), torch.zeros([64, 64], dtype: ScalarType.BFloat16)));  // mixed dtypes
        Assert.False(DecodeGemv.Applies(torch.zeros([1, 1, 40]), torch.zeros([64, 40])));                           // fp32, in % 16
        Assert.False(DecodeGemv.Applies(torch.zeros([1, 1, 64], dtype: ScalarType.BFloat16), torch.zeros([64, 64], dtype: ScalarType.BFloat16).requires_grad_())); // training
    }
}
