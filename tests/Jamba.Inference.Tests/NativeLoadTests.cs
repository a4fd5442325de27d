using Jamba.Inference.Native;
using TorchSharp;
using Xunit;

namespace Jamba.Inference.Tests;

public sealed class NativeLoadTests
{
    [Fact]
    public void TorchSharpRunsAMatmulOnCpu()
    {
        TorchNativeLoader.EnsureInitialized();
        try { torch.zeros(1).Dispose(); } catch (Exception e) { throw new Exception("DIAG=" + TorchNativeLoader.Diagnostics, e); }
        using var a = torch.ones(2, 3);
        using var b = torch.ones(3, 4);
        using var c = a.matmul(b);
        Assert.Equal(3f, c[1, 2].item<float>());
        Assert.NotNull(TorchNativeLoader.Diagnostics);
    }
}
