using System.Text.RegularExpressions;
using Jamba.Cli;
using Jamba.Cli.Infrastructure;
using Xunit;

namespace Jamba.Cli.Tests;

/// <summary><c>jamba serve</c>: flags, and a real server on a free port until cancelled.</summary>
public sealed class ServeTests(TextModelFixture fx) : IClassFixture<TextModelFixture>
{
    [Theory]
    [InlineData("--port", "70000", "--port")]
    [InlineData("--max-concurrent", "0", "--max-concurrent")]
    [InlineData("--max-body-bytes", "10", "--max-body-bytes")]
    public void BadFlagsAreUsageErrors(string flag, string value, string named)
    {
        var result = CliRunner.Run("serve", "--model", fx.Folder, flag, value);
        Assert.Equal(ExitCodes.Usage, result.ExitCode);
        Assert.Contains(named, result.Error);
    }

    [Fact]
    public async Task ServesUntilCancelled()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var run = JambaApp.RunAsync(["serve", "--model", fx.Folder, "--port", "0", "--dtype", "f32", "--api-key", "k", "--served-model-name", "moby"], CliIO.Capture(output, error), cts.Token);
        string log = "";
        while (!log.Contains("ready.", StringComparison.Ordinal) && !run.IsCompleted)
        {
            await Task.Delay(50);
            lock (error) log = error.ToString();
        }
        Assert.False(run.IsCompleted, log);
        var address = Regex.Match(log, @"on (http://[^ ]+/) ").Groups[1].Value;
        using var http = new HttpClient { BaseAddress = new Uri(address) };
        Assert.Equal(200, (int)(await http.GetAsync("/health")).StatusCode);
        Assert.Equal(401, (int)(await http.GetAsync("/v1/models")).StatusCode);
        http.DefaultRequestHeaders.Authorization = new("Bearer", "k");
        Assert.Contains("\"moby\"", await http.GetStringAsync("/v1/models"));
        var chat = await http.PostAsync("/v1/chat/completions", new StringContent("""{"messages":[{"role":"user","content":"Call me Ishmael."}],"max_tokens":3}""", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(200, (int)chat.StatusCode);
        cts.Cancel();
        Assert.Equal(ExitCodes.Success, await run);
        Assert.DoesNotContain("Call me", error.ToString()); // no prompt text in the log
    }
}
