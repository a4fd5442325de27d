using Microsoft.ML;
using Xunit;

namespace Jamba.MLNet.Tests;

/// <summary><see cref="JambaTextGenerationOptions.JsonSchema"/>: every row's output column holds one JSON value of the schema.</summary>
public sealed class StructuredOutputTests
{
    [Fact]
    public void EveryRowHoldsAValidValue()
    {
        string schema = JsonSchemaCheck.Schemas["weather"];
        var ml = new MLContext();
        var options = new JambaTextGenerationOptions
        {
            ModelPath = RepositoryPaths.ShippedModel, InputColumnName = "Prompt", MaxTokens = 120, Temperature = 0.8f, Seed = 3,
            BatchSize = 4, JsonSchema = schema,
        };
        var data = ml.Data.LoadFromEnumerable(new[] { "Paris", "Oslo", "Lima" }.Select(p => new PromptRow { Prompt = "Weather in " + p }).ToList());
        var model = ml.Transforms.Text.GenerateText(options).Fit(data);
        var rows = ml.Data.CreateEnumerable<GenerationOutput>(model.Transform(data), reuseRowObject: false).ToList();
        Assert.Equal(3, rows.Count);
        foreach (var row in rows)
        {
            Assert.Equal("stop", row.FinishReason);
            var (valid, detail) = JsonSchemaCheck.Validate(schema, row.GeneratedText);
            Assert.True(valid, detail);
        }
    }

    [Fact]
    public void ABadSchemaIsNamedByTheOption()
    {
        var ml = new MLContext();
        var o = new JambaTextGenerationOptions { ModelPath = RepositoryPaths.ShippedModel, InputColumnName = "Prompt", JsonSchema = """{"type":"string","pattern":"x"}""" };
        var e = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.Text.GenerateText(o));
        Assert.Equal("JsonSchema", e.ParamName);
        Assert.Contains("'pattern'", e.Message);
    }
}
