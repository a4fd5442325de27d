using System.Text.Json.Nodes;
using Xunit;

namespace Jamba.Cli.Tests;

/// <summary><c>jamba generate --json-schema FILE</c> / <c>--json-object</c>, and <c>jamba bench --json-constraint</c>.</summary>
public sealed class StructuredOutputTests
{
    [Fact]
    public void GenerateWithASchemaFilePrintsAValidValue()
    {
        string schema = JsonSchemaCheck.Schemas["order"];
        string file = Path.Combine(Path.GetTempPath(), $"jamba-schema-{Guid.NewGuid():N}.json");
        File.WriteAllText(file, schema);
        try
        {
            var r = CliRunner.Run("generate", "--model", RepositoryPaths.ShippedModel, "--prompt", "An order:", "--json-schema", file,
                "--temperature", "0.8", "--seed", "3", "--max-new-tokens", "200", "--json");
            Assert.True(r.ExitCode == 0, r.ToString());
            var json = JsonNode.Parse(r.Out)!;
            Assert.Equal("stop", (string?)json["finish_reason"]);
            Assert.False((bool)json["constraint_incomplete"]!);
            var (valid, detail) = JsonSchemaCheck.Validate(schema, (string)json["text"]!);
            Assert.True(valid, detail);

            var obj = CliRunner.Run("generate", "--model", RepositoryPaths.ShippedModel, "--prompt", "Hi", "--json-object", "--seed", "1", "--max-new-tokens", "60");
            Assert.True(obj.ExitCode == 0, obj.ToString());
            Assert.IsType<JsonObject>(JsonNode.Parse(obj.Out));

            File.WriteAllText(file, """{"type":"string","pattern":"^x"}""");
            var bad = CliRunner.Run("generate", "--model", RepositoryPaths.ShippedModel, "--prompt", "Hi", "--json-schema", file);
            Assert.NotEqual(0, bad.ExitCode);
            Assert.Contains("'pattern'", bad.Error + bad.Out);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void BenchJsonConstraintReportsMaskCostsAndDecodeRatios()
    {
        var r = CliRunner.Run("bench", "--model", RepositoryPaths.ShippedModel, "--prompt-tokens", "8", "--new-tokens", "8", "--json-constraint", "--no-warmup", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var jc = JsonNode.Parse(r.Out)!["json_constraint"]!;
        Assert.Equal(65536, (int)jc["mask_synthetic_vocab"]!["vocabulary"]!);
        Assert.True((double)jc["mask_synthetic_vocab"]!["cached_us_per_token"]! > 0);
        Assert.NotNull(jc["mask_model_vocab"]);
        Assert.Equal([1, 16], jc["decode"]!.AsArray().Select(d => (int)d!["streams"]!));
    }
}
