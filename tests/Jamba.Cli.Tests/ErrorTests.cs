using Xunit;

namespace Jamba.Cli.Tests;

/// <summary>Bad arguments: exit code 2 and one line on stderr. Missing or broken checkpoints: exit code 1 and the core's message, no stack trace.</summary>
public sealed class ErrorTests
{
    private static void AssertOneLineError(CliResult r, int code, string? contains = null)
    {
        Assert.True(r.ExitCode == code, r.ToString());
        var lines = r.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, r.ToString());
        Assert.StartsWith("error: ", lines[0]);
        Assert.DoesNotContain("   at ", r.Error);
        Assert.Equal("", r.Out);
        if (contains is not null) Assert.Contains(contains, lines[0], StringComparison.OrdinalIgnoreCase);
    }

    public static TheoryData<string[], string> UsageErrors()
    {
        string m = FixturePaths.AnyModelFixture();
        return new TheoryData<string[], string>
        {
            { ["nope"], "nope" },
            { ["generate", "--model", m, "--prompt-ids", "1", "--bogus"], "bogus" },
            { ["generate", "--model", m, "--prompt-ids", "1", "--max-new-tokens", "abc"], "abc" },
            { ["generate", "--model", m, "--prompt-ids", "1", "--max-new-tokens", "0"], "--max-new-tokens" },
            { ["generate", "--model", m, "--prompt-ids", "1", "--top-p", "2"], "--top-p" },
            { ["generate", "--model", m, "--prompt-ids", "1", "--max-new-tokens"], "missing its value" },
            { ["generate", "--model", m, "--prompt-ids", "1", "--temperature", "-1"], "--temperature" },
            { ["generate", "--model", m, "--prompt-ids", "1", "--min-p", "1.5"], "--min-p" },
            { ["generate", "--model", m, "--prompt-ids", "1", "--top-k", "-3"], "--top-k" },
            { ["generate", "--model", m, "--prompt-ids", "1,x"], "--prompt-ids" },
            { ["generate", "--model", m, "--prompt-ids", "1", "--prompt", "hi"], "exactly one" },
            { ["generate", "--model", m], "exactly one" },
            { ["generate", "--model", m, "--prompt-ids", "1", "--chat"], "--chat" },
            { ["generate", "--model", m, "--prompt-ids", "99999999"], "vocabulary" },
            { ["generate", "--model", m, "--prompt-ids", "1", "--device", "gpu"], "--device" },
            { ["generate", "--model", m, "--prompt-ids", "1", "--dtype", "f8"], "--dtype" },
            { ["generate", "--model", m, "--prompt-ids", "1", "--threads", "0"], "--threads" },
            { ["info", "--model", m, "--context", "-1"], "--context" },
            { ["info", "--model", m, "--preset", "bench"], "not both" },
            { ["info", "--preset", "huge"], "huge" },
            { ["tokenize", "--model", m], "--text" },
            { ["init", "--preset", "bench"], "--out" },
            { ["init", "--out", "x"], "exactly one" },
            { ["init", "--preset", "huge", "--out", "x"], "huge" },
            { ["init", "--preset", "bench", "--out", "x", "--dtype", "auto"], "--dtype" },
            { ["bench", "--model", m, "--streams", "0"], "--streams" },
            { ["bench", "--model", m, "--prompt-tokens", "a,b"], "--prompt-tokens" },
            { ["bench", "--model", m, "--runs", "0"], "--runs" },
        };
    }

    [Theory]
    [MemberData(nameof(UsageErrors))]
    public void Bad_arguments_exit_2_with_one_line(string[] args, string mention) =>
        AssertOneLineError(CliRunner.Run(args), 2, mention);

    [Fact]
    public void Missing_checkpoint_folder_exits_1_with_the_core_message()
    {
        string missing = Path.Combine(Path.GetTempPath(), "jamba-no-such-checkpoint");
        AssertOneLineError(CliRunner.Run("generate", "--model", missing, "--prompt-ids", "1"), 1, "config.json");
        AssertOneLineError(CliRunner.Run("info", "--model", missing), 1, "config.json");
        AssertOneLineError(CliRunner.Run("tokenize", "--model", missing, "--text", "hi"), 1, missing);
    }

    [Fact]
    public void Broken_config_exits_1_naming_the_field()
    {
        using var dir = new TempDir();
        File.WriteAllText(Path.Combine(dir.Path, "config.json"), """{"model_type":"jamba","hidden_size":"wide"}""");
        AssertOneLineError(CliRunner.Run("info", "--model", dir.Path), 1, "hidden_size");
        AssertOneLineError(CliRunner.Run("generate", "--model", dir.Path, "--prompt-ids", "1"), 1, "hidden_size");
        File.WriteAllText(Path.Combine(dir.Path, "config.json"), "{ not json");
        AssertOneLineError(CliRunner.Run("info", "--model", dir.Path), 1, "JSON");
    }

    [Fact]
    public void Missing_or_truncated_weights_exit_1_with_the_checkpoint_message()
    {
        using var dir = new TempDir();
        string fixture = FixturePaths.AnyModelFixture();
        File.Copy(Path.Combine(fixture, "config.json"), Path.Combine(dir.Path, "config.json"));
        var noWeights = CliRunner.Run("generate", "--model", dir.Path, "--prompt-ids", "1");
        AssertOneLineError(noWeights, 1, "safetensors");

        var weights = Directory.GetFiles(fixture, "*.safetensors").Order().First();
        var bytes = File.ReadAllBytes(weights);
        File.WriteAllBytes(Path.Combine(dir.Path, "model.safetensors"), bytes[..(bytes.Length / 2)]);
        AssertOneLineError(CliRunner.Run("generate", "--model", dir.Path, "--prompt-ids", "1"), 1);
    }

    [Fact]
    public void Text_prompt_or_tokenize_without_tokenizer_files_exit_1()
    {
        string m = FixturePaths.AnyModelFixture();
        AssertOneLineError(CliRunner.Run("generate", "--model", m, "--prompt", "hello"), 1, "--prompt-ids");
        AssertOneLineError(CliRunner.Run("tokenize", "--model", m, "--text", "hello"), 1, "tokenizer");
        AssertOneLineError(CliRunner.RunWithInput("hi\n", "chat", "--model", m), 1, "tokenizer");
    }

    [Fact]
    public void Cuda_on_the_cpu_build_exits_1()
    {
        if (TorchSharp.torch.cuda.is_available()) return;
        AssertOneLineError(CliRunner.Run("generate", "--model", FixturePaths.AnyModelFixture(), "--prompt-ids", "1", "--device", "cuda"), 1, "cuda");
    }

    [Fact]
    public void Default_model_comes_from_JAMBA_MODEL_and_a_missing_one_is_one_line()
    {
        string? before = Environment.GetEnvironmentVariable("JAMBA_MODEL");
        try
        {
            Environment.SetEnvironmentVariable("JAMBA_MODEL", FixturePaths.AnyModelFixture());
            var ok = CliRunner.Run("info", "--json");
            Assert.True(ok.ExitCode == 0, ok.ToString());
            Assert.Contains(Path.GetFileName(FixturePaths.AnyModelFixture()), ok.Out);

            Environment.SetEnvironmentVariable("JAMBA_MODEL", null);
            var shipped = Infrastructure.ModelLocator.DefaultCandidates();
            Assert.Contains(shipped, c => c.EndsWith(Path.Combine("models", "jamba-moby-tiny"), StringComparison.Ordinal));
            if (!shipped.Any(Directory.Exists))
                AssertOneLineError(CliRunner.Run("info"), 1, "JAMBA_MODEL");
        }
        finally
        {
            Environment.SetEnvironmentVariable("JAMBA_MODEL", before);
        }
    }

    [Fact]
    public void Help_and_version_exit_0()
    {
        var help = CliRunner.Run("--help");
        Assert.Equal(0, help.ExitCode);
        foreach (var command in new[] { "generate", "chat", "info", "tokenize", "init", "bench" })
            Assert.Contains(command, help.Out);
        var generateHelp = CliRunner.Run("generate", "--help");
        Assert.Equal(0, generateHelp.ExitCode);
        Assert.Contains("--prompt-ids", generateHelp.Out);
        Assert.Contains("--ignore-eos", generateHelp.Out);
        Assert.Equal(0, CliRunner.Run("--version").ExitCode);
    }
}
