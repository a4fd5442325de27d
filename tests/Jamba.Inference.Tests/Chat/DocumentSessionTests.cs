using Jamba.Inference.Chat;
using Jamba.Inference.Engine;
using Jamba.Inference.Templates;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Xunit;

namespace Jamba.Inference.Tests.Chat;

/// <summary>One prefill, many questions: <see cref="DocumentSession"/> on the tiny checkpoint's real engine (greedy).</summary>
[Collection(ChatModelCollection.Name)]
public sealed class DocumentSessionTests(ChatModelFixture fixture)
{
    private const string System = "Answer from the documents.";

    private static readonly JambaDocument[] Docs =
    [
        new("The whale was white and the captain was obsessed with it for many years at sea.", "Moby", Id: "moby"),
        new("Jamba interleaves attention layers with Mamba layers and mixture-of-experts blocks.", "Jamba", Id: "jamba") { Fields = new Dictionary<string, object?> { ["year"] = 2024 } },
        new("A snapshot holds the prefilled state of a prefix so that later requests skip it.", "Snapshots", Id: "snap"),
    ];

    private static readonly string[] Questions = ["What colour was the whale?", "What does Jamba interleave?", "Why keep a snapshot?"];

    private static ChatOptions Greedy(int max = 8) => new() { Temperature = 0, MaxOutputTokens = max };

    /// <summary>A private registry, so that engine options (no automatic prefix cache, context limits) apply.</summary>
    private Task<JambaModelHandle> LoadAsync(EngineOptions? engine = null) =>
        new JambaModelRegistry().LoadAsync(fixture.Folder, new ModelLoadOptions { Engine = engine ?? new EngineOptions { PrefixCacheBytes = 0 } });

