using System.Text.Json.Nodes;
using Jamba.Inference.Config;
using Jamba.Inference.Engine;
using Jamba.Inference.Modeling;
using TorchSharp;
using Xunit;

namespace Jamba.Cli.Tests;

public sealed class InitBenchTests
{
    private const string TinyConfig = """
        {"model_type":"jamba","vocab_size":256,"hidden_size":32,"intermediate_size":40,"num_hidden_layers":4,
         "num_attention_heads":4,"num_key_value_heads":2,"num_experts":4,"num_experts_per_tok":2,
         "attn_layer_period":2,"attn_layer_offset":1,"expert_layer_period":2,"expert_layer_offset":1,
         "mamba_d_state":8,"mamba_d_conv":4,"mamba_expand":2,"mamba_dt_rank":4}
        """;

    [Theory]
    [InlineData("f32")]
    [InlineData("bf16")]
    public async Task Init_writes_a_checkpoint_that_loads_with_the_seeded_weights(string dtype)
    {
        using var dir = new TempDir();
        string configFile = Path.Combine(dir.Path, "tiny.json");
        File.WriteAllText(configFile, TinyConfig);
        string outDir = Path.Combine(dir.Path, "ckpt");
        var r = CliRunner.Run("init", "--config", configFile, "--out", outDir, "--dtype", dtype, "--seed", "5");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("Wrote", r.Out);
        Assert.True(File.Exists(Path.Combine(outDir, "model.safetensors")));
        var written = JambaConfig.Load(outDir);
        Assert.Equal(dtype == "bf16" ? "bfloat16" : "float32", written.TorchDtype);

        // The stored weights are the seeded initialisation, rounded to the storage dtype.
        var storage = dtype == "bf16" ? torch.ScalarType.BFloat16 : torch.ScalarType.Float32;
        using var reference = new JambaForCausalLM(JambaConfig.Parse(TinyConfig), new ModelOptions { DType = ComputeDType.Float32 });
        JambaInitializer.Initialize(reference, 5);
        using var loaded = JambaForCausalLM.FromPretrained(outDir, new ModelOptions { DType = ComputeDType.Float32 });
        var expected = reference.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in loaded.named_parameters())
        {
            using var want = expected[name].to(storage).to(torch.ScalarType.Float32);
            Assert.True(want.eq(p).all().item<bool>(), name);
        }

