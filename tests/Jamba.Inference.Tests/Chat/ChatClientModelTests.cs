using Jamba.Inference.Chat;
using Jamba.Inference.Engine;
using Microsoft.Extensions.AI;
using Xunit;

namespace Jamba.Inference.Tests.Chat;

/// <summary>The MEAI <see cref="JambaChatClient"/> on the tiny checkpoint's real engine.</summary>
[Collection(ChatModelCollection.Name)]
public sealed class ChatClientModelTests(ChatModelFixture fixture)
{
    [Fact]
    public async Task StreamOverTheEngineHasIdsUsageAndMatchesNonStreaming()
    {
        await using var handle = await JambaModelHandle.LoadAsync(fixture.Folder);
        using var client = new JambaChatClient(handle);
        var messages = new List<ChatMessage> { new(ChatRole.System, "Be brief."), new(ChatRole.User, "Hello") };
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 10, StopSequences = ["zzz"] };

        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync(messages, options)) updates.Add(u);
        Assert.All(updates, u => Assert.True(u.ResponseId is not null && u.MessageId is not null && u.CreatedAt is not null && u.ModelId == handle.ModelId));
        Assert.NotNull(updates[^1].FinishReason);
        var usage = updates[^1].Contents.OfType<UsageContent>().Single().Details;
        Assert.InRange(usage.OutputTokenCount!.Value, 1, 10);
        Assert.Same(handle, client.GetService<JambaModelHandle>());

        var response = await client.GetResponseAsync(messages, options);
        Assert.Equal(string.Concat(updates.Select(u => u.Text)), response.Text);
        Assert.Equal(updates[^1].FinishReason, response.FinishReason);
        Assert.Equal(usage.TotalTokenCount, response.Usage!.TotalTokenCount);
        Assert.Equal(2, messages.Count);
        Assert.Equal(["zzz"], options.StopSequences);
    }

    [Fact]
    public async Task CancellingTheTokenStopsTheEngineWithinOneStep()
    {
        using var client = await JambaChatClient.LoadAsync(fixture.Folder);
        var engine = client.ModelHandle!.Engine;
        using var cts = new CancellationTokenSource();
        var before = engine.Metrics;
        int seen = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "Go on")], new ChatOptions { MaxOutputTokens = 5000, Temperature = 1, Seed = 9 }, cts.Token))
            {
                seen++;
                cts.Cancel();
            }
        });
        Assert.Equal(1, seen);
        for (int i = 0; i < 200 && !engine.Metrics.Idle; i++) await Task.Delay(25);
        var after = engine.Metrics;
        Assert.True(after.RequestsCancelled > before.RequestsCancelled, before + " / " + after);
        Assert.True(after.DecodedTokens - before.DecodedTokens < 40);
    }

    [Fact]
    public async Task LazyClientLoadsOnFirstUseAndReleasesOnDispose()
    {
        var client = JambaChatClient.Create(fixture.Folder, new JambaChatClientOptions { ModelId = "tiny" });
        Assert.Null(client.ModelHandle);
        Assert.Equal("tiny", client.Metadata.DefaultModelId);
        var response = await client.GetResponseAsync("Hi", new ChatOptions { MaxOutputTokens = 2, Temperature = 0 });
        Assert.Equal("tiny", response.ModelId);
        Assert.NotNull(client.ModelHandle);
        client.Dispose();
        Assert.Equal(0, JambaModelRegistry.Shared.LoadedCount);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => client.GetResponseAsync("Hi"));
    }
}
