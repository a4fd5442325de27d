using System.Text;
using Jamba.Inference.Chat;
using Jamba.Inference.Engine;
using Jamba.SemanticKernel.Tests.Fixtures;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;
using Microsoft.SemanticKernel.Services;
using Microsoft.SemanticKernel.TextGeneration;
using Xunit;

namespace Jamba.SemanticKernel.Tests;

/// <summary>A real <see cref="Kernel"/> over the tiny random checkpoint (real tokenizer, real Jamba 1.7 template).</summary>
[Collection(ChatModelCollection.Name)]
public sealed class KernelModelTests(ChatModelFixture fixture)
{
    private const string Prompt = "Tell me about the license terms.";

    private Kernel BuildKernel(string? serviceId = null)
    {
        var builder = Kernel.CreateBuilder();
        builder.AddJambaChatCompletion(fixture.Folder, serviceId);
        return builder.Build();
    }

    private static UsageDetails UsageOf(ChatMessageContent message) => (UsageDetails)message.Metadata!["Usage"]!;

    [Fact]
    public async Task InvokePromptStreamingAndNonStreamingAgreeWhenGreedy()
    {
        var kernel = BuildKernel();
        try
        {
            var settings = new JambaPromptExecutionSettings { Temperature = 0, MaxTokens = 24 };
            var result = await kernel.InvokePromptAsync(Prompt, new KernelArguments(settings));
            var streamed = new StringBuilder();
            await foreach (var update in kernel.InvokePromptStreamingAsync(Prompt, new KernelArguments(settings))) streamed.Append(update);
            string text = result.ToString();
            Assert.False(string.IsNullOrEmpty(text));
            Assert.Equal(text, streamed.ToString());
            var message = result.GetValue<ChatMessageContent>()!;
            Assert.Equal(Path.GetFileName(fixture.Folder), message.ModelId);
            Assert.InRange(UsageOf(message).OutputTokenCount!.Value, 1, 24);

            // Same as the engine run directly on the rendered prompt (greedy is deterministic).
            var service = (JambaChatCompletionService)kernel.GetRequiredService<IChatCompletionService>();
            var handle = service.ChatClient.ModelHandle!;
            var formatter = service.ChatClient.GetService<JambaChatFormatter>()!;
            var rendered = formatter.Format([new ChatMessage(ChatRole.User, Prompt)]).Text;
            var tokens = handle.Tokenizer!.Encode(rendered, addSpecialTokens: false);
            Assert.Equal(1, tokens.Count(t => t == handle.Tokenizer.BosTokenId)); // BOS from the template only
            Assert.Equal(tokens.Count, UsageOf(message).InputTokenCount);
            var options = service.ChatClient.CreateGenerationOptions(settings.ToChatOptions(null));
            options.StopTokenIds.Add(handle.Tokenizer.TokenToId("<|eom|>")!.Value);
            var direct = await handle.Engine.GenerateTextAsync(new GenerationRequest(tokens, options));
            Assert.DoesNotContain("<tool_calls>", direct.Text); // (the random model writes no markup for this prompt)
            Assert.Equal(direct.Text.Trim(), text.Trim());
        }
        finally
        {
            (kernel.Services as IDisposable)?.Dispose();
        }
    }

    [Fact]
    public async Task MaxTokensLimitsUsage()
    {
        var kernel = BuildKernel();
        try
        {
            var chat = kernel.GetRequiredService<IChatCompletionService>();
            foreach (int max in new[] { 1, 3, 6 })
            {
                var message = await chat.GetChatMessageContentAsync(Prompt, new JambaPromptExecutionSettings { Temperature = 0, MaxTokens = max }, kernel);
                Assert.InRange(UsageOf(message).OutputTokenCount!.Value, 1, max);
            }

            // Through the IChatClient the finish reason says why it stopped.
            var client = ((JambaChatCompletionService)chat).ChatClient;
            var response = await client.GetResponseAsync(Prompt, new ChatOptions { Temperature = 0, MaxOutputTokens = 2 });
            Assert.True(response.FinishReason == ChatFinishReason.Length && response.Usage!.OutputTokenCount == 2 || response.FinishReason == ChatFinishReason.Stop && response.Usage!.OutputTokenCount <= 2,
                $"{response.FinishReason} after {response.Usage!.OutputTokenCount} tokens");
        }
        finally
        {
            (kernel.Services as IDisposable)?.Dispose();
        }
    }

    [Fact]
    public async Task SeedMakesSamplingReproducible()
    {
        var kernel = BuildKernel();
        try
        {
            async Task<string> Run(long seed) => (await kernel.InvokePromptAsync(Prompt, new KernelArguments(new JambaPromptExecutionSettings { Temperature = 1, Seed = seed, MaxTokens = 32 }))).ToString();
            string a = await Run(42), b = await Run(42);
            Assert.Equal(a, b);
            var others = new[] { await Run(1), await Run(2), await Run(3) };
            Assert.Contains(others, o => o != a);
        }
        finally
        {
            (kernel.Services as IDisposable)?.Dispose();
        }
    }

    [Fact]
    public async Task StopSequencesEndTheOutput()
    {
        var kernel = BuildKernel();
        try
        {
            var settings = new JambaPromptExecutionSettings { Temperature = 0, MaxTokens = 40 };
            string full = (await kernel.InvokePromptAsync(Prompt, new KernelArguments(settings))).ToString();
            Assert.True(full.Length >= 8, $"greedy output too short to test stops: '{full}'");
            // A stop text from the middle of the greedy output: the output ends just before it.
            string stop = full.Substring(full.Length / 2, 3);
            int cut = full.IndexOf(stop, StringComparison.Ordinal);
            settings.StopSequences = [stop];
            string stopped = (await kernel.InvokePromptAsync(Prompt, new KernelArguments(settings))).ToString();
            Assert.Equal(full[..cut], stopped);
            Assert.DoesNotContain(stop, stopped);
        }
        finally
        {
            (kernel.Services as IDisposable)?.Dispose();
        }
    }

