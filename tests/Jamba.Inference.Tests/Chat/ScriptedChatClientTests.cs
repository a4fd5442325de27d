using System.ComponentModel;
using System.Text.Json;
using Jamba.Inference.Chat;
using Jamba.Inference.Generation;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Xunit;

namespace Jamba.Inference.Tests.Chat;

/// <summary>The MEAI client and MEAI function invocation on recorded model outputs.</summary>
public sealed class ScriptedChatClientTests
{
    private static readonly List<ChatMessage> Ask = [new(ChatRole.User, "What's the weather in Oslo?")];

    /// <summary>The two functions the recorded outputs call: tool calls are parsed only when the request offers them.</summary>
    private static ChatOptions WithTools() => new()
    {
        Tools = [AIFunctionFactory.Create(GetWeather, "get_weather"), AIFunctionFactory.Create((string query) => "none", "search_documents", "Searches the documents.")],
    };

    [Fact]
    public async Task EveryUpdateCarriesIdsAndTimestampsAndTheLastUsageAndFinishReason()
    {
        var script = new ScriptedGenerator([" Hello there, friend."], pieceLength: 2);
        using var client = script.CreateClient();
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync(Ask)) updates.Add(u);

        Assert.True(updates.Count > 3);
        Assert.All(updates, u =>
        {
            Assert.False(string.IsNullOrEmpty(u.ResponseId));
            Assert.False(string.IsNullOrEmpty(u.MessageId));
            Assert.NotNull(u.CreatedAt);
            Assert.Equal("scripted-jamba", u.ModelId);
            Assert.Equal(ChatRole.Assistant, u.Role);
        });
        Assert.Single(updates.Select(u => u.ResponseId).Distinct());
        Assert.Single(updates.Select(u => u.MessageId).Distinct());
        Assert.All(updates.SkipLast(1), u => Assert.Null(u.FinishReason));
        Assert.Equal(ChatFinishReason.Stop, updates[^1].FinishReason);
        var usage = Assert.Single(updates[^1].Contents.OfType<UsageContent>()).Details;
        Assert.True(usage.InputTokenCount > 0);
        Assert.Equal(usage.InputTokenCount + usage.OutputTokenCount, usage.TotalTokenCount);
        Assert.Equal("Hello there, friend.", string.Concat(updates.Select(u => u.Text)));
        // Exactly what the 1.7 template renders for one user message (its empty default system turn included).
        Assert.Equal("<|startoftext|><|bom|><|system|> <|eom|><|bom|><|user|> What's the weather in Oslo?<|eom|><|bom|><|assistant|>", script.Prompts[0]);
    }

    [Fact]
    public async Task ToolCallOutputEndsWithToolCallsAndNoMarkupText()
    {
        var script = new ScriptedGenerator([ToolCallParserTests.Jamba17TwoCalls, ToolCallParserTests.Jamba17TwoCalls]);
        using var client = script.CreateClient();
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync(Ask, WithTools())) updates.Add(u);
        Assert.Equal(ChatFinishReason.ToolCalls, updates[^1].FinishReason);
        Assert.Equal("", string.Concat(updates.Select(u => u.Text)));
        Assert.Equal(2, updates.SelectMany(u => u.Contents).OfType<FunctionCallContent>().Count());

        var response = await client.GetResponseAsync(Ask, WithTools());
        Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
        var message = Assert.Single(response.Messages);
        Assert.Equal(["get_weather", "search_documents"], message.Contents.OfType<FunctionCallContent>().Select(c => c.Name));
        Assert.NotNull(response.Usage);
        Assert.NotNull(response.ResponseId);
        Assert.NotNull(response.CreatedAt);
    }

    [Fact]
    public async Task MalformedToolOutputIsPlainTextAndAWarning()
    {
        var logger = new ListLogger();
        var script = new ScriptedGenerator([ToolCallParserTests.Jamba17Malformed]);
        using var client = script.CreateClient(logger: logger);
        var response = await client.GetResponseAsync(Ask, WithTools());
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
        Assert.Equal(ToolCallParserTests.Jamba17Malformed.TrimStart(), response.Text);
        Assert.Empty(response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        Assert.Contains(logger.Entries, e => e.Level == LogLevel.Warning);
    }

    [Fact]
    public async Task LengthFinishReasonIsReported()
    {
        var script = new ScriptedGenerator([" cut o"]) { FinishReason = FinishReason.Length };
        using var client = script.CreateClient();
        var response = await client.GetResponseAsync(Ask);
        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
        Assert.Equal("cut o", response.Text);
    }

    [Fact]
    public async Task ReasoningTemplateYieldsReasoningAndHermesCalls()
    {
        var script = new ScriptedGenerator([ToolCallParserTests.Reasoning3BTwoCalls]);
        using var client = script.CreateClient("jamba-reasoning-3b");
        var response = await client.GetResponseAsync(Ask, WithTools());
        var contents = response.Messages.SelectMany(m => m.Contents).ToList();
        Assert.Equal("The user wants the weather and documents.\nI will call both tools.", string.Concat(contents.OfType<TextReasoningContent>().Select(r => r.Text)));
        Assert.Equal(2, contents.OfType<FunctionCallContent>().Count());
        Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
        Assert.EndsWith("<|im_start|>assistant\n<think>\n", script.Prompts[0]);
        Assert.Contains("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\"", script.Prompts[0]);
    }

    [Description("Gets the current weather for a city.")]
    private static string GetWeather([Description("The city")] string city) => $"sunny, 21 °C in {city}";

    public static TheoryData<bool> Streaming() => new() { false, true };

    [Theory]
    [MemberData(nameof(Streaming))]
    public async Task FunctionInvokingChatClientRunsTheLoop(bool streaming)
    {
        int calls = 0;
        string? seenCity = null;
        var tool = AIFunctionFactory.Create((string city) => { calls++; seenCity = city; return $"sunny, 21 °C in {city}"; }, "get_weather", "Gets the current weather for a city.");
        var script = new ScriptedGenerator(
        [
            " <tool_calls>[\n    {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n]</tool_calls>",
            " It is sunny and 21 °C in Oslo.",
        ]);
        using var inner = script.CreateClient();
        using var client = new FunctionInvokingChatClient(inner);
        var options = new ChatOptions { Tools = [tool], Temperature = 0, MaxOutputTokens = 64, AdditionalProperties = new() { ["min_p"] = 0.05 } };
        var toolsBefore = options.Tools.ToList();

        string text;
        if (streaming)
        {
            var updates = new List<ChatResponseUpdate>();
            await foreach (var u in client.GetStreamingResponseAsync(Ask, options)) updates.Add(u);
            text = string.Concat(updates.Where(u => u.Role == ChatRole.Assistant).Select(u => u.Text));
            Assert.DoesNotContain("<tool_calls>", text);
        }
        else
        {
            var response = await client.GetResponseAsync(Ask, options);
            text = response.Text;
            Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
            // The function call, the tool result and the answer.
            Assert.Contains(response.Messages, m => m.Contents.OfType<FunctionCallContent>().Any());
            Assert.Contains(response.Messages, m => m.Role == ChatRole.Tool);
        }
        Assert.Equal("It is sunny and 21 °C in Oslo.", text);
        Assert.Equal(1, calls);
        Assert.Equal("Oslo", seenCity);

        // The second prompt carries the call (rendered by the template) and the result under the tool role.
        Assert.Equal(2, script.Prompts.Count);
        Assert.Contains("<|bom|><|assistant|> <tool_calls>[\n    {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n]</tool_calls><|eom|>", script.Prompts[1]);
        Assert.Contains("<|bom|><|tool|> (get_weather)sunny, 21 °C in Oslo<|eom|><|bom|><|assistant|>", script.Prompts[1]);
        Assert.Contains("\"name\": \"get_weather\"", script.Prompts[0]);
        Assert.All(script.Options, o => Assert.Equal((0f, 64, 0.05f), (o.Temperature, o.MaxNewTokens, o.MinP)));

        // The caller's options are untouched.
        Assert.Equal(toolsBefore, options.Tools);
        Assert.Equal(0f, options.Temperature);
        Assert.Equal(64, options.MaxOutputTokens);
        Assert.Null(options.StopSequences);
        Assert.Single(options.AdditionalProperties!);
        Assert.Null(options.ToolMode);
    }

    [Fact]
    public void CreateGenerationOptionsMapsEverySetting()
    {
        using var client = new ScriptedGenerator([]).CreateClient();
        var options = new ChatOptions
        {
            Temperature = 0.5f, TopP = 0.9f, TopK = 7, MaxOutputTokens = 33, Seed = 1234, PresencePenalty = 0.25f, FrequencyPenalty = -0.5f,
            StopSequences = ["END"], AdditionalProperties = new() { ["min_p"] = JsonDocument.Parse("0.1").RootElement, ["repetition_penalty"] = 1.3 },
        };
        var g = client.CreateGenerationOptions(options);
        Assert.Equal((0.5f, 0.9f, 7, 33, 1234L, 0.25f, -0.5f), (g.Temperature, g.TopP, g.TopK, g.MaxNewTokens, g.Seed!.Value, g.PresencePenalty, g.FrequencyPenalty));
        Assert.Equal(0.1f, g.MinP, 5);
        Assert.Equal(1.3f, g.RepetitionPenalty, 5);
        Assert.Equal(["END"], g.StopSequences);
        Assert.Equal(["END"], options.StopSequences);
        Assert.Equal(1024, client.CreateGenerationOptions(null).MaxNewTokens);
        Assert.Throws<ArgumentException>(() => client.CreateGenerationOptions(new ChatOptions { AdditionalProperties = new() { ["min_p"] = "lots" } }));
    }

    [Fact]
    public async Task CancellationStopsTheStream()
    {
        var script = new ScriptedGenerator([new string('x', 400)], pieceLength: 1);
        using var client = script.CreateClient();
        using var cts = new CancellationTokenSource();
        int seen = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var u in client.GetStreamingResponseAsync(Ask, null, cts.Token))
            {
                if (++seen == 3) cts.Cancel();
            }
        });
        Assert.Equal(3, seen);
    }

    [Fact]
    public void MetadataAndServices()
    {
        using var client = new ScriptedGenerator([]).CreateClient();
        var metadata = client.GetService<ChatClientMetadata>();
        Assert.Equal(("jamba", "scripted-jamba"), (metadata!.ProviderName, metadata.DefaultModelId));
        Assert.Same(client, client.GetService<JambaChatClient>());
        Assert.Same(client, client.GetService<IChatClient>());
        Assert.NotNull(client.GetService<JambaChatFormatter>());
        Assert.Null(client.GetService<JambaChatClient>("key"));
    }
}
