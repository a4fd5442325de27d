using Xunit;

namespace Jamba.Cli.Tests;

public sealed class ChatTests : IClassFixture<TextModelFixture>
{
    private readonly TextModelFixture _text;

    public ChatTests(TextModelFixture text) => _text = text;

    [Fact]
    public void Scripted_conversation_with_reset_and_exit()
    {
        string script = "Hello there\nAnd again\n/reset\nFresh start\n/exit\nnever read\n";
        var r = CliRunner.RunWithInput(script, "chat", "--model", _text.Folder, "--max-new-tokens", "5", "--temperature", "0", "--ignore-eos", "--stats");
        Assert.True(r.ExitCode == 0, r.ToString());
        // Three replies, each ended by a newline; one statistics line per reply and the reset notice on stderr.
        Assert.Equal(3, r.Error.Split('\n').Count(l => l.Contains("finish: length")));
        Assert.Contains("(conversation reset)", r.Error);
        Assert.EndsWith(Environment.NewLine, r.Out);
        // The second turn re-renders the whole conversation: its prompt is longer than the first's, and the
        // first turn after /reset has the same length as a first turn of the same size would.
        var prompts = r.Error.Split('\n').Where(l => l.Contains("prompt tokens")).Select(l => int.Parse(l[1..l.IndexOf(' ')])).ToArray();
        Assert.True(prompts[1] > prompts[0], string.Join(",", prompts));
        Assert.True(prompts[2] < prompts[1], string.Join(",", prompts));
    }

    [Fact]
    public void End_of_input_ends_the_chat()
    {
        var r = CliRunner.RunWithInput("Hi\n", "chat", "--model", _text.Folder, "--max-new-tokens", "3", "--temperature", "0");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.EndsWith(Environment.NewLine, r.Out);
    }
}
