using System.Text.Json.Nodes;
using Jamba.Cli.Infrastructure;
using Jamba.Inference.Caching;
using Jamba.Inference.Config;
using Xunit;

namespace Jamba.Cli.Tests;

public sealed class InfoTokenizeTests : IClassFixture<TextModelFixture>
{
    private readonly TextModelFixture _text;

    public InfoTokenizeTests(TextModelFixture text) => _text = text;

    [Fact]
    public void Info_json_has_the_schedule_parameters_and_cache_sizes()
    {
        string fixture = FixturePaths.AnyModelFixture();
        var config = JambaConfig.Load(fixture);
        var r = CliRunner.Run("info", "--model", fixture, "--context", "1000", "--dtype", "f32", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var json = JsonNode.Parse(r.Out)!.AsObject();
        var layers = json["layers"]!.AsArray();
        Assert.Equal(config.NumHiddenLayers, layers.Count);
        for (int i = 0; i < layers.Count; i++)
        {
            Assert.Equal(config.MixerKind(i) == JambaMixerKind.Attention ? "attention" : "mamba", layers[i]!["mixer"]!.GetValue<string>());
            Assert.Equal(config.IsMoeLayer(i) ? "moe" : "dense", layers[i]!["feed_forward"]!.GetValue<string>());
        }
        var expected = JsonNode.Parse(File.ReadAllText(Path.Combine(fixture, "expected.json")))!;
        Assert.Equal(expected["generator"]!["num_parameters"]!.GetValue<long>(), json["total_parameters"]!.GetValue<long>());
        Assert.Equal("f32", json["dtype"]!.GetValue<string>());
        Assert.Equal("cpu", json["device"]!.GetValue<string>());
        Assert.Equal(HybridCache.BytesFor(config, 1000, 4), json["cache_bytes_at_context"]!.GetValue<long>());
        Assert.Equal(HybridCache.BytesFor(config, 0, 4), json["mamba_state_bytes_per_sequence"]!.GetValue<long>());
        Assert.Equal(2L * config.NumAttentionLayers * config.NumKeyValueHeads * config.HeadDim * 4, json["kv_bytes_per_token"]!.GetValue<long>());
        foreach (var key in new[] { "active_parameters", "weight_bytes", "weight_bytes_read_per_token", "config" })
            Assert.True(json.ContainsKey(key), key);
    }

    [Fact]
    public void Info_table_lists_every_layer()
    {
        string fixture = FixturePaths.AnyModelFixture();
        var config = JambaConfig.Load(fixture);
        var r = CliRunner.Run("info", "--model", fixture);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("Layer schedule", r.Out);
        Assert.Contains("K/V bytes per token", r.Out);
        Assert.Contains("Mamba state per sequence", r.Out);
        Assert.Equal(config.NumAttentionLayers, System.Text.RegularExpressions.Regex.Matches(r.Out, @"\|\s*\d+\s*\|\s*attention\s*\|").Count);
    }

    [Fact]
    public void Info_on_the_bench_preset_reports_the_issue_8_figures()
    {
        var r = CliRunner.Run("info", "--preset", "bench", "--dtype", "bf16", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var json = JsonNode.Parse(r.Out)!;
        // Issue 8: 186.6M parameters (373 MB of bf16 weights) read per decoded token.
        Assert.InRange(json["parameters_read_per_token"]!.GetValue<long>(), 186_000_000, 187_000_000);
        Assert.InRange(json["weight_bytes_read_per_token"]!.GetValue<long>(), 372_000_000, 374_000_000);
        Assert.Equal(1, json["attention_layers"]!.GetValue<int>());
        Assert.Equal("attention", json["layers"]![4]!["mixer"]!.GetValue<string>());
        Assert.Equal(4, json["moe_layers"]!.GetValue<int>());
    }

    [Fact]
    public void Tokenize_json_has_ids_and_pieces()
    {
        var r = CliRunner.Run("tokenize", "--model", _text.Folder, "--text", "Call me Ishmael.", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var json = JsonNode.Parse(r.Out)!;
        var ids = json["ids"]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();
        var pieces = json["pieces"]!.AsArray().Select(n => n!.GetValue<string>()).ToArray();
        var tokenizer = Inference.Tokenization.JambaTokenizer.Load(_text.Folder);
        Assert.Equal(tokenizer.Encode("Call me Ishmael."), ids);
        Assert.Equal(ids.Length, pieces.Length);
        Assert.Equal(ids.Length, json["count"]!.GetValue<int>());
        Assert.Equal(tokenizer.BosTokenId, ids[0]);

        var raw = CliRunner.Run("tokenize", "--model", _text.Folder, "--text", "Call me Ishmael.", "--no-special", "--json");
        Assert.Equal(ids.Skip(1), JsonNode.Parse(raw.Out)!["ids"]!.AsArray().Select(n => n!.GetValue<int>()));
    }

    [Fact]
    public void Tokenize_table_shows_pieces()
    {
        var r = CliRunner.Run("tokenize", "--model", _text.Folder, "--text", "Call me");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("tokens", r.Out);
        Assert.Contains("piece", r.Out);
    }

    public static TheoryData<string> Configs()
    {
        var data = new TheoryData<string>();
        foreach (var f in FixturePaths.ModelFixtures()) data.Add(File.ReadAllText(Path.Combine(f, "config.json")));
        data.Add(TextModelFixture.ConfigJson);
        data.Add(Presets.Json["long"]);
        // Variants: tied embeddings, projection biases, no conv bias, dense only, auto dt_rank.
        data.Add("""
            {"model_type":"jamba","vocab_size":300,"hidden_size":48,"intermediate_size":40,"num_hidden_layers":3,"num_attention_heads":6,
             "num_key_value_heads":3,"num_experts":1,"attn_layer_period":3,"attn_layer_offset":2,"tie_word_embeddings":true,
             "mamba_proj_bias":true,"mamba_conv_bias":false,"mamba_d_state":4,"mamba_d_conv":3,"mamba_expand":3,"mamba_dt_rank":"auto"}
            """);
        data.Add("""
            {"model_type":"jamba","vocab_size":200,"hidden_size":32,"intermediate_size":24,"num_hidden_layers":4,"num_attention_heads":4,
             "num_key_value_heads":4,"num_experts":3,"num_experts_per_tok":1,"expert_layer_period":1,"expert_layer_offset":0,
             "attn_layer_period":1,"attn_layer_offset":0,"mamba_dt_rank":2}
            """);
        return data;
    }

    /// <summary>info counts parameters from the config alone; they must equal a built model's.</summary>
    [Theory]
    [MemberData(nameof(Configs))]
    public void Parameter_arithmetic_matches_a_built_model(string configJson)
    {
        var config = JambaConfig.Parse(configJson);
        using var model = new Inference.Modeling.JambaForCausalLM(config, new Inference.Modeling.ModelOptions { DType = Inference.Modeling.ComputeDType.Float32 });
        Assert.Equal(model.ParameterCount, ModelArithmetic.TotalParameters(config));
        Assert.Equal(model.ActiveParameterCount, ModelArithmetic.ActiveParameters(config));
        for (int i = 0; i < config.NumHiddenLayers; i++)
            Assert.Equal(model.model.layers[i].parameters().Sum(p => p.numel()), ModelArithmetic.LayerParameters(config, i));
    }
}
