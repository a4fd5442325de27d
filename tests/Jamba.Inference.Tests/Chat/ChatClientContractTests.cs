using System.ComponentModel;
using Jamba.Inference.Chat;
using Jamba.Inference.Config;
using Jamba.Inference.Generation;
using Microsoft.Extensions.AI;
using Xunit;

namespace Jamba.Inference.Tests.Chat;

/// <summary>The contracts of Microsoft.Extensions.AI's IChatClient conformance tests that a local client must keep.</summary>
public sealed class ChatClientContractTests
{
    private static readonly List<ChatMessage> Ask = [new(ChatRole.User, "What's the weather in Oslo?")];

    [Description("Gets the current weather for a city.")]
    private static string GetWeather([Description("The city")] string city) => $"sunny in {city}";

    private static AIFunction Weather => AIFunctionFactory.Create(GetWeather, "get_weather");

    [Fact]
    public async Task NoToolsOfferedMeansNoToolCallsEvenWhenTheModelWritesThem()
    {
        var script = new ScriptedGenerator([RecordedToolOutputs.Jamba17TwoCalls, RecordedToolOutputs.Jamba17TwoCalls]);
        using var client = script.CreateClient();
        var response = await client.GetResponseAsync(Ask);
        Assert.Empty(response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
        Assert.Contains("get_weather", response.Text);
        // ToolMode None: described to the model, never called.
        var none = await client.GetResponseAsync(Ask, new ChatOptions { Tools = [Weather], ToolMode = ChatToolMode.None });
        Assert.Empty(none.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        Assert.Contains("get_weather", script.Prompts[1]);
    }

    [Fact]
    public async Task CallsToFunctionsThatWereNotOfferedComeBackAsText()
    {
        var script = new ScriptedGenerator([RecordedToolOutputs.Jamba17TwoCalls]); // get_weather and search_documents
        using var client = script.CreateClient();
        var response = await client.GetResponseAsync(Ask, new ChatOptions { Tools = [Weather] });
        var calls = response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().ToList();
        Assert.Equal(["get_weather"], calls.Select(c => c.Name));
        Assert.Contains("search_documents", response.Text);
        Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
    }

    [Fact]
    public async Task RequireSpecificStartsTheAnswerWithThatCall()
    {
        // The model only writes the arguments and the closing markup: the prompt already opened the call.
        var script = new ScriptedGenerator(["{\"city\": \"Oslo\"}}]</tool_calls>"]);
        using var client = script.CreateClient();
        var response = await client.GetResponseAsync(Ask, new ChatOptions { Tools = [Weather], ToolMode = ChatToolMode.RequireSpecific("get_weather") });
        Assert.EndsWith("<tool_calls>[{\"name\": \"get_weather\", \"arguments\": ", script.Prompts[0]);
        var call = Assert.Single(response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        Assert.Equal("get_weather", call.Name);
        Assert.Equal("Oslo", call.Arguments!["city"]!.ToString());
        Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(Ask, new ChatOptions { Tools = [Weather], ToolMode = ChatToolMode.RequireSpecific("other") }));

        var any = new ScriptedGenerator(["get_weather\", \"arguments\": {\"city\": \"Oslo\"}}]</tool_calls>"]);
        using var anyClient = any.CreateClient();
        var forced = await anyClient.GetResponseAsync(Ask, new ChatOptions { Tools = [Weather], ToolMode = ChatToolMode.RequireAny });
        Assert.EndsWith("<tool_calls>[{\"name\": \"", any.Prompts[0]);
        Assert.Single(forced.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
    }

    [Fact]
    public async Task NonTextContentIsRefusedAndTextDataIsRead()
    {
        var script = new ScriptedGenerator(["ok", "ok"]);
        using var client = script.CreateClient();
        var image = new ChatMessage(ChatRole.User, [new TextContent("What is this?"), new DataContent(new byte[] { 0x89, 0x50, 0x4E, 0x47 }, "image/png")]);
        var e = await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync([image]));
        Assert.Contains("image/png", e.Message);
        var text = new ChatMessage(ChatRole.User, [new DataContent(System.Text.Encoding.UTF8.GetBytes("a note about whales"), "text/plain")]);
        await client.GetResponseAsync([text]);
        Assert.Contains("a note about whales", script.Prompts[0]);
    }

    [Fact]
    public void CheckpointSamplingDefaultsApplyWhenTheCallerSetsNone()
    {
        string folder = Directory.CreateTempSubdirectory("jamba-genconfig-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(folder, GenerationDefaults.FileName), """{"temperature": 0.6, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.1, "eos_token_id": 2}""");
            var recommended = GenerationDefaults.Load(folder);
            var g = JambaChatClient.WithCheckpointDefaults(new GenerationOptions { MaxNewTokens = 1024 }, recommended);
            Assert.Equal((0.6f, 0.9f, 40, 1.1f, 1024), (g.Temperature, g.TopP, g.TopK, g.RepetitionPenalty, g.MaxNewTokens));
            // A request's own settings still win.
            var request = ChatGenerationSettings.ToGenerationOptions(new ChatOptions { Temperature = 0 }, g);
            Assert.Equal(0f, request.Temperature);
            File.WriteAllText(Path.Combine(folder, GenerationDefaults.FileName), """{"temperature": "hot"}""");
            var bad = Assert.Throws<JambaConfigException>(() => GenerationDefaults.Load(folder));
            Assert.Equal("temperature", bad.Field);
            Assert.Contains(GenerationDefaults.FileName, bad.Message);
        }
        finally
        {
            Directory.Delete(folder, true);
        }
    }
}
