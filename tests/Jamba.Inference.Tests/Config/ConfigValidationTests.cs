using System.Diagnostics;
using System.Text.Json.Nodes;
using Jamba.Inference.Checkpoint;
using Jamba.Inference.Config;
using Jamba.Inference.Modeling;
using Jamba.Inference.Tests.Fixtures;
using Xunit;

namespace Jamba.Inference.Tests.Config;

/// <summary>config.json is validated on its own (types, ranges, overflow) and against the checkpoint's tensors
/// before any module is allocated: wrong sizes fail fast, naming config.json, the field, the value found and the one expected.</summary>
public sealed class ConfigValidationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("jamba-cfg-").FullName;
    private readonly string _checkpoint;

    public ConfigValidationTests()
    {
        _checkpoint = HostileInputs.WriteCheckpoint(Path.Combine(_dir, "base"));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A copy of the checkpoint whose config.json has <paramref name="field"/> set to <paramref name="value"/> (JSON text; null removes it).</summary>
    private string WithConfig(string field, string? value)
    {
        string folder = HostileInputs.CopyFolder(_checkpoint, Path.Combine(_dir, $"c{Guid.NewGuid():N}"));
        string config = Path.Combine(folder, "config.json");
        var json = JsonNode.Parse(File.ReadAllText(config))!.AsObject();
        if (value is null) json.Remove(field);
        else json[field] = JsonNode.Parse(value);
        File.WriteAllText(config, json.ToJsonString());
        return folder;
    }

    private static JambaConfigException LoadFails(string folder, string field, params string[] contains)
    {
        long before = HostileInputs.LiveTensors;
        var sw = Stopwatch.StartNew();
        var ex = Assert.Throws<JambaConfigException>(() => JambaForCausalLM.FromPretrained(folder, new ModelOptions { DType = ComputeDType.Float32 }));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"took {sw.Elapsed}");
        Assert.Equal(before, HostileInputs.LiveTensors);
        Assert.Equal(field, ex.Field);
        Assert.Equal(Path.Combine(folder, "config.json"), ex.Source);
        Assert.Contains("config.json", ex.Message);
        Assert.Contains($"field '{field}'", ex.Message);
        foreach (var c in contains) Assert.Contains(c, ex.Message);
        return ex;
    }

    [Theory]
    [InlineData("num_hidden_layers", "100000", "is 100000", "implies 4", "model.layers.3", "none of model.layers.4")]
    [InlineData("num_hidden_layers", "2", "is 2", "implies 4")]
    [InlineData("hidden_size", "64", "is 64", "implies 16", "model.embed_tokens.weight is [1500, 16]")]
    [InlineData("vocab_size", "65536", "is 65536", "implies 1500")]
    [InlineData("intermediate_size", "2000000", "is 2000000", "implies 24")]
    [InlineData("num_experts", "512", "is 512", "implies 4", "router.weight is [4, 16]")]
    [InlineData("mamba_d_state", "64", "is 64", "implies 4", "A_log")]
    [InlineData("mamba_d_conv", "16", "is 16", "implies 4", "conv1d.weight")]
    [InlineData("mamba_dt_rank", "8", "is 8", "implies 2", "dt_proj.weight")]
    [InlineData("mamba_expand", "4", "is 4", "in_proj.weight is [64, 16]", "(mamba_expand 2)")]
    [InlineData("num_key_value_heads", "4", "is 4", "k_proj.weight is [8, 16]", "(2 key/value heads)")]
    [InlineData("attn_layer_offset", "0", "make layer 0 an attention layer", "layer 0 is a mamba layer")]
    [InlineData("expert_layer_offset", "0", "make layer 0 a mixture of experts", "has no model.layers.0.feed_forward.router.weight")]
    [InlineData("num_experts", "1", "make layer 1 a dense MLP", "a mixture of 4 experts")]
    [InlineData("tie_word_embeddings", "true", "lm_head.weight")]
    [InlineData("mamba_conv_bias", "false", "is false", "implies true")]
    [InlineData("mamba_proj_bias", "true", "is true", "implies false")]
    public void SizesThatDisagreeWithTheTensorsFailBeforeAllocating(string field, string value, params string[] contains)
    {
        if (field == "tie_word_embeddings")
        {
            // A tied config on an untied checkpoint: lm_head.weight is ignored, as transformers does, so this loads.
            using var model = JambaForCausalLM.FromPretrained(WithConfig(field, value), new ModelOptions { DType = ComputeDType.Float32 });
            Assert.Null(model.lm_head);
            return;
        }
        LoadFails(WithConfig(field, value), field, contains);
    }

    [Fact]
    public void UntiedConfigOnATiedCheckpointNamesTieWordEmbeddings()
    {
        string folder = HostileInputs.WriteCheckpoint(Path.Combine(_dir, "tied"), HostileInputs.TinyConfig(tied: true));
        string config = Path.Combine(folder, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false"));
        LoadFails(folder, "tie_word_embeddings", "no lm_head.weight");
    }

    [Theory]
    [InlineData("vocab_size", "0")]
    [InlineData("vocab_size", "-5")]
    [InlineData("hidden_size", "-16")]
    [InlineData("intermediate_size", "0")]
    [InlineData("num_hidden_layers", "-1")]
    [InlineData("num_attention_heads", "0")]
    [InlineData("num_key_value_heads", "-2")]
    [InlineData("num_experts", "0")]
    [InlineData("num_experts_per_tok", "-1")]
    [InlineData("expert_layer_period", "0")]
    [InlineData("attn_layer_period", "-2")]
    [InlineData("mamba_d_state", "0")]
    [InlineData("mamba_d_conv", "-4")]
    [InlineData("mamba_expand", "0")]
    [InlineData("mamba_dt_rank", "-2")]
    [InlineData("max_position_embeddings", "0")]
    [InlineData("sliding_window", "0")]
    [InlineData("attn_layer_offset", "-1")]
    [InlineData("expert_layer_offset", "7")]
    [InlineData("num_logits_to_keep", "-3")]
    [InlineData("pad_token_id", "-1")]
    [InlineData("pad_token_id", "1500")]
    [InlineData("bos_token_id", "99999")]
    [InlineData("eos_token_id", "[2, 1500]")]
    [InlineData("eos_token_id", "[2, \"3\"]")]
    [InlineData("eos_token_id", "-7")]
    [InlineData("rms_norm_eps", "0")]
    [InlineData("rms_norm_eps", "-1e-6")]
    [InlineData("rms_norm_eps", "1e400")]
    [InlineData("initializer_range", "-0.5")]
    [InlineData("router_aux_loss_coef", "-1e309")]
    [InlineData("attention_dropout", "1.5")]
    [InlineData("num_experts_per_tok", "9")]
    [InlineData("hidden_act", "\"tanhh\"")]
    [InlineData("model_type", "\"llama\"")]
    [InlineData("mamba_d_conv", "1000000")]
    [InlineData("mamba_d_state", "100000")]
    public void NegativeZeroAndOutOfRangeValuesNameTheField(string field, string value) => LoadFails(WithConfig(field, value), field);

    [Theory]
    [InlineData("hidden_size", "\"16\"", "expected an integer")]
    [InlineData("hidden_size", "16.5", "expected an integer")]
    [InlineData("hidden_size", "3000000000", "expected an integer between")]
    [InlineData("num_hidden_layers", "1e30", "expected an integer")]
    [InlineData("num_hidden_layers", "true", "expected an integer")]
    [InlineData("num_hidden_layers", "[4]", "found an array")]
    [InlineData("num_hidden_layers", "{\"n\": 4}", "found an object")]
    [InlineData("rms_norm_eps", "\"1e-6\"", "expected a finite number")]
    [InlineData("tie_word_embeddings", "0", "expected true or false")]
    [InlineData("hidden_act", "7", "expected a string")]
    [InlineData("mamba_dt_rank", "\"big\"", "expected an integer or \"auto\"")]
    public void WrongJsonTypesNameTheFieldAndWhatWasExpected(string field, string value, string message) =>
        LoadFails(WithConfig(field, value), field, message);

    [Fact]
    public void ProductsOfSizesThatOverflowAreRejected()
    {
        var ex = Assert.Throws<JambaConfigException>(() => JambaConfig.Parse("""{"hidden_size": 1073741824, "num_attention_heads": 65536, "num_key_value_heads": 8, "mamba_expand": 2}""", "config.json"));
        Assert.Equal("mamba_expand", ex.Field);
        Assert.Contains("32-bit", ex.Message);
        ex = Assert.Throws<JambaConfigException>(() => JambaConfig.Parse("""{"hidden_size": 16384, "num_attention_heads": 16, "num_key_value_heads": 8, "intermediate_size": 1073741824, "num_hidden_layers": 1073741824}""", "config.json"));
        Assert.Equal("num_hidden_layers", ex.Field);
        Assert.Contains("parameters", ex.Message);
        ex = Assert.Throws<JambaConfigException>(() => JambaConfig.Parse("""{"hidden_size": 1073741824, "num_attention_heads": 2, "num_key_value_heads": 1}""", "config.json"));
        Assert.Equal("num_attention_heads", ex.Field);
        Assert.Contains("head dimension", ex.Message);
        ex = Assert.Throws<JambaConfigException>(() => JambaConfig.Parse("""{"mamba_dt_rank": 2147483647, "mamba_d_state": 16}""", "config.json"));
        Assert.Equal("mamba_dt_rank", ex.Field);
    }

    [Fact]
    public void InvalidJsonDuplicateKeysAndDeepNestingNameConfigJson()
    {
        foreach (var (text, message) in new[]
                 {
                     ("{\"hidden_size\": 16,", "not valid JSON"),
                     ("{\"hidden_size\": 16, \"hidden_size\": 32}", "Duplicate property 'hidden_size'"),
                     ("{\"x\": " + new string('[', 100) + new string(']', 100) + "}", "depth"),
                     ("[]", "expected a JSON object"),
                 })
        {
            string folder = HostileInputs.CopyFolder(_checkpoint, Path.Combine(_dir, $"j{Guid.NewGuid():N}"));
            File.WriteAllText(Path.Combine(folder, "config.json"), text);
            var ex = LoadFails(folder, "(file)", message);
            Assert.Contains(Path.Combine(folder, "config.json"), ex.Message);
        }
        string bad = HostileInputs.CopyFolder(_checkpoint, Path.Combine(_dir, "utf8"));
        File.WriteAllBytes(Path.Combine(bad, "config.json"), [(byte)'{', (byte)'"', 0xFF, (byte)'"', (byte)':', (byte)'1', (byte)'}']);
        LoadFails(bad, "(file)", "not valid UTF-8");
    }

    [Fact]
    public void ExpectedShapesMatchTheModelsParametersAndCount()
    {
        foreach (var json in new[]
                 {
                     HostileInputs.TinyConfig().ToJson(),
                     HostileInputs.TinyConfig(tied: true).ToJson(),
                     """{"vocab_size":50,"hidden_size":8,"intermediate_size":12,"num_hidden_layers":5,"num_attention_heads":2,"num_key_value_heads":1,"num_experts":1,"attn_layer_period":3,"attn_layer_offset":2,"mamba_d_state":4,"mamba_d_conv":3,"mamba_expand":3,"mamba_dt_rank":"auto","mamba_conv_bias":false,"mamba_proj_bias":true}""",
                     """{"vocab_size":50,"hidden_size":8,"intermediate_size":12,"num_hidden_layers":3,"num_attention_heads":2,"num_key_value_heads":2,"num_experts":3,"num_experts_per_tok":1,"expert_layer_period":1,"expert_layer_offset":0,"attn_layer_period":1,"attn_layer_offset":0}""",
                 })
        {
            var config = JambaConfig.Parse(json);
            using var model = new JambaForCausalLM(config, new ModelOptions { DType = ComputeDType.Float32 });
            var actual = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
            var expected = CheckpointConfigCheck.ExpectedShapes(config);
            Assert.Equal(actual.Keys.Order(), expected.Keys.Order());
            foreach (var (name, shape) in actual) Assert.Equal(shape, expected[name]);
            Assert.Equal(model.ParameterCount, config.ParameterCount);
        }
    }

    [Fact]
    public void MissingLayersAndGapsAreNamed()
    {
        // A checkpoint whose layer 2 was dropped entirely: the hole is named, and nothing is allocated.
        string folder = HostileInputs.CopyFolder(_checkpoint, Path.Combine(_dir, "hole"));
        using (var model = JambaForCausalLM.FromPretrained(_checkpoint, new ModelOptions { DType = ComputeDType.Float32 }))
        {
            var keep = model.named_parameters().Where(p => !p.name.StartsWith("model.layers.2.", StringComparison.Ordinal))
                .ToDictionary(p => p.name, p => (TorchSharp.torch.Tensor)p.parameter);
            SafetensorsWriter.Write(Path.Combine(folder, "model.safetensors"), keep);
        }
        long before = HostileInputs.LiveTensors;
        var ex = Assert.Throws<JambaCheckpointException>(() => JambaForCausalLM.FromPretrained(folder));
        Assert.Equal("model.layers.2.*", ex.Tensor);
        Assert.Contains("no tensors for layer 2", ex.Message);
        Assert.Equal(before, HostileInputs.LiveTensors);
    }
}
