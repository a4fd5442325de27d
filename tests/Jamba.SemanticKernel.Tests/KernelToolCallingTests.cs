using System.ComponentModel;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;
using Xunit;

namespace Jamba.SemanticKernel.Tests;

/// <summary>SK's <c>FunctionChoiceBehavior.Auto()</c> loop over recorded model outputs.</summary>
public sealed class KernelToolCallingTests
{
    public sealed class WeatherPlugin
    {
        public List<string> Cities { get; } = new();

        [KernelFunction("get_weather"), Description("Gets the current weather for a city.")]
        public string GetWeather([Description("The city")] string city)
        {
            Cities.Add(city);
            return $"sunny, 21 °C in {city}";
        }
    }

    private const string CallOslo = " <tool_calls>[\n    {\"name\": \"Weather_get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n]</tool_calls>";
    private const string Answer = " It is sunny and 21 °C in Oslo.";

    private static (Kernel Kernel, WeatherPlugin Plugin, ScriptedGenerator Script) Build(params string[] outputs)
    {
        var script = new ScriptedGenerator(outputs);
        var builder = Kernel.CreateBuilder();
        builder.Services.AddSingleton<IChatCompletionService>(new JambaChatCompletionService(script.CreateClient()));
        var plugin = new WeatherPlugin();
        builder.Plugins.AddFromObject(plugin, "Weather");
        return (builder.Build(), plugin, script);
    }

    [Fact]
    public async Task InvokePromptRunsTheAutoLoop()
    {
        var (kernel, plugin, script) = Build(CallOslo, Answer);
        var settings = new JambaPromptExecutionSettings { FunctionChoiceBehavior = FunctionChoiceBehavior.Auto(), Temperature = 0 };
        var result = await kernel.InvokePromptAsync("What's the weather in Oslo?", new KernelArguments(settings));
        Assert.Equal("It is sunny and 21 °C in Oslo.", result.ToString());
        Assert.Equal(["Oslo"], plugin.Cities);
        Assert.Equal(2, script.Prompts.Count);
        // The kernel function is offered through the template, the call and its result are fed back.
        Assert.Contains("\"name\": \"Weather_get_weather\"", script.Prompts[0]);
        Assert.Contains("\"description\": \"Gets the current weather for a city.\"", script.Prompts[0]);
        Assert.Contains("<|bom|><|tool|> (Weather_get_weather)sunny, 21 °C in Oslo<|eom|>", script.Prompts[1]);
    }

    [Fact]
    public async Task StreamingChatRunsTheAutoLoopAndUpdatesHistory()
    {
        var (kernel, plugin, script) = Build(CallOslo, Answer);
        var chat = kernel.GetRequiredService<IChatCompletionService>();
        var history = new ChatHistory("You are a weather bot.");
        history.AddUserMessage("What's the weather in Oslo?");
        var settings = new PromptExecutionSettings { FunctionChoiceBehavior = FunctionChoiceBehavior.Auto() };
        var text = new System.Text.StringBuilder();
        await foreach (var update in chat.GetStreamingChatMessageContentsAsync(history, settings, kernel)) text.Append(update.Content);
        Assert.Equal("It is sunny and 21 °C in Oslo.", text.ToString());
        Assert.Equal(["Oslo"], plugin.Cities);
        // SK's streaming bridge keeps the fully qualified tool name in FunctionName.
        Assert.Contains(history, m => m.Role == AuthorRole.Assistant && m.Items.OfType<FunctionCallContent>().Any(c => (c.PluginName is null ? "" : c.PluginName + "_") + c.FunctionName == "Weather_get_weather"));
        Assert.Contains(history, m => m.Role == AuthorRole.Tool && m.Items.OfType<FunctionResultContent>().Any());
        Assert.StartsWith("<|startoftext|><|bom|><|system|> You are a weather bot.\n\n<tool_definitions>", script.Prompts[0]);
    }

    [Fact]
    public async Task WithoutFunctionChoiceBehaviorNoToolsAreOffered()
    {
        var (kernel, plugin, script) = Build(Answer);
        var result = await kernel.InvokePromptAsync("What's the weather in Oslo?");
        Assert.Equal("It is sunny and 21 °C in Oslo.", result.ToString());
        Assert.DoesNotContain("<tool_definitions>", script.Prompts[0]);
        Assert.Empty(plugin.Cities);
    }

    [Fact]
    public async Task MalformedToolOutputReachesTheCallerAsText()
    {
        var (kernel, plugin, _) = Build(RecordedToolOutputs.Jamba17Malformed);
        var settings = new PromptExecutionSettings { FunctionChoiceBehavior = FunctionChoiceBehavior.Auto() };
        var result = await kernel.InvokePromptAsync("Weather?", new KernelArguments(settings));
        Assert.Equal(RecordedToolOutputs.Jamba17Malformed.TrimStart(), result.ToString());
        Assert.Empty(plugin.Cities);
    }
}