        // And the CLI runs it.
        await using (var handle = await JambaModelHandle.LoadAsync(outDir))
            Assert.Equal(reference.ParameterCount, handle.ParameterCount);
        var gen = CliRunner.Run("generate", "--model", outDir, "--prompt-ids", "1,2,3", "--max-new-tokens", "3", "--temperature", "0", "--ignore-eos", "--json");
        Assert.True(gen.ExitCode == 0, gen.ToString());
        Assert.Equal(3, JsonNode.Parse(gen.Out)!["tokens"]!.AsArray().Count);
    }

    [Fact]
    public void Init_refuses_to_overwrite_without_force_and_copies_tokenizers()
    {
        using var dir = new TempDir();
        string configFile = Path.Combine(dir.Path, "tiny.json");
        File.WriteAllText(configFile, TinyConfig.Replace("\"vocab_size\":256", "\"vocab_size\":1500"));
        string outDir = Path.Combine(dir.Path, "ckpt");
        Assert.Equal(0, CliRunner.Run("init", "--config", configFile, "--out", outDir).ExitCode);
        var again = CliRunner.Run("init", "--config", configFile, "--out", outDir);
        Assert.Equal(1, again.ExitCode);
        Assert.Contains("--force", again.Error);

        string tokenizerDir = Path.Combine(AppContext.BaseDirectory, "TestData");
        var forced = CliRunner.Run("init", "--config", configFile, "--out", outDir, "--force", "--seed", "2", "--tokenizer-from", tokenizerDir);
        Assert.True(forced.ExitCode == 0, forced.ToString());
        Assert.True(File.Exists(Path.Combine(outDir, "tokenizer.model")));
        var text = CliRunner.Run("generate", "--model", outDir, "--prompt", "Call me", "--max-new-tokens", "3", "--temperature", "0", "--ignore-eos", "--json");
        Assert.True(text.ExitCode == 0, text.ToString());
        Assert.NotNull(JsonNode.Parse(text.Out)!["text"]);
    }

    [Fact]
    public void Init_preset_long_matches_info_on_the_preset()
    {
        using var dir = new TempDir();
        string outDir = Path.Combine(dir.Path, "long");
        var r = CliRunner.Run("init", "--preset", "long", "--out", outDir);
        Assert.True(r.ExitCode == 0, r.ToString());
        var config = JambaConfig.Load(outDir);
        Assert.Equal(256, config.HiddenSize);
        Assert.Equal(32768, config.VocabSize);
        Assert.Equal("bfloat16", config.TorchDtype);
        Assert.Equal(JambaMixerKind.Attention, config.MixerKind(4));
        Assert.Equal(1, config.NumAttentionLayers);
        var fromFolder = JsonNode.Parse(CliRunner.Run("info", "--model", outDir, "--json").Out)!;
        var fromPreset = JsonNode.Parse(CliRunner.Run("info", "--preset", "long", "--json").Out)!;
        Assert.Equal(fromPreset["total_parameters"]!.GetValue<long>(), fromFolder["total_parameters"]!.GetValue<long>());
        Assert.Equal(fromPreset["layers"]!.ToJsonString(), fromFolder["layers"]!.ToJsonString());
    }

    [Fact]
    public void Bench_json_has_prefill_decode_streams_snapshot_and_memory()
    {
        var r = CliRunner.Run("bench", "--model", FixturePaths.AnyModelFixture(), "--dtype", "f32", "--prompt-tokens", "8,24", "--new-tokens", "4",
            "--streams", "1,2", "--snapshot-ttft", "32", "--no-warmup", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var json = JsonNode.Parse(r.Out)!.AsObject();
        var prefill = json["prefill"]!.AsArray();
        Assert.Equal([8, 24], prefill.Select(p => p!["prompt_tokens"]!.GetValue<int>()));
        Assert.All(prefill, p =>
        {
            Assert.True(p!["prefill_tokens_per_second"]!.GetValue<double>() > 0);
            Assert.True(p["decode_tokens_per_second"]!.GetValue<double>() > 0);
        });
        var streams = json["streams"]!.AsArray();
        Assert.Equal([1, 2], streams.Select(s => s!["streams"]!.GetValue<int>()));
        Assert.All(streams, s => Assert.True(s!["aggregate_decode_tokens_per_second"]!.GetValue<double>() > 0));
        var snap = json["snapshot_ttft"]!;
        Assert.Equal(32, snap["prefix_tokens"]!.GetValue<int>());
        Assert.True(snap["cold_seconds"]!.GetValue<double>() > 0);
        Assert.True(snap["snapshot_seconds"]!.GetValue<double>() > 0);
        Assert.True(snap["snapshot_bytes"]!.GetValue<long>() > 0);
        Assert.Equal("f32", json["dtype"]!.GetValue<string>());
        foreach (var key in new[] { "weight_bytes", "weight_bytes_read_per_token", "kv_bytes_per_token", "threads", "load_seconds" })
            Assert.True(json.ContainsKey(key), key);
        if (OperatingSystem.IsLinux())
            Assert.True(json["peak_rss_bytes"]!.GetValue<long>() >= json["rss_after_load_bytes"]!.GetValue<long>());
    }

    [Fact]
    public void Bench_table_output()
    {
        var r = CliRunner.Run("bench", "--model", FixturePaths.AnyModelFixture(), "--prompt-tokens", "8", "--new-tokens", "3", "--streams", "2", "--threads", "1");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("prefill tok/s", r.Out);
        Assert.Contains("aggregate decode tok/s", r.Out);
        Assert.Contains("peak RSS", r.Out);
    }
}
