using Jamba.Testing;
using Xunit;

namespace Jamba.Cli.Tests;

/// <summary><c>jamba train --synthetic-chat N --write-text FILE</c> (the chat recipe's data step) and the chat-training options' errors.</summary>
public sealed class TrainChatTests
{
    private static string Template => Path.Combine(RepositoryPaths.ShippedModel, "chat_template.jinja");
    private static string Tokenizer => Path.Combine(RepositoryPaths.ShippedModel, "tokenizer.model");

    [Fact]
    public void WriteTextRendersTheConversationsThroughTheTemplateAndIsSeeded()
    {
        string dir = Directory.CreateTempSubdirectory("jamba-chat-text-").FullName;
        try
        {
            string a = Path.Combine(dir, "a.txt"), b = Path.Combine(dir, "b.txt"), c = Path.Combine(dir, "c.txt");
            foreach (var (file, seed, drills) in new[] { (a, "7", "0.5"), (b, "7", "0.5"), (c, "8", "0.5") })
            {
                var r = CliRunner.Run("train", "--synthetic-chat", "40", "--seed", seed, "--copy-drills", drills, "--chat-template", Template, "--tokenizer", Tokenizer, "--write-text", file);
                Assert.True(r.ExitCode == 0, r.ToString());
                // 40 training conversations and max(10, 5 %) held out.
                Assert.Contains("wrote 50 rendered conversations", r.Error, StringComparison.Ordinal);
            }
            string text = File.ReadAllText(a);
            Assert.Equal(text, File.ReadAllText(b));
            Assert.NotEqual(text, File.ReadAllText(c));
            Assert.Equal(50, text.Split("<|startoftext|>", StringSplitOptions.RemoveEmptyEntries).Length);
            Assert.Contains("<|bom|><|assistant|>", text, StringComparison.Ordinal);
            Assert.False(Directory.Exists(Path.Combine(dir, "resume")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("--copy-drills", "1.5", "--copy-drills must be between 0 and 1")]
    [InlineData("--prompt-loss-weight", "2", "PromptLossWeight must be between 0 and 1")]
    [InlineData("--device", "gpu0", "Device must be 'cpu', 'cuda' or 'cuda:N'")]
    public void InvalidChatTrainingOptionsNameTheOption(string option, string value, string message)
    {
        string dir = Directory.CreateTempSubdirectory("jamba-chat-bad-").FullName;
        try
        {
            var r = CliRunner.Run("train", "--synthetic-chat", "20", "--chat-template", Template, "--tokenizer", Tokenizer,
                "--config", Path.Combine(RepositoryPaths.ShippedModel, "training", "config.json"), "--out", Path.Combine(dir, "out"), "--steps", "1", option, value);
            Assert.NotEqual(0, r.ExitCode);
            Assert.Contains(message, r.Error + r.Out, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
