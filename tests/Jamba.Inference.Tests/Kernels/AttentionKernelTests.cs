using Jamba.Inference.Modeling;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Jamba.Inference.Tests;

public sealed class AttentionKernelTests
{
    [Theory]
    [InlineData(1, 1, 9000, false)]     // decode step over more than two key blocks
    [InlineData(2, 300, 5000, false)]   // a prefill chunk after a long prefix
    [InlineData(1, 64, 64, false)]      // a fresh prompt
    [InlineData(2, 300, 5000, true)]    // the same through the fused path (explicit mask after the prefix)
    [InlineData(1, 64, 64, true)]       // (is_causal from position 0)
    public void GroupedAttentionEqualsTheMaterialisedReference(int batch, int queries, int keys, bool fused)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(5);
        var q = torch.randn([batch, 8, queries, 16], generator: gen);
        var k = torch.randn([batch, 2, keys, 16], generator: gen);
        var v = torch.randn([batch, 2, keys, 16], generator: gen);
        var got = AttentionKernels.Attend(q, k, v, null, allowFused: fused);
        // reference: repeat K/V per query head, full causal mask offset by the prefix
        var kr = k.repeat_interleave(4, dim: 1);
        var vr = v.repeat_interleave(4, dim: 1);
        long past = keys - queries;
        var allowed = torch.arange(0, keys).view(1, keys).le(torch.arange(past, keys).view(queries, 1));
        var mask = torch.zeros(queries, keys).masked_fill(allowed.logical_not(), float.NegativeInfinity);
        var expected = nn.functional.scaled_dot_product_attention(q, kr, vr, attn_mask: mask);
        double diff = (got - expected).abs().max().item<float>();
        Assert.True(diff < 1e-5, $"max |Δ| {diff}");
    }
}
