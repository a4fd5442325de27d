using System.Diagnostics;
using System.Text;
using Jamba.Inference.Chat;
using Jamba.Inference.Engine;
using Jamba.Testing;
using Microsoft.Extensions.AI;
using Xunit;
using Xunit.Abstractions;

namespace Jamba.Inference.Tests.Chat;

/// <summary>
/// Time to first token per turn of a multi-turn conversation over documents: documents passed in <see cref="ChatOptions"/>
/// on every turn (the template puts them before the last user message, so each turn prefills everything again) against one
/// <see cref="DocumentSession"/> asked the whole conversation (the documents stay in a stable prefix; each turn prefills
/// only its new tokens). Measures only when <c>JAMBA_DOC_TURNS_BENCH</c> names a corpus size in tokens (e.g. 16000); the
/// corpus is the repository's own Markdown, the model <c>JAMBA_DOC_TURNS_MODEL</c> or the shipped one.
/// Run: <c>JAMBA_DOC_TURNS_BENCH=16000 dotnet test tests/Jamba.Inference.Tests -c Release --filter DocumentTurnsBenchmark --logger "console;verbosity=detailed"</c>.
/// </summary>
public sealed class DocumentTurnsBenchmark(ITestOutputHelper output)
{
    private static readonly string[] Questions = ["What does the engine schedule?", "Which rooms may use TorchSharp?", "How is the shipped model trained?"];

    [Fact]
    public async Task TimeToFirstTokenPerTurn()
    {
        if (!int.TryParse(Environment.GetEnvironmentVariable("JAMBA_DOC_TURNS_BENCH"), out int target) || target <= 0)
        {
            output.WriteLine("JAMBA_DOC_TURNS_BENCH is not set: nothing measured.");
            return;
        }
        string model = Environment.GetEnvironmentVariable("JAMBA_DOC_TURNS_MODEL") is { Length: > 0 } m ? m : Path.Combine(RepositoryPaths.Root, "models", "jamba-moby-tiny");
        var gen = new ChatOptions { Temperature = 0, MaxOutputTokens = 24 };

        // Each side in a client of its own, so the prefix cache of one never serves the other.
        using (var client = await JambaChatClient.LoadAsync(model, loadOptions: new ModelLoadOptions { Engine = new EngineOptions { PrefixCacheBytes = 0 } }))
        {
            var docs = Corpus(client, target, out int tokens);
            output.WriteLine($"{model}: {docs.Count} documents, {tokens} tokens");
            var conversation = new List<ChatMessage>();
            var options = gen.Clone().WithDocuments(docs);
            for (int i = 0; i < Questions.Length; i++)
            {
                conversation.Add(new ChatMessage(ChatRole.User, Questions[i]));
                var turn = await Turn(client.GetStreamingResponseAsync(conversation, options));
                output.WriteLine($"documents in ChatOptions, turn {i + 1}: time to first token {turn.Ttft:0.000} s, prompt {turn.Input} tokens, cached {turn.Cached}");
                conversation.Add(new ChatMessage(ChatRole.Assistant, turn.Text));
            }
        }
        using (var client = await JambaChatClient.LoadAsync(model))
        {
            var docs = Corpus(client, target, out _);
            var clock = Stopwatch.StartNew();
            using var session = await client.CreateDocumentSessionAsync(docs, null, gen);
            output.WriteLine($"DocumentSession prefill (once): {clock.Elapsed.TotalSeconds:0.000} s, {session.PrefixTokenCount} tokens");
            var conversation = new List<ChatMessage>();
            for (int i = 0; i < Questions.Length; i++)
            {
                conversation.Add(new ChatMessage(ChatRole.User, Questions[i]));
                var turn = await Turn(session.AskStreamingAsync(conversation, gen));
                output.WriteLine($"DocumentSession conversation, turn {i + 1}: time to first token {turn.Ttft:0.000} s, prompt {turn.Input} tokens, cached {turn.Cached}");
                Assert.True(turn.Cached >= session.PrefixTokenCount, $"turn {i + 1} reused {turn.Cached} tokens, less than the session's {session.PrefixTokenCount}");
                conversation.Add(new ChatMessage(ChatRole.Assistant, turn.Text));
            }
        }
    }

    private static List<JambaDocument> Corpus(JambaChatClient client, int target, out int total)
    {
        var tokenizer = client.ModelHandle!.Tokenizer!;
        string[] files = ["README.md", "docs/ARCHITECTURE.md", "docs/deploy.md", "CHANGELOG.md", "src/Jamba.Cli/README.md"];
        var docs = new List<JambaDocument>();
        total = 0;
        for (int round = 0; total < target; round++)
            foreach (var f in files)
            {
                if (total >= target) break;
                string text = File.ReadAllText(Path.Combine(RepositoryPaths.Root, f));
                int n = tokenizer.Encode(text).Count;
                if (total + n > target)
                {
                    text = text[..(int)(text.Length * (double)(target - total) / n)];
                    n = tokenizer.Encode(text).Count;
                }
                docs.Add(new JambaDocument(text, $"{f} ({round + 1})"));
                total += n;
            }
        return docs;
    }

    private static async Task<(double Ttft, long Cached, long Input, string Text)> Turn(IAsyncEnumerable<ChatResponseUpdate> stream)
    {
        var clock = Stopwatch.StartNew();
        double ttft = -1;
        long cached = 0, input = 0;
        var text = new StringBuilder();
        await foreach (var u in stream)
        {
            if (ttft < 0 && u.Contents.OfType<TextContent>().Any(t => t.Text.Length > 0)) ttft = clock.Elapsed.TotalSeconds;
            foreach (var c in u.Contents)
            {
                if (c is UsageContent usage) { cached = usage.Details.CachedInputTokenCount ?? 0; input = usage.Details.InputTokenCount ?? 0; }
                else if (c is TextContent t) text.Append(t.Text);
            }
        }
        return (ttft < 0 ? clock.Elapsed.TotalSeconds : ttft, cached, input, text.ToString());
    }
}
