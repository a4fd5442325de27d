using Jamba.Inference.Kernels;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Jamba.Inference.Tests;

/// <summary>
/// The chunked selective scan of the device path (<see cref="SelectiveScan.RunChunked(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, int)"/>)
/// against the per-step reference formulation (<see cref="SelectiveScan.RunTensor"/>): lengths that are and are not
/// multiples of the chunk, shorter than one chunk, several spans, a batch with a carried-in state, bf16 inputs, and decays
/// so strong that a product of exponentials of positive numbers would overflow.
/// </summary>
public sealed class ChunkedSelectiveScanTests(ITestOutputHelper output)
{
    private static (Tensor X, Tensor Delta, Tensor A, Tensor B, Tensor C, Tensor D, Tensor State) Inputs(long batch, long d, long l, long n, int seed, double deltaScale = 1, double aScale = 1)
    {
        torch.manual_seed(seed);
        var x = torch.randn(batch, d, l);
        // Δ as the mixer makes it: a transposed view of a [B, L, D] softplus output.
        var delta = nn.functional.softplus(torch.randn(batch, l, d) * deltaScale).transpose(1, 2);
        var a = -torch.exp(torch.randn(d, n) * aScale);
        var b = torch.randn(batch, l, n);
        var c = torch.randn(batch, l, n);
        var dSkip = torch.randn(d);
        var state = torch.randn(batch, d, n) * 0.5;
        return (x, delta, a, b, c, dSkip, state);
    }

    public static TheoryData<long, long, int, long> Shapes => new()
    {
        // batch, length, chunk, span budget (elements of one working tensor; 0: the default)
        { 1, 1, 16, 0 },
        { 1, 15, 16, 0 },
        { 2, 16, 16, 0 },
        { 2, 17, 16, 0 },
        { 1, 100, 8, 0 },
        { 3, 257, 16, 0 },
        { 2, 300, 16, 2 * 64 * 16 * 40 },   // several spans of 32 positions and a short last one
        { 1, 129, 1, 0 },                   // chunks of one position: the carry alone
        { 1, 64, 64, 0 },                   // one chunk: the local scan alone
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void EqualsThePerStepScan(long batch, long length, int chunk, long span)
    {
        using var scope = NewDisposeScope();
        var (x, delta, a, b, c, d, state) = Inputs(batch, 64, length, 16, seed: (int)(batch * 1000 + length));
        var refState = state.clone();
        var reference = SelectiveScan.RunTensor(x, delta, a, b, c, d, refState);
        var chunkState = state.clone();
        var chunked = span > 0
            ? SelectiveScan.RunChunked(x, delta, a, b, c, d, chunkState, chunk, span)
            : SelectiveScan.RunChunked(x, delta, a, b, c, d, chunkState, chunk);
        Assert.Equal(reference.shape, chunked.shape);
        double dy = (reference - chunked).abs().max().item<float>(), dh = (refState - chunkState).abs().max().item<float>();
        double scale = reference.abs().max().item<float>();
        output.WriteLine($"B={batch} L={length} chunk={chunk}: max |Δy| {dy:E2} (max |y| {scale:F2}), max |Δstate| {dh:E2}");
        Assert.True(dy <= 1e-5 * Math.Max(1, scale), $"y differs by {dy}");
        Assert.True(dh <= 1e-5, $"state differs by {dh}");
    }

    [Fact]
    public void StrongDecaysStayFinite()
    {
        using var scope = NewDisposeScope();
        // Δ·A down to ≈ −e⁶·30 per step: the cumulative log-decay of a chunk reaches −10⁵; exp of its negative would overflow.
        var (x, delta, a, b, c, d, state) = Inputs(2, 32, 96, 16, seed: 7, deltaScale: 30, aScale: 2);
        var refState = state.clone();
        var reference = SelectiveScan.RunTensor(x, delta, a, b, c, d, refState);
        var chunkState = state.clone();
        var chunked = SelectiveScan.RunChunked(x, delta, a, b, c, d, chunkState, 32);
        Assert.True(chunked.isfinite().all().item<bool>() && chunkState.isfinite().all().item<bool>());
        Assert.True((reference - chunked).abs().max().item<float>() <= 1e-4f * Math.Max(1, reference.abs().max().item<float>()));
        Assert.True((refState - chunkState).abs().max().item<float>() <= 1e-4f);
    }

    [Fact]
    public void Bf16InputsGiveTheFp32Result()
    {
        using var scope = NewDisposeScope();
        var (x, delta, a, b, c, d, state) = Inputs(1, 48, 70, 16, seed: 3);
        var x16 = x.to(ScalarType.BFloat16);
        var delta16 = delta.to(ScalarType.BFloat16);
        var b16 = b.to(ScalarType.BFloat16);
        var c16 = c.to(ScalarType.BFloat16);
        var refState = state.clone();
        var reference = SelectiveScan.RunTensor(x16, delta16, a, b16, c16, d, refState);
        var chunkState = state.clone();
        var chunked = SelectiveScan.RunChunked(x16, delta16, a, b16, c16, d, chunkState);
        Assert.Equal(ScalarType.Float32, chunked.dtype);
        Assert.True((reference - chunked).abs().max().item<float>() <= 1e-4f * Math.Max(1, reference.abs().max().item<float>()));
    }

    [Fact]
    public void LeavesNoTensorsBehind()
    {
        var (x, delta, a, b, c, d, state) = Inputs(2, 16, 200, 16, seed: 11);
        long before = TensorCounts.Live();
        using (var y = SelectiveScan.RunChunked(x, delta, a, b, c, d, state, 16, 16 * 16 * 2 * 48)) { }
        Assert.Equal(before, TensorCounts.Live());
        foreach (var t in new[] { x, delta, a, b, c, d, state }) t.Dispose();
    }
}
