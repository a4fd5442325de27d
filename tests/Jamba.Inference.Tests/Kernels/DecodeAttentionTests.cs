using Jamba.Inference.Modeling;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Jamba.Inference.Tests;

/// <summary>The one-query CPU attention kernel against the blockwise tensor kernel (<see cref="AttentionKernels"/>) on
/// random heads: GQA groups, several context lengths (one key, within and across the tensor path's key blocks), batch 2,
/// fp32 and bf16, reading from a cache buffer larger than the context.</summary>
public sealed class DecodeAttentionTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(16, 4, 16, 1, 1, false)]
    [InlineData(16, 4, 64, 37, 1, false)]
    [InlineData(8, 8, 128, 600, 2, false)]
    [InlineData(16, 4, 64, 5000, 1, false)]
    [InlineData(16, 4, 64, 600, 2, true)]
    [InlineData(4, 1, 16, 4500, 1, true)]
    public void Equals_the_tensor_kernel(int heads, int kvHeads, int hd, int length, int batch, bool bf16)
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(7);
        var dtype = bf16 ? ScalarType.BFloat16 : ScalarType.Float32;
        int capacity = length + 256;
        var keys = torch.randn([batch, kvHeads, capacity, hd], generator: gen).to(dtype);
        var values = torch.randn([batch, kvHeads, capacity, hd], generator: gen).to(dtype);
        var q = torch.randn([batch, heads, 1, hd], generator: gen).Times(2).to(dtype);
        // The kernel is AVX-512 code: it applies exactly where the CPU has AVX-512F (an AVX2-only CPU decodes through the
        // tensor kernel, which the model tests cover).
        Assert.Equal(System.Runtime.Intrinsics.X86.Avx512F.IsSupported && Jamba.Inference.Kernels.CpuKernels.Enabled && DecodeKernels.Enabled, DecodeAttention.Applies(q, keys));
        if (!DecodeAttention.Applies(q, keys))
        {
            output.WriteLine("no AVX-512F here: the kernel does not apply");
            return;
        }
        var actual = DecodeAttention.Attend(q, keys, values, length).to(ScalarType.Float32);
        // reference: the tensor kernel in fp32 on the same (rounded) values
        var expected = AttentionKernels.Attend(q.to(ScalarType.Float32), keys.narrow(2, 0, length).to(ScalarType.Float32),
            values.narrow(2, 0, length).to(ScalarType.Float32), null);
        float worst = (actual - expected).abs().max().item<float>();
        output.WriteLine($"heads {heads}/{kvHeads} hd {hd} length {length} batch {batch} {dtype}: largest |Δ| {worst:E2}");
        Assert.True(worst <= (bf16 ? 1.6e-2f : 2e-5f), $"largest |Δ| {worst}");
    }
}