    private static async Task<string> PlainAnswer(JambaChatClient client, string question, ChatOptions? sessionOptions = null)
    {
        var options = (sessionOptions?.Clone() ?? new ChatOptions()).WithDocuments(Docs);
        options.Temperature = 0;
        options.MaxOutputTokens = 8;
        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.System, System), new ChatMessage(ChatRole.User, question)], options);
        return response.Text;
    }

    [Fact]
    public async Task AnswersFromTheSnapshotEqualAnswersFromTheFullPrompt()
    {
        await using var handle = await LoadAsync();
        using var client = new JambaChatClient(handle);
        var progress = new List<PrefillProgress>();
        using var session = await client.CreateDocumentSessionAsync(Docs, System, Greedy(), new SyncProgress(progress));
        Assert.True(session.PrefixTokenCount > 50);
        Assert.Equal(session.PrefixTokenCount, progress[^1].TokensDone);
        Assert.Equal(session.PrefixTokenCount, progress[^1].TokensTotal);
        Assert.True(session.Snapshot.SizeInBytes > 0);

        var before = handle.Engine.Metrics;
        var answers = new List<string>();
        foreach (var q in Questions)
        {
            var fromSession = await session.AskAsync(q);
            var usage = fromSession.Usage!;
            Assert.Equal(session.PrefixTokenCount, usage.CachedInputTokenCount);
            Assert.True(usage.InputTokenCount > session.PrefixTokenCount);
            Assert.Equal(true, fromSession.Messages[^1].AdditionalProperties?[DocumentSession.SnapshotReusedKey]);

            string plain = await PlainAnswer(client, q);
            Assert.Equal(plain, fromSession.Text);
            answers.Add(plain);
        }
        Assert.All(answers, a => Assert.NotEmpty(a)); // the comparison is not vacuous
        var after = handle.Engine.Metrics;
        Assert.Equal(Questions.Length * session.PrefixTokenCount, after.ReusedPrefixTokens - before.ReusedPrefixTokens);
        Assert.Equal(0, session.FallbackCount);
    }

    [Fact]
    public async Task ConcurrentQuestionsAndStreamingGiveTheSameAnswers()
    {
        await using var handle = await LoadAsync();
        using var client = new JambaChatClient(handle);
        using var session = await client.CreateDocumentSessionAsync(Docs, System, Greedy());
        var sequential = new List<string>();
        foreach (var q in Questions) sequential.Add((await session.AskAsync(q)).Text);

        var concurrent = await Task.WhenAll(Questions.Select(q => session.AskAsync(q)));
        Assert.Equal(sequential, concurrent.Select(r => r.Text));

        var streamed = new List<ChatResponseUpdate>();
        await foreach (var u in session.AskStreamingAsync(Questions[1])) streamed.Add(u);
        Assert.Equal(sequential[1], string.Concat(streamed.Select(u => u.Text)));
        Assert.Equal(session.PrefixTokenCount, streamed[^1].Contents.OfType<UsageContent>().Single().Details.CachedInputTokenCount);
    }

    [Fact]
    public async Task ASavedSessionReloadedInAFreshEngineContinuesTheSame()
    {
        string path = Path.Combine(Path.GetTempPath(), $"jamba-session-{Guid.NewGuid():N}.snap");
        try
        {
            string original;
            int prefix;
            await using (var handle = await LoadAsync())
            {
                using var client = new JambaChatClient(handle);
                using var session = await client.CreateDocumentSessionAsync(Docs, System, Greedy(12));
                original = (await session.AskAsync(Questions[0])).Text;
                prefix = session.PrefixTokenCount;
                session.Save(path);
            }

            var registry = new JambaModelRegistry();
            await using var fresh = await registry.LoadAsync(fixture.Folder, new ModelLoadOptions { Engine = new EngineOptions { PrefixCacheBytes = 0 } });
            using var freshClient = new JambaChatClient(fresh);
            using var loaded = await DocumentSession.LoadAsync(freshClient, path, Docs, System, Greedy(12));
            Assert.Equal(prefix, loaded.PrefixTokenCount);
            var before = fresh.Engine.Metrics;
            var answer = await loaded.AskAsync(Questions[0]);
            Assert.Equal(original, answer.Text);
            Assert.Equal(prefix, answer.Usage!.CachedInputTokenCount);
            // Only the question's tokens were prefilled in the fresh engine.
            Assert.Equal(answer.Usage.InputTokenCount - prefix, fresh.Engine.Metrics.PrefillTokens - before.PrefillTokens);

            // Other documents do not match the saved prefix.
            await Assert.ThrowsAsync<InvalidDataException>(() => DocumentSession.LoadAsync(freshClient, path, Docs.Take(2), System));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task TooLongPromptsAreRejectedBeforeAnyWork()
    {
        await using var handle = await LoadAsync(new EngineOptions { MaxContextTokens = 64, PrefixCacheBytes = 0 });
        using var client = new JambaChatClient(handle);
        var ex = await Assert.ThrowsAsync<ContextLengthExceededException>(() => client.CreateDocumentSessionAsync(Docs, System));
        Assert.Equal(64, ex.Limit);
        Assert.True(ex.PromptTokens > 64);
        await Assert.ThrowsAsync<ContextLengthExceededException>(() => client.GetResponseAsync([new ChatMessage(ChatRole.User, "Q")], new ChatOptions().WithDocuments(Docs)));
        var metrics = handle.Engine.Metrics;
        Assert.Equal(0, metrics.PrefillTokens);
        Assert.Equal(0, metrics.RequestsSubmitted);
    }

    [Fact]
    public async Task AQuestionThatDoesNotExtendThePrefixFallsBackToAPlainRequest()
    {
        // A template that renders the question's length before the question: the two sentinel questions agree on it,
        // a real question of another length does not, so the snapshot cannot be reused.
        var template = ChatTemplate.Parse(
            "{{ bos_token }}{% for d in documents %}{{ d.title }}: {{ d.text }}\n{% endfor %}" +
            "The question has {{ messages[-1].content|length }} characters and it follows after this rather long introduction sentence here:\n" +
            "{{ messages[-1].content }}\nAnswer:");
        await using var handle = await LoadAsync();
        var logger = new ListLogger();
        using var client = new JambaChatClient(handle, new JambaChatClientOptions { ChatTemplate = template }, logger);
        using var session = await client.CreateDocumentSessionAsync(Docs, null, Greedy());
        var answer = await session.AskAsync("How long is this question?");
        Assert.Equal(1, session.FallbackCount);
        Assert.Equal(false, answer.Messages[^1].AdditionalProperties?[DocumentSession.SnapshotReusedKey]);
        Assert.Contains(logger.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("plain request"));
        var plain = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "How long is this question?")], Greedy().WithDocuments(Docs));
        Assert.Equal(plain.Text, answer.Text);

        // A question of the sentinels' length reuses it.
        var reused = await session.AskAsync("Q?");
        Assert.Equal(true, reused.Messages[^1].AdditionalProperties?[DocumentSession.SnapshotReusedKey]);
    }

    [Fact]
    public async Task CitationModeAndJsonModeShapeThePrefix()
    {
        await using var handle = await LoadAsync();
        using var client = new JambaChatClient(handle);
        using var session = await client.CreateDocumentSessionAsync(Docs, System, Greedy().WithCitations().WithJsonMode());
        var prefix = handle.Tokenizer!.Decode(session.Snapshot.Tokens.ToArray());
        Assert.Contains("## Citation Mode", prefix);
        Assert.Contains("## JSON Mode", prefix);
        Assert.Contains("## Document ID: 2", prefix);
        Assert.Contains("Year: 2024", prefix);
        var answer = await session.AskAsync(Questions[2]);
        Assert.Equal(await PlainAnswer(client, Questions[2], new ChatOptions().WithCitations().WithJsonMode()), answer.Text);
        session.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => session.AskAsync("Q"));
    }

    /// <summary>Records progress synchronously (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SyncProgress(List<PrefillProgress> list) : IProgress<PrefillProgress>
    {
        public void Report(PrefillProgress value)
        {
            lock (list) list.Add(value);
        }
    }
}

