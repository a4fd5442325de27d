using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.SemanticKernel;
using Xunit;

namespace Jamba.SemanticKernel.Tests;

public sealed class SettingsTests
{
    [Fact]
    public void JsonNamesFollowSkConnectors()
    {
        var s = new JambaPromptExecutionSettings
        {
            Temperature = 0.5f, TopP = 0.9f, TopK = 5, MaxTokens = 12, StopSequences = ["###"], Seed = 7,
            PresencePenalty = 0.1f, FrequencyPenalty = 0.2f, RepetitionPenalty = 1.1f, MinP = 0.05f, ResponseFormat = "json_object",
        };
        var json = JsonDocument.Parse(JsonSerializer.Serialize(s)).RootElement;
        foreach (var name in new[] { "temperature", "top_p", "top_k", "max_tokens", "stop_sequences", "seed", "presence_penalty", "frequency_penalty", "repetition_penalty", "min_p", "response_format" })
            Assert.True(json.TryGetProperty(name, out _), name);
        Assert.False(json.TryGetProperty("documents", out _)); // unset values are not written
    }

    [Fact]
    public void FromPlainSettingsMapsExtensionData()
    {
        var plain = new PromptExecutionSettings
        {
            ModelId = "m",
            ServiceId = "svc",
            FunctionChoiceBehavior = FunctionChoiceBehavior.Auto(),
            ExtensionData = new Dictionary<string, object>
            {
                ["temperature"] = 0.25, ["top_p"] = 0.5, ["top_k"] = 3, ["max_tokens"] = 40, ["stop_sequences"] = new[] { "END" },
                ["seed"] = 99, ["min_p"] = 0.1, ["repetition_penalty"] = "1.2", ["custom"] = "kept",
            },
        };
        var s = JambaPromptExecutionSettings.FromExecutionSettings(plain);
        Assert.Equal((0.25f, 0.5f, 3, 40, 99L, 0.1f, 1.2f), (s.Temperature!.Value, s.TopP!.Value, s.TopK!.Value, s.MaxTokens!.Value, s.Seed!.Value, s.MinP!.Value, s.RepetitionPenalty!.Value));
        Assert.Equal(["END"], s.StopSequences!);
        Assert.Equal(("m", "svc"), (s.ModelId, s.ServiceId));
        Assert.Same(plain.FunctionChoiceBehavior, s.FunctionChoiceBehavior);
        Assert.True(s.ExtensionData!.ContainsKey("custom"));
        Assert.Same(s, JambaPromptExecutionSettings.FromExecutionSettings(s));
        Assert.Equal(77, JambaPromptExecutionSettings.FromExecutionSettings(null, defaultMaxTokens: 77).MaxTokens);
        Assert.Throws<ArgumentException>(() => JambaPromptExecutionSettings.FromExecutionSettings(new PromptExecutionSettings { ExtensionData = new Dictionary<string, object> { ["max_tokens"] = "many" } }));
    }

    [Fact]
    public void FreezeAndClone()
    {
        var s = new JambaPromptExecutionSettings { Temperature = 1, StopSequences = ["a"] };
        var clone = (JambaPromptExecutionSettings)s.Clone();
        s.Freeze();
        Assert.Throws<InvalidOperationException>(() => s.Temperature = 0);
        Assert.Throws<NotSupportedException>(() => s.StopSequences!.Add("b"));
        clone.Temperature = 0;
        clone.StopSequences!.Add("b");
        Assert.Equal(1f, s.Temperature);
        Assert.Equal(["a"], s.StopSequences!);
    }

    [Fact]
    public void SettingsReachTheEngineOptionsThroughSksChatOptionsMapping()
    {
        var settings = new JambaPromptExecutionSettings
        {
            Temperature = 0, TopK = 4, MaxTokens = 9, Seed = 5, StopSequences = ["STOP"], MinP = 0.2f, RepetitionPenalty = 1.5f,
            Documents = [new Dictionary<string, object?> { ["title"] = "T", ["text"] = "Body" }],
            ChatTemplateKwargs = new Dictionary<string, object?> { ["generation_preamble"] = "Sure." },
        };
        var options = settings.ToChatOptions(kernel: null);
        using var client = new ScriptedGenerator([]).CreateClient();
        var g = client.CreateGenerationOptions(options);
        Assert.Equal((0f, 4, 9, 5L, 0.2f, 1.5f), (g.Temperature, g.TopK, g.MaxNewTokens, g.Seed!.Value, g.MinP, g.RepetitionPenalty));
        Assert.Equal(["STOP"], g.StopSequences);
        var prompt = client.GetService<Jamba.Inference.Chat.JambaChatFormatter>()!.Format([new ChatMessage(ChatRole.User, "Q")], options);
        Assert.Contains("Title: T\nText: Body", prompt.Text);
        Assert.EndsWith("<|bom|><|assistant|> Sure.", prompt.Text);
    }

    [Fact]
    public void ToGenerationOptionsUsesDefaultsForUnsetValues()
    {
        var g = new JambaPromptExecutionSettings { MaxTokens = 3 }.ToGenerationOptions(new Jamba.Inference.Generation.GenerationOptions { Temperature = 0.7f, MaxNewTokens = 100 });
        Assert.Equal((0.7f, 3), (g.Temperature, g.MaxNewTokens));
    }
}
