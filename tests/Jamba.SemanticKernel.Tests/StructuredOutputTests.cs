using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;
using Xunit;

namespace Jamba.SemanticKernel.Tests;

/// <summary><see cref="JambaPromptExecutionSettings.ResponseFormat"/>: a type, a schema, or "json_object" constrain the answer.</summary>
public sealed class StructuredOutputTests
{
    public sealed record Whale(string Name, int LengthMeters, bool Endangered);

    [Fact]
    public void EveryFormSettingMapsToAChatResponseFormatAndRoundTripsThroughJson()
    {
        Assert.IsType<ChatResponseFormatText>(JambaPromptExecutionSettings.ToChatResponseFormat("text"));
        Assert.Null(((ChatResponseFormatJson)JambaPromptExecutionSettings.ToChatResponseFormat("json_object")!).Schema);
        var typed = (ChatResponseFormatJson)JambaPromptExecutionSettings.ToChatResponseFormat(typeof(Whale))!;
        Assert.Equal("Whale", typed.SchemaName);
        Assert.Contains("lengthMeters", typed.Schema!.Value.GetRawText(), StringComparison.OrdinalIgnoreCase);
        var text = (ChatResponseFormatJson)JambaPromptExecutionSettings.ToChatResponseFormat("""{"type":"object","properties":{"a":{"type":"integer"}}}""")!;
        Assert.NotNull(text.Schema);
        Assert.Throws<ArgumentException>(() => JambaPromptExecutionSettings.ToChatResponseFormat(42));
        Assert.Throws<ArgumentException>(() => JambaPromptExecutionSettings.ToChatResponseFormat("yaml please"));

        var settings = new JambaPromptExecutionSettings { ResponseFormat = typeof(Whale) };
        string json = JsonSerializer.Serialize(settings);
        var back = JsonSerializer.Deserialize<JambaPromptExecutionSettings>(json)!;
        var again = (ChatResponseFormatJson)JambaPromptExecutionSettings.ToChatResponseFormat(back.ResponseFormat)!;
        Assert.Equal("Whale", again.SchemaName);
        Assert.Equal(typed.Schema!.Value.GetRawText(), again.Schema!.Value.GetRawText());
        Assert.Equal("json_object", JsonDocument.Parse(JsonSerializer.Serialize(new JambaPromptExecutionSettings { ResponseFormat = "json_object" })).RootElement.GetProperty("response_format").GetString());
        Assert.NotNull(settings.ToChatOptions().ResponseFormat);
        Assert.NotNull(settings.ToGenerationOptions().Constraint);
    }

    [Fact]
    public async Task ATypeResponseFormatGivesItsJsonOnTheShippedModel()
    {
        using var service = new JambaChatCompletionService(RepositoryPaths.ShippedModel);
        var history = new ChatHistory();
        history.AddUserMessage("Tell me about the blue whale.");
        var settings = new JambaPromptExecutionSettings { ResponseFormat = typeof(Whale), Temperature = 0.7f, Seed = 4, MaxTokens = 120 };
        var reply = await service.GetChatMessageContentAsync(history, settings);
        var whale = JsonSerializer.Deserialize<Whale>(reply.Content!, AIJsonUtilities.DefaultOptions);
        Assert.NotNull(whale);
        var schema = (ChatResponseFormatJson)JambaPromptExecutionSettings.ToChatResponseFormat(typeof(Whale))!;
        Assert.True(JsonSchemaCheck.Validate(schema.Schema!.Value.GetRawText(), reply.Content!).Valid, reply.Content);

        var obj = await service.GetChatMessageContentAsync(history, new JambaPromptExecutionSettings { ResponseFormat = "json_object", Temperature = 0.5f, Seed = 2, MaxTokens = 60 });
        Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(obj.Content!).RootElement.ValueKind);
    }
}
