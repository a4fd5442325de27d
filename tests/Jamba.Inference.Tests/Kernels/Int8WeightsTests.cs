using System.Diagnostics;
using Jamba.Inference.Kernels;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Jamba.Inference.Tests;

/// <summary>int8 weights: quantization, dequantization and the decode kernel against libtorch's fp32 product of the
/// dequantized weights (the kernel's only other error is the int16 rounding of x: ≤ 2⁻¹⁵ of max|x| per element).</summary>
public sealed class Int8WeightsTests(ITestOutputHelper output)
{
    private static Int8Weight Quantized(Tensor w)
    {
        var q = new Int8Weight(torch.empty(w.shape, dtype: ScalarType.Int8), torch.empty([w.shape[0]], dtype: ScalarType.Float32));
        Int8Weight.Quantize(w, q.Data, q.Scale);
        return q;
    }

    [Fact]
    public void Quantize_is_symmetric_per_row_and_round_trips_within_half_a_step()
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(5);
        var w = torch.randn([37, 64], generator: gen);
        w[3] = torch.zeros(64); // an all-zero row: scale 0, data 0
        var q = Quantized(w);
        var scale = q.Scale.data<float>().ToArray();
        var data = q.Data.data<sbyte>().ToArray();
        var wf = w.data<float>().ToArray();
        for (int r = 0; r < 37; r++)
        {
            float max = 0;
            for (int k = 0; k < 64; k++) max = Math.Max(max, Math.Abs(wf[r * 64 + k]));
            Assert.Equal(max / 127f, scale[r], 6);
            Assert.Contains(data.Skip(r * 64).Take(64), v => r == 3 ? v == 0 : Math.Abs((int)v) == 127);
            for (int k = 0; k < 64; k++)
                Assert.True(Math.Abs(data[r * 64 + k] * scale[r] - wf[r * 64 + k]) <= scale[r] / 2 + 1e-7f, $"[{r},{k}]");
        }
        var back = q.Dequantize(ScalarType.Float32).data<float>().ToArray();
        for (int i = 0; i < back.Length; i++) Assert.Equal(data[i] * scale[i / 64], back[i], 6);
        Assert.Equal(back, q.Dequantize(ScalarType.Float32).data<float>().ToArray()); // deterministic
        var viaTorch = (q.Data.to(ScalarType.Float32) * q.Scale.unsqueeze(1)).to(ScalarType.BFloat16).to(ScalarType.Float32).data<float>().ToArray();
        Assert.Equal(viaTorch, q.Dequantize(ScalarType.BFloat16).to(ScalarType.Float32).data<float>().ToArray());
    }

    [Fact]
    public void Quantize_refuses_non_finite_weights()
    {
        using var scope = NewDisposeScope();
        var w = torch.ones([4, 32]);
        w[2, 5] = torch.tensor(float.NaN);
        var e = Assert.Throws<ArgumentException>(() => Quantized(w));
        Assert.Contains("row 2", e.Message);
    }

    [Theory]
    [InlineData(7, 32, 1, false, true)]
    [InlineData(96, 2048, 1, false, true)]
    [InlineData(4099, 1024, 3, true, true)]
    [InlineData(1030, 512, 8, true, true)]
    [InlineData(520, 256, 64, true, true)]    // the most rows the kernel takes (a 64-sequence decode batch)
    [InlineData(260, 8192, 2, false, true)]   // several K-blocks of int32 accumulation
    [InlineData(36, 64, 5, true, false)]
    [InlineData(4099, 1024, 1, false, false)]
    public void Kernel_equals_libtorch_on_the_dequantized_weight(int outFeatures, int inFeatures, int rows, bool withBias, bool bf16)
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(42);
        var dtype = bf16 ? ScalarType.BFloat16 : ScalarType.Float32;
        var q = Quantized(torch.randn([outFeatures, inFeatures], generator: gen).Times(0.05));
        var x = torch.randn([1, rows, inFeatures], generator: gen).to(dtype);
        var b = withBias ? torch.randn([outFeatures], generator: gen).to(dtype) : null;
        Assert.True(Int8Gemv.Applies(x, q));
        var actual = Int8Gemv.Run(x, q, b);
        Assert.Equal(dtype, actual.dtype);
        Assert.Equal(new long[] { 1, rows, outFeatures }, actual.shape);
        var xf = x.to(ScalarType.Float32);
        var exact = nn.functional.linear(xf, q.Dequantize(ScalarType.Float32), b?.to(ScalarType.Float32)).data<float>().ToArray();
        var a = actual.to(ScalarType.Float32).data<float>().ToArray();
        var absW = q.Dequantize(ScalarType.Float32).abs().sum(1).data<float>().ToArray(); // Σ|w| per output
        var maxX = xf.abs().amax([2]).view(-1).data<float>().ToArray();
        for (int i = 0; i < a.Length; i++)
        {
            int r = i / outFeatures, n = i % outFeatures;
            // x's int16 rounding (half a step of max|x|/32767 per element, times Σ|w|), one bf16 rounding, fp32 noise
            float tolerance = absW[n] * maxX[r] / 32767f / 2 + (bf16 ? Math.Abs(exact[i]) / 256 : 0f) + 1e-4f;
            Assert.True(Math.Abs(a[i] - exact[i]) <= tolerance, $"element {i}: {a[i]} vs {exact[i]} (±{tolerance})");
        }
        // The general entry point agrees: the kernel for decode rows, the dequantized GEMM for prefill rows.
        var big = torch.randn([1, 80, inFeatures], generator: gen).to(dtype);
        Assert.False(Int8Gemv.Applies(big, q));
        var gemm = Int8Gemv.Linear(big, q, b).to(ScalarType.Float32);
        var reference = nn.functional.linear(big.to(ScalarType.Float32), q.Dequantize(ScalarType.Float32), b?.to(ScalarType.Float32));
        // bf16: the dequantized weight and the activations are bf16-rounded (2⁻⁹ relative each) before libtorch's GEMM.
        float worst = (gemm - reference).abs().max().item<float>(), scale = reference.abs().max().item<float>();
        Assert.True(worst <= (bf16 ? 0.02f * scale + 0.02f : 1e-3f), $"dequantized GEMM: max |Δ| {worst} at max |y| {scale}");
    }

    [Fact]
    public void Zero_and_non_finite_inputs()
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(1);
        var q = Quantized(torch.randn([8, 32], generator: gen));
        Assert.Equal(0f, Int8Gemv.Run(torch.zeros([1, 32]), q, null).abs().max().item<float>());
        var x = torch.ones([1, 32]);
        x[0, 3] = torch.tensor(float.PositiveInfinity);
        Assert.True(Int8Gemv.Run(x, q, null).isnan().all().item<bool>());
    }

    /// <summary>Prints the kernel's read rate beside the bf16 GEMV's on the same shape (no assertion on time).</summary>
    [Fact]
    public void Read_rate_beside_the_bf16_kernel()
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(9);
        foreach (var (n, k) in new[] { (2816, 1024), (1024, 2816), (8192, 2048) })
        {
            var wf = torch.randn([n, k], generator: gen).Times(0.05);
            var wb = wf.to(ScalarType.BFloat16);
            var q = Quantized(wf);
            var x = torch.randn([1, 1, k], generator: gen).to(ScalarType.BFloat16);
            double Time(Func<Tensor> f)
            {
                for (int i = 0; i < 3; i++) f().Dispose();
                var clock = Stopwatch.StartNew();
                int reps = 30;
                for (int i = 0; i < reps; i++) f().Dispose();
                return clock.Elapsed.TotalMicroseconds / reps;
            }
            double tb = Time(() => DecodeGemv.Run(x, wb, null)), tq = Time(() => Int8Gemv.Run(x, q, null));
            output.WriteLine($"[{n}, {k}]: bf16 {tb:0} µs ({n * (double)k * 2 / tb / 1e3:0.0} GB/s), int8 {tq:0} µs ({n * (double)k / tq / 1e3:0.0} GB/s)");
        }
    }
}