    [Fact]
    public async Task CancellationStopsGenerationWithinOneStep()
    {
        var kernel = BuildKernel();
        try
        {
            var service = (JambaChatCompletionService)kernel.GetRequiredService<IChatCompletionService>();
            await kernel.InvokePromptAsync("warm up", new KernelArguments(new JambaPromptExecutionSettings { MaxTokens = 1 }));
            var engine = service.ChatClient.ModelHandle!.Engine;
            var before = engine.Metrics;
            using var cts = new CancellationTokenSource();
            int updates = 0;
            long atCancel = 0;
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
            {
                await foreach (var _ in kernel.InvokePromptStreamingAsync(Prompt, new KernelArguments(new JambaPromptExecutionSettings { Temperature = 1, Seed = 3, MaxTokens = 2000 }), cancellationToken: cts.Token))
                {
                    updates++;
                    atCancel = engine.Metrics.DecodedTokens; // control tokens never reach the text, so the first update may take a while
                    cts.Cancel();
                }
            });
            Assert.Equal(1, updates);
            await WaitUntil(() => engine.Metrics.Idle);
            var after = engine.Metrics;
            Assert.True(after.RequestsCancelled > before.RequestsCancelled, before + " / " + after);
            // The text of the first update may have needed a few tokens (held-back text); only a step or two more ran.
            Assert.True(after.DecodedTokens - atCancel < 40, $"{after.DecodedTokens - atCancel} tokens decoded after cancel");
        }
        finally
        {
            (kernel.Services as IDisposable)?.Dispose();
        }
    }

    [Fact]
    public async Task TextGenerationMatchesChatForTheSamePrompt()
    {
        var kernel = BuildKernel();
        try
        {
            var settings = new JambaPromptExecutionSettings { Temperature = 0, MaxTokens = 12 };
            var text = kernel.GetRequiredService<ITextGenerationService>();
            var chat = kernel.GetRequiredService<IChatCompletionService>();
            Assert.Same(chat, text);
            var t = await text.GetTextContentAsync(Prompt, settings, kernel);
            var c = await chat.GetChatMessageContentAsync(Prompt, settings, kernel);
            Assert.Equal(c.Content, t.Text);
            var streamed = new StringBuilder();
            await foreach (var u in text.GetStreamingTextContentsAsync(Prompt, settings, kernel)) streamed.Append(u.Text);
            Assert.Equal(t.Text, streamed.ToString());
        }
        finally
        {
            (kernel.Services as IDisposable)?.Dispose();
        }
    }

    [Fact]
    public async Task DependencyInjectionIsKeyedAndSharesOneLoadedModel()
    {
        var services = new ServiceCollection();
        services.AddJambaChatCompletion(fixture.Folder, "chat");
        services.AddJambaChatClient(fixture.Folder, "client");
        services.AddKernel();
        long loadsBefore = JambaModelRegistry.Shared.LoadCount;
        using (var provider = services.BuildServiceProvider())
        {
            var chat = provider.GetRequiredKeyedService<IChatCompletionService>("chat");
            Assert.Same(chat, provider.GetRequiredKeyedService<ITextGenerationService>("chat"));
            Assert.Equal(Path.GetFileName(fixture.Folder), chat.GetModelId());
            Assert.Null(provider.GetService<IChatCompletionService>()); // keyed only
            var client = provider.GetRequiredKeyedService<IChatClient>("client");
            Assert.Equal(Path.GetFileName(fixture.Folder), client.GetService<ChatClientMetadata>()!.DefaultModelId);

            var kernel = provider.GetRequiredService<Kernel>();
            var settings = new JambaPromptExecutionSettings { Temperature = 0, MaxTokens = 6, ServiceId = "chat" };
            string viaKernel = (await kernel.InvokePromptAsync(Prompt, new KernelArguments(settings))).ToString();
            var viaClient = await client.GetResponseAsync(Prompt, new ChatOptions { Temperature = 0, MaxOutputTokens = 6 });
            Assert.Equal(viaKernel, viaClient.Text);

            var handleA = ((JambaChatCompletionService)chat).ChatClient.ModelHandle!;
            var handleB = client.GetService<JambaChatClient>()!.ModelHandle!;
            Assert.Same(handleA.Model, handleB.Model);
            Assert.Same(handleA.Engine, handleB.Engine);
            Assert.InRange(JambaModelRegistry.Shared.LoadCount - loadsBefore, 0, 1);
        }
        // Disposing the provider released both leases: the model is freed.
        Assert.Equal(0, JambaModelRegistry.Shared.LoadedCount);
    }

    [Fact]
    public void AttributesCarryTheModelId()
    {
        using var service = new JambaChatCompletionService(fixture.Folder, new JambaChatClientOptions { ModelId = "jamba-tiny" });
        Assert.Equal("jamba-tiny", service.GetModelId());
        Assert.Equal("jamba-tiny", service.Attributes[AIServiceExtensions.ModelIdKey]);
        Assert.StartsWith("file://", (string)service.Attributes[AIServiceExtensions.EndpointKey]!);
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        for (int i = 0; i < 200 && !condition(); i++) await Task.Delay(25);
    }
}
