using System.Text.Json;
using Jamba.Inference.Chat;
using Jamba.Inference.Engine;
using Jamba.Inference.Generation;
using Microsoft.Extensions.AI;
using Xunit;

namespace Jamba.Inference.Tests.Chat;

/// <summary>
/// Structured output on real engines: the shipped model (which cannot write JSON by itself) and a random-weight tiny
/// checkpoint, many schemas in one continuous batch, validated by JsonSchema.Net; <c>GetResponseAsync&lt;T&gt;()</c>.
/// </summary>
[Collection(ChatModelCollection.Name)]
public sealed class StructuredOutputTests(ChatModelFixture fixture)
{
    public sealed record Whale(string Name, int LengthMeters, bool Endangered);
    public sealed record Address(string Street, string City, string? PostCode);
    public sealed record Customer(string Name, int Age, Address Home, List<string> Tags, Status Status);
    [System.Text.Json.Serialization.JsonConverter(typeof(System.Text.Json.Serialization.JsonStringEnumConverter<Status>))]
    public enum Status { Active, Suspended }

    private static async Task AllSchemasValidate(string folder, int[] seeds)
    {
        long before = TensorCounts.Live();
        await using (var handle = await JambaModelHandle.LoadAsync(folder))
        {
            var prompt = handle.Encode("Describe it as JSON:");
            var jobs = new List<(string Schema, int Seed, Task<GenerationResult> Run)>();
            foreach (var (name, schema) in JsonSchemaCheck.Schemas)
                foreach (int seed in seeds)
                {
                    var o = new GenerationOptions
                    {
                        Constraint = JsonConstraint.FromSchema(schema), Temperature = 0.8f, TopP = 0.95f, Seed = seed, MaxNewTokens = 160,
                        RepetitionPenalty = 1.05f,
                    };
                    jobs.Add((schema, seed, handle.Engine.GenerateTextAsync(new GenerationRequest(prompt, o))));
                }
            foreach (var (schema, seed, run) in jobs)
            {
                var r = await run;
                Assert.Equal(FinishReason.Stop, r.FinishReason);
                Assert.False(r.ConstraintIncomplete);
                var (valid, detail) = JsonSchemaCheck.Validate(schema, r.Text);
                Assert.True(valid, $"seed {seed}: {detail}");
            }
        }
        Assert.Equal(before, TensorCounts.Live());
    }

    [Fact]
    public Task ShippedModelOutputsValidateForEverySchemaAndSeed() => AllSchemasValidate(RepositoryPaths.ShippedModel, [11]);

    [Fact]
    public Task RandomWeightModelOutputsValidateForEverySchemaAndSeed() => AllSchemasValidate(fixture.Folder, [21]);

    [Fact]
    public async Task GetResponseAsyncOfARecordReturnsItsResult()
    {
        using var client = await JambaChatClient.LoadAsync(RepositoryPaths.ShippedModel);
        var whale = await client.GetResponseAsync<Whale>("Tell me about the blue whale.", new ChatOptions { Temperature = 0.7f, Seed = 3, MaxOutputTokens = 120 });
        Assert.NotNull(whale.Result);
        Assert.Equal(ChatFinishReason.Stop, whale.FinishReason);
        var customer = await client.GetResponseAsync<Customer>("Make up a customer.", new ChatOptions { Temperature = 0, MaxOutputTokens = 200 });
        Assert.True(customer.TryGetResult(out var c), customer.Text);
        Assert.NotNull(c!.Home);
        Assert.NotNull(c.Tags);
    }

    [Fact]
    public async Task JsonModeGivesAnObjectAndTheSchemaIsInThePrompt()
    {
        using var client = await JambaChatClient.LoadAsync(RepositoryPaths.ShippedModel);
        var r = await client.GetResponseAsync("List three colours.", new ChatOptions { ResponseFormat = ChatResponseFormat.Json, Temperature = 0.5f, Seed = 1, MaxOutputTokens = 80 });
        using (var doc = JsonDocument.Parse(r.Text)) Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);

        var schema = JsonDocument.Parse(JsonSchemaCheck.Schemas["weather"]).RootElement;
        var format = ChatResponseFormat.ForJsonSchema(schema, "weather_report", "Today's weather.");
        var formatter = ChatSetup.For(client.ModelHandle!).CreateFormatter();
        var prompt = formatter.Format([new ChatMessage(ChatRole.User, "Weather?")], new ChatOptions { ResponseFormat = format });
        Assert.Contains("weather_report", prompt.Text);
        Assert.Contains("\"temperatureC\"", prompt.Text);
        Assert.Contains("JSON Mode", prompt.Text);
        var g = client.CreateGenerationOptions(new ChatOptions { ResponseFormat = format });
        Assert.NotNull(g.Constraint);
        Assert.Null(client.CreateGenerationOptions(new ChatOptions { ResponseFormat = ChatResponseFormat.Text }).Constraint);
    }

    [Fact]
    public void UnsupportedSchemaFromARequestFailsWithTheKeyword()
    {
        var schema = JsonDocument.Parse("""{"type":"string","pattern":"^[a-z]+$"}""").RootElement;
        var e = Assert.Throws<NotSupportedException>(() => ChatGenerationSettings.ToGenerationOptions(new ChatOptions { ResponseFormat = ChatResponseFormat.ForJsonSchema(schema) }));
        Assert.Contains("'pattern'", e.Message);
    }
}
