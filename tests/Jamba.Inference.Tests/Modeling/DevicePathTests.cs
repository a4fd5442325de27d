using Jamba.Inference.Caching;
using Jamba.Inference.Engine;
using Jamba.Inference.Generation;
using Jamba.Inference.Modeling;
using Jamba.Inference.Tests.Fixtures;
using Xunit;
using Xunit.Abstractions;
using static Jamba.Inference.Tests.Fixtures.ModelTestHelpers;
using static TorchSharp.torch;

namespace Jamba.Inference.Tests;

/// <summary>
/// The device path (every CPU kernel off, per model through <see cref="ModelOptions.CpuKernels"/>): the setting reaches
/// the forward without touching the process switch, and a decode step reads from the device exactly once (its logits) —
/// MoE routing, masks and positions stay on the device.
/// </summary>
[Trait("Category", "Generation")]
public sealed class DevicePathTests(ITestOutputHelper output)
{
    public static TheoryData<ModelFixtureName> Fixtures => FixtureRoots.ModelFixtures();

    private sealed class SwitchProbe : IForwardObserver
    {
        public readonly List<bool> Seen = [];
        public void OnEmbeddings(Tensor hidden) => Seen.Add(CpuKernels.Enabled);
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void TheModelsSettingHoldsDuringItsForwardsOnly(ModelFixtureName fixtureName)
    {
        var fx = ModelFixture.Load(fixtureName.Path);
        bool process = CpuKernels.Enabled;
        using var device = LoadFp32(fx.Folder, ForwardPath.Device);
        using var kernels = JambaForCausalLM.FromPretrained(fx.Folder, new ModelOptions { DType = ComputeDType.Float32, CpuKernels = true });
        using var follows = LoadFp32(fx.Folder);
        Assert.Equal(false, device.CpuKernels);
        Assert.Null(follows.CpuKernels);
        var probe = new SwitchProbe();
        using (var scope = NewDisposeScope())
        {
            var ids = Ids([fx.Batch1.InputIds[0]]);
            device.Forward(ids, observer: probe);
            kernels.Forward(ids, observer: probe);
            follows.Forward(ids, observer: probe);
        }
        Assert.Equal([false, true, process], probe.Seen);
        Assert.Equal(process, CpuKernels.Enabled);
        using (CpuKernels.Use(false))
        {
            Assert.False(CpuKernels.Enabled);
            using (CpuKernels.Use(null)) Assert.False(CpuKernels.Enabled);
            using (CpuKernels.Use(true)) Assert.True(CpuKernels.Enabled);
            Assert.False(CpuKernels.Enabled);
        }
        Assert.Equal(process, CpuKernels.Enabled);
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void ADecodeStepReadsFromTheDeviceOnce(ModelFixtureName fixtureName)
    {
        var fx = ModelFixture.Load(fixtureName.Path);
        using var model = LoadFp32(fx.Folder, ForwardPath.Device);
        // The forward itself, batch 1 and a batch of independent sequences: no reads at all.
        var caches = Enumerable.Range(0, 4).Select(_ => model.CreateCache(1)).ToArray();
        try
        {
            for (int b = 0; b < caches.Length; b++)
                using (var scope = NewDisposeScope())
                    model.Forward(Ids([fx.Batch1.InputIds[0][..(3 + b)]]), null, caches[b]);
            long before = HostReads.Count;
            for (int step = 0; step < 3; step++)
                using (var scope = NewDisposeScope())
                {
                    model.Forward(Ids([[5 + step]]), null, caches[0]);
                    model.Forward(Ids([[7], [8], [9], [10]]), null, new CacheBatch(caches));
                }
            Assert.Equal(0, HostReads.Count - before);
        }
        finally
        {
            foreach (var c in caches) c.Dispose();
        }
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public async Task TheEngineReadsOncePerGeneratedToken(ModelFixtureName fixtureName)
    {
        var fx = ModelFixture.Load(fixtureName.Path);
        using var model = LoadFp32(fx.Folder, ForwardPath.Device);
        using var engine = new JambaEngine(model, options: new EngineOptions { PrefixCacheBytes = 0 });
        var prompt = fx.Batch1.InputIds[0].Select(t => (int)t).ToArray();
        var options = new GenerationOptions { Temperature = 0, MaxNewTokens = fx.MaxNewTokens, IgnoreEos = true };
        long before = HostReads.Count;
        var result = await engine.GenerateTextAsync(new GenerationRequest(prompt, options));
        long reads = HostReads.Count - before;
        output.WriteLine($"{fx.Name}: {reads} device→host reads for {result.Tokens.Count} tokens (prompt {prompt.Length})");
        Assert.Equal(fx.MaxNewTokens, result.Tokens.Count);
        Assert.Equal(result.Tokens.Count, reads); // the prefill's logits, then one per decode step
        Assert.Equal(fx.Batch1.GreedyNewTokens[0].Select(t => (int)t), result.Tokens);
    }

    /// <summary>The device-side routing (gathered experts for a few tokens, every expert with zero weights for more) equals
    /// the routing read on the host, for every token count around the switch points.</summary>
    [Theory]
    [MemberData(nameof(Fixtures))]
    public void DeviceRoutingEqualsHostRouting(ModelFixtureName fixtureName)
    {
        var fx = ModelFixture.Load(fixtureName.Path);
        using var model = LoadFp32(fx.Folder);
        var moe = model.model.layers.Select(l => l.feed_forward).OfType<JambaSparseMoeBlock>().First();
        manual_seed(5);
        foreach (long tokens in new long[] { 1, 2, 3, 4, 9, 64, 65 })
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var x = randn(1, tokens, model.Config.HiddenSize) * 2;
            Tensor host, device;
            using (CpuKernels.Use(true)) host = moe.forward(x);
            long before = HostReads.Count;
            using (CpuKernels.Use(false)) device = moe.forward(x);
            long reads = HostReads.Count - before;
            double diff = (host - device).abs().max().item<float>();
            output.WriteLine($"{fx.Name} {tokens} tokens: max |Δ| {diff:E2}, {reads} host reads");
            Assert.True(diff <= 1e-5, $"{fx.Name} {tokens} tokens: outputs differ by {diff}");
            Assert.Equal(tokens <= JambaSparseMoeBlock.DeviceRoutingMaxTokens ? 0 : 1, reads);
        }
    }
}
