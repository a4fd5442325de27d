using System.Diagnostics;
using System.Text.RegularExpressions;
using Xunit;

namespace Jamba.Inference.Tests;

/// <summary>The cheap checks of <c>scripts/gpu-check.sh</c> (its heavy <c>prepare</c> and the GPU run never run in CI) and of
/// <see cref="TestDevice"/>, the switch it sets for the device-path tests.</summary>
public sealed partial class GpuCheckTests
{
    private static string Script => Path.Combine(RepositoryPaths.Root, "scripts", "gpu-check.sh");

    [Theory]
    [InlineData(null, "cpu")]
    [InlineData("", "cpu")]
    [InlineData("  ", "cpu")]
    [InlineData("cpu", "cpu")]
    [InlineData("CUDA", "cuda")]
    [InlineData(" cuda:1 ", "cuda:1")]
    public void TestDeviceParsesWhatModelOptionsAccepts(string? value, string expected) =>
        Assert.Equal(expected, TestDevice.Parse(value));

    [Theory]
    [InlineData("gpu")]
    [InlineData("cuda:-1")]
    [InlineData("cuda:x")]
    public void TestDeviceNamesTheVariableAndTheExpectedValues(string value)
    {
        var ex = Assert.Throws<ArgumentException>(() => TestDevice.Parse(value));
        Assert.Contains(TestDevice.Variable, ex.Message);
        Assert.Contains("'cuda:N'", ex.Message);
        Assert.Contains($"'{value}'", ex.Message);
    }

    [Fact]
    public void TheScriptParsesAndAnswersUsageErrors()
    {
        if (!File.Exists("/bin/bash")) return; // the script is for Linux machines
        Assert.Equal(0, Run("/bin/bash", "-n", Script).ExitCode);
        var help = Run("/bin/bash", Script, "--help");
        Assert.Equal(0, help.ExitCode);
        Assert.Contains("gpu-check.sh prepare", help.Output);
        Assert.Contains("gpu-check.sh run ARCHIVE", help.Output);
        var noArchive = Run("/bin/bash", Script, "run");
        Assert.NotEqual(0, noArchive.ExitCode);
        Assert.Contains("run needs the archive", noArchive.Output);
        var missing = Run("/bin/bash", Script, "run", Path.Combine(Path.GetTempPath(), $"no-such-{Guid.NewGuid():N}.tar.xz"));
        Assert.NotEqual(0, missing.ExitCode);
        Assert.Contains("no archive at", missing.Output);
        if (Which("shellcheck") is { } shellcheck) Assert.Equal(0, Run(shellcheck, Script).ExitCode);
    }

    [Fact]
    public void TheScriptPinsTorchSharpsSourcesAndItsFolderIsIgnored()
    {
        string text = File.ReadAllText(Script);
        Assert.Matches(CommitPin(), text);
        Assert.Contains("readonly TORCHSHARP_VERSION=0.107.0", text); // Directory.Packages.props' TorchSharp
        Assert.Contains("<PackageVersion Include=\"TorchSharp\" Version=\"0.107.0\" />", File.ReadAllText(Path.Combine(RepositoryPaths.Root, "Directory.Packages.props")));
        Assert.Contains(".gpu-check/", File.ReadAllLines(Path.Combine(RepositoryPaths.Root, ".gitignore")));
    }

    [GeneratedRegex("readonly TORCHSHARP_COMMIT_DEFAULT=[0-9a-f]{40}\n")]
    private static partial Regex CommitPin();

    private static string? Which(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    private static (int ExitCode, string Output) Run(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) start.ArgumentList.Add(a);
        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(60_000), $"{file} {string.Join(' ', args)} did not finish in 60 s");
        return (p.ExitCode, stdout.Result + stderr.Result);
    }
}
