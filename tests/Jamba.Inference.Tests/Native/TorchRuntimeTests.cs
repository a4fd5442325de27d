using Jamba.Inference.Native;
using Xunit;

namespace Jamba.Inference.Tests;

/// <summary>A missing TorchSharp backend is explained by naming the package to add (the end-to-end check, an app without
/// a backend, runs in .ci/readme-check.sh).</summary>
public sealed class TorchRuntimeTests
{
    [Fact]
    public void AMissingBackendNamesThePackagesToAdd()
    {
        var noBackend = new TypeInitializationException("TorchSharp.torch", new NotSupportedException(
            "This application or script uses TorchSharp but doesn't contain a reference to libtorch-cpu-linux-x64, Version=2.10.0.0."));
        var message = TorchRuntime.Explain(noBackend);
        Assert.NotNull(message);
        Assert.Contains("TorchSharp-cpu", message);
        Assert.Contains("TorchSharp-cuda-linux", message);
        Assert.Null(TorchRuntime.Explain(new InvalidOperationException("unrelated")));
        TorchRuntime.EnsureAvailable(); // this test project has the CPU backend
    }
}
