using Jamba.Inference.Modeling;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Jamba.Inference.Tests;

/// <summary>The MLP's fused <c>silu(gate) ⊙ up</c> against libtorch's two element-wise ops (same rounding points).</summary>
public sealed class SiluProductTests
{
    [Theory]
    [InlineData(3, 112, false)]
    [InlineData(512, 2816, false)] // split over the kernel threads
    [InlineData(3, 112, true)]
    [InlineData(512, 2816, true)]
    public void Equals_libtorchs_silu_times_up(int rows, int width, bool bf16)
    {
        var dtype = bf16 ? ScalarType.BFloat16 : ScalarType.Float32;
        using var scope = NewDisposeScope();
        torch.manual_seed(rows * width);
        var gate = (torch.randn(rows, width) * 4).to(dtype);
        var up = torch.randn(rows, width).to(dtype);
        gate[0, 0] = torch.tensor(-100f).to(dtype); // far into the flat tail
        gate[0, 1] = torch.tensor(60f).to(dtype);   // exp(−x) underflows
        if (!SiluProduct.Applies(gate, up)) return; // no AVX-512: libtorch runs it, nothing to compare
        var actual = SiluProduct.Run(gate, up).to(ScalarType.Float32);
        var expected = (nn.functional.silu(gate) * up).to(ScalarType.Float32);
        double worst = ((actual - expected).abs() / (expected.abs() + 1e-3)).max().item<float>();
        Assert.True(worst <= (bf16 ? 1.0 / 64 : 1e-5), $"largest relative difference {worst:E2}");
        double mismatched = (actual != expected).to(ScalarType.Float32).mean().item<float>();
        if (bf16) Assert.True(mismatched < 0.01, $"{mismatched:P1} of the bf16 values differ from libtorch's");
    }

    [Fact]
    public void Leaves_gradients_and_other_layouts_to_libtorch()
    {
        using var scope = NewDisposeScope();
        var a = torch.randn(4, 32);
        Assert.False(SiluProduct.Applies(a, torch.randn(4, 32, requires_grad: true)));
        Assert.False(SiluProduct.Applies(a, torch.randn(32, 4).t()));
        Assert.False(SiluProduct.Applies(a, torch.randn(4, 32).to(ScalarType.BFloat16)));
        Assert.False(SiluProduct.Applies(torch.randn(3, 5), torch.randn(3, 5)));
    }
}
