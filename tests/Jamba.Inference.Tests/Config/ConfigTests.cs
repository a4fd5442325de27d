using Jamba.Inference.Config;
using Xunit;

namespace Jamba.Inference.Tests;

public sealed class ConfigTests
{
    [Fact]
    public void AbsentFieldsTakeTransformersDefaults()
    {
        var c = JambaConfig.Parse("{\"model_type\": \"jamba\"}");
        Assert.Equal(65536, c.VocabSize);
        Assert.Equal(4096, c.HiddenSize);
        Assert.Equal(14336, c.IntermediateSize);
        Assert.Equal(32, c.NumHiddenLayers);
        Assert.Equal(32, c.NumAttentionHeads);
        Assert.Equal(8, c.NumKeyValueHeads);
        Assert.Equal(16, c.NumExperts);
        Assert.Equal(2, c.NumExpertsPerTok);
        Assert.Equal((8, 4, 2, 1), (c.AttnLayerPeriod, c.AttnLayerOffset, c.ExpertLayerPeriod, c.ExpertLayerOffset));
        Assert.Equal(256, c.MambaDtRank); // "auto" = ceil(4096/16)
        Assert.Equal([2], c.EosTokenIds);
        Assert.Equal(262144, c.MaxPositionEmbeddings);
        Assert.True(c.MambaConvBias);
        Assert.False(c.MambaProjBias);
        Assert.False(c.TieWordEmbeddings);
    }

    [Fact]
    public void ScheduleFollowsTheHfRule()
    {
        var c = JambaConfig.Parse("{\"num_hidden_layers\": 16, \"attn_layer_period\": 8, \"attn_layer_offset\": 4, \"num_experts\": 16, \"expert_layer_period\": 2, \"expert_layer_offset\": 1}");
        Assert.Equal([4, 12], Enumerable.Range(0, 16).Where(i => c.MixerKind(i) == JambaMixerKind.Attention));
        Assert.Equal(Enumerable.Range(0, 8).Select(i => 2 * i + 1), Enumerable.Range(0, 16).Where(c.IsMoeLayer));
        var dense = JambaConfig.Parse("{\"num_experts\": 1}");
        Assert.DoesNotContain(Enumerable.Range(0, dense.NumHiddenLayers), dense.IsMoeLayer);
    }

    [Theory]
    [InlineData("{\"mamba_dt_rank\": \"auto\", \"hidden_size\": 1000, \"num_attention_heads\": 8, \"num_key_value_heads\": 4}", 63)]
    [InlineData("{\"mamba_dt_rank\": 7}", 7)]
    public void DtRankAutoIsCeilHiddenOver16(string json, int expected) => Assert.Equal(expected, JambaConfig.Parse(json).MambaDtRank);

    [Fact]
    public void NullKeyValueHeadsMeansMultiHead() =>
        Assert.Equal(32, JambaConfig.Parse("{\"num_key_value_heads\": null}").NumKeyValueHeads);

    [Fact]
    public void EosMayBeAList() => Assert.Equal([2, 518], JambaConfig.Parse("{\"eos_token_id\": [2, 518]}").EosTokenIds);

    [Theory]
    [InlineData("{\"attn_layer_offset\": 8}", "attn_layer_offset", "attn_layer_period")]
    [InlineData("{\"expert_layer_period\": 2, \"expert_layer_offset\": 2}", "expert_layer_offset", "expert_layer_period")]
    [InlineData("{\"hidden_size\": 100, \"num_attention_heads\": 32}", "num_attention_heads", "divisible")]
    [InlineData("{\"num_attention_heads\": 32, \"num_key_value_heads\": 5}", "num_key_value_heads", "divisible")]
    [InlineData("{\"hidden_size\": 0}", "hidden_size", "positive")]
    [InlineData("{\"num_hidden_layers\": -1}", "num_hidden_layers", "positive")]
    [InlineData("{\"hidden_act\": \"tanhshrink\"}", "hidden_act", "unknown activation")]
    [InlineData("{\"mamba_dt_rank\": \"big\"}", "mamba_dt_rank", "\"auto\"")]
    [InlineData("{\"hidden_size\": \"4096\"}", "hidden_size", "integer")]
    [InlineData("{\"num_experts\": 4, \"num_experts_per_tok\": 5}", "num_experts_per_tok", "at most")]
    [InlineData("{\"model_type\": \"llama\"}", "model_type", "jamba")]
    [InlineData("{\"vocab_size\": 10, \"eos_token_id\": 10}", "eos_token_id", "vocab_size")]
    [InlineData("{\"rms_norm_eps\": 0}", "rms_norm_eps", "positive")]
    [InlineData("{not json", "(file)", "JSON")]
    public void InvalidValuesNameTheFieldAndTheRule(string json, string field, string rule)
    {
        var ex = Assert.Throws<JambaConfigException>(() => JambaConfig.Parse(json, "test/config.json"));
        Assert.Equal(field, ex.Field);
        Assert.Contains(rule, ex.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("test/config.json", ex.Message);
    }

    [Fact]
    public void EveryFixtureConfigRoundTripsThroughToJson()
    {
        foreach (var folder in FixtureRoots.Folders("models"))
        {
            var c = JambaConfig.Load(folder);
            var again = JambaConfig.Parse(c.ToJson());
            Assert.Equal(c with { SourcePath = null, EosTokenIds = [] }, again with { SourcePath = null, EosTokenIds = [] });
            Assert.Equal(c.EosTokenIds, again.EosTokenIds);
        }
    }
}