/// <summary>A multi-turn conversation over documents pays only for its new tokens each turn.</summary>
[Collection(ChatModelCollection.Name)]
public sealed class DocumentConversationTests(ChatModelFixture fixture)
{
    private static readonly JambaDocument[] Docs =
    [
        new("The whale was white and the captain was obsessed with it for many years at sea, far from any shore.", "Moby", Id: "moby"),
        new("Jamba interleaves attention layers with Mamba layers and mixture-of-experts blocks, which keeps its cache small.", "Jamba", Id: "jamba"),
    ];

    [Fact]
    public async Task EachTurnReusesTheDocumentsAndThePreviousTurns()
    {
        // Default engine options: the automatic prefix cache keeps each turn's prompt for the next one.
        await using var handle = await new JambaModelRegistry().LoadAsync(fixture.Folder, new ModelLoadOptions { Engine = new EngineOptions { PrefixCacheMinTokens = 16 } });
        using var client = new JambaChatClient(handle);
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 6 };
        using var session = await client.CreateDocumentSessionAsync(Docs, "Answer from the documents.", options);
        var conversation = new List<ChatMessage>();
        string[] questions = ["What colour was the whale?", "And the captain?", "What does Jamba interleave?"];
        int previousPrompt = 0;
        for (int turn = 0; turn < questions.Length; turn++)
        {
            conversation.Add(new ChatMessage(ChatRole.User, questions[turn]));
            var response = await session.AskAsync(conversation);
            var usage = response.Usage!;
            if (turn == 0)
            {
                // One turn renders exactly as a single question.
                Assert.Equal(session.FormatConversation([new ChatMessage(ChatRole.User, questions[0])]).Text, session.FormatConversation(conversation).Text);
                Assert.Equal(session.PrefixTokenCount, usage.CachedInputTokenCount);
            }
            else
            {
                // Everything up to the previous turn's prompt came from the cache: only the answer and the question were new.
                Assert.True(usage.CachedInputTokenCount >= previousPrompt, $"turn {turn}: {usage.CachedInputTokenCount} cached of {usage.InputTokenCount}, previous prompt {previousPrompt}");
                Assert.True(usage.InputTokenCount - usage.CachedInputTokenCount < 40, $"turn {turn}: {usage.InputTokenCount - usage.CachedInputTokenCount} new tokens");
            }
            Assert.StartsWith(session.FormatConversation([new ChatMessage(ChatRole.User, "x")]).Text[..20], session.FormatConversation(conversation).Text);
            previousPrompt = (int)usage.InputTokenCount!;
            conversation.Add(new ChatMessage(ChatRole.Assistant, response.Text));
        }
        Assert.Equal(0, session.FallbackCount);
        await Assert.ThrowsAsync<ArgumentException>(() => session.AskAsync([new ChatMessage(ChatRole.Assistant, "no question")]));
    }
}
