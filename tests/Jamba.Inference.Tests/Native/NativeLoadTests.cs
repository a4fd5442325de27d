using Jamba.Inference.Native;
using TorchSharp;
using Xunit;

namespace Jamba.Inference.Tests;

public sealed class NativeLoadTests
{
    [Fact]
    public void TorchSharpRunsOnThisMachine()
    {
        TorchNativeLoader.EnsureInitialized();
        using var a = torch.ones(2, 3);
        using var b = torch.ones(3, 4);
        using var c = a.matmul(b);
        Assert.Equal(3f, c[1, 2].item<float>());
        // Either the default loader worked (diagnostics never set) or the patched copy was used.
        Assert.True(TorchNativeLoader.Diagnostics is null || TorchNativeLoader.Diagnostics.Contains("marked weak"), TorchNativeLoader.Diagnostics);
    }

    [Fact]
    public void PatcherMarksOnlyTheRequestedVersionWeak()
    {
        string lib = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        if (!OperatingSystem.IsLinux()) return; // the ELF patch concerns Linux only
        Assert.True(File.Exists(lib), lib);
        var image = File.ReadAllBytes(lib);
        var before = ElfVersionPatcher.ReadVersionNeeds(image);
        Assert.Contains(before, n => n.File == "libstdc++.so.6" && n.Version == "GLIBCXX_3.4.32" && !n.Weak);
        Assert.True(ElfVersionPatcher.MarkWeak(image, "libstdc++.so.6", "GLIBCXX_3.4.32"));
        var after = ElfVersionPatcher.ReadVersionNeeds(image);
        Assert.Equal(before.Count, after.Count);
        for (int i = 0; i < before.Count; i++)
            Assert.Equal(before[i].Version == "GLIBCXX_3.4.32" || before[i].Weak, after[i].Weak);
        Assert.False(ElfVersionPatcher.MarkWeak(image, "libstdc++.so.6", "GLIBCXX_9.9.9"));
    }

    [Fact]
    public void VersionDefinitionsOfTheSystemLibStdCxxAreRead()
    {
        var path = new[] { "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6" }.FirstOrDefault(File.Exists);
        if (!OperatingSystem.IsLinux()) return;
        Assert.NotNull(path);
        var defs = ElfVersionPatcher.ReadVersionDefinitions(File.ReadAllBytes(path!));
        Assert.Contains("GLIBCXX_3.4", defs);
        Assert.Contains("CXXABI_1.3", defs);
    }
}
