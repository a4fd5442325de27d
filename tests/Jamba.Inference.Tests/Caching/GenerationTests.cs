using Jamba.Inference.Caching;
using Jamba.Inference.Engine;
using Jamba.Inference.Generation;
using Jamba.Inference.Modeling;
using Jamba.Inference.Tests.Fixtures;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static Jamba.Inference.Tests.Fixtures.ModelTestHelpers;
using static TorchSharp.torch;

namespace Jamba.Inference.Tests;

/// <summary>
/// The hybrid cache against transformers' fixtures: chunked prefill of any chunk size, incremental decoding,
/// padded and ragged batches, and the engine's greedy output. Same fixture discovery and tolerances as
/// <see cref="GoldenTests"/> (logits within 1e-4, tokens identical).
/// </summary>
[Trait("Category", "Generation")]
public sealed class GenerationTests(ITestOutputHelper output)
{
    private const double LogitTol = 1e-4;

    public static TheoryData<ModelFixtureName> Fixtures => FixtureRoots.ModelFixtures();

    /// <summary>Every fixture on the CPU kernels and on the device path (every kernel off).</summary>
    public static TheoryData<ModelFixtureName, ForwardPath> FixturesOnBothPaths => FixtureRoots.ModelFixturesOnBothPaths();

    public static readonly int[] ChunkSizes = [1, 3, 64, int.MaxValue];

    [Theory]
    [MemberData(nameof(FixturesOnBothPaths))]
    public void ChunkedPrefillOfAnySizeEqualsOneForward(ModelFixtureName fixtureName, ForwardPath path)
    {
        var fx = ModelFixture.Load(fixtureName.Path);
        using var model = LoadFp32(fx.Folder, path);
        var prompt = fx.Batch1.InputIds[0];
        var seq = fx.Batch1.Sequences[0];
        foreach (int chunk in ChunkSizes)
        {
            using var cache = model.CreateCache(1);
            var rows = new List<float[]>();
            for (int start = 0; start < prompt.Length; start += chunk)
            {
                using var scope = NewDisposeScope();
                int n = Math.Min(chunk, prompt.Length - start);
                var logits = model.Forward(Ids([prompt[start..(start + n)]]), null, cache, LogitPositions.All); // [1, n, V]
                for (int t = 0; t < n; t++) rows.Add(logits[0, t].cpu().data<float>().ToArray());
            }
            Assert.Equal(prompt.Length, cache.Length);
            for (int t = 0; t < prompt.Length; t++)
            {
                double d = MaxDiff(seq.LogitsFirst8[t]!, rows[t].AsSpan(0, 8));
                Assert.True(d <= LogitTol, $"{fx.Name} chunk {chunk}: logits_first8[{t}] off by {d:E3}");
                Assert.True(seq.Argmax[t] == LogitsSampler.ArgMax(rows[t]), $"{fx.Name} chunk {chunk}: argmax[{t}] expected {seq.Argmax[t]}, got {LogitsSampler.ArgMax(rows[t])}");
            }
            double last = MaxDiff(seq.LastLogits, rows[^1]);
            Assert.True(last <= LogitTol, $"{fx.Name} chunk {chunk}: last_logits off by {last:E3}");
            // and the greedy continuation from the chunk-built cache
            var produced = DecodeGreedy(model, cache, rows[^1], fx.MaxNewTokens, out _);
            Assert.True(fx.Batch1.GreedyNewTokens[0].SequenceEqual(produced), $"{fx.Name} chunk {chunk}: greedy [{string.Join(",", produced)}] != [{string.Join(",", fx.Batch1.GreedyNewTokens[0])}]");
            output.WriteLine($"{fx.Name} chunk {chunk}: last-logit |Δ| {last:E2}");
        }
    }

    [Theory]
    [MemberData(nameof(FixturesOnBothPaths))]
    public void IncrementalDecodingReproducesGreedyTokensAndStepLogits(ModelFixtureName fixtureName, ForwardPath path)
    {
        var fx = ModelFixture.Load(fixtureName.Path);
        using var model = LoadFp32(fx.Folder, path);
        foreach (var (name, batch) in fx.Batches)
        {
            using var cache = model.CreateCache(batch.BatchSize);
            var mask = batch.AttentionMask.Select(r => r.ToList()).ToArray();
            float[][] lastRows;
            using (var scope = NewDisposeScope())
            {
                var logits = model.Forward(Ids(batch.InputIds), batch.HasPadding ? Ids(batch.AttentionMask) : null, cache, LogitPositions.Last);
                lastRows = Enumerable.Range(0, batch.BatchSize).Select(b => logits[b, 0].cpu().data<float>().ToArray()).ToArray();
            }
            var produced = batch.InputIds.Select(_ => new List<long>()).ToArray();
            for (int step = 0; step < fx.MaxNewTokens; step++)
            {
                for (int b = 0; b < batch.BatchSize; b++)
                {
                    if (batch.GreedySteps.Length > step)
                    {
                        var top5 = lastRows[b].OrderDescending().Take(5).ToArray();
                        double d = MaxDiff(batch.GreedySteps[step][b], top5);
                        Assert.True(d <= LogitTol, $"{fx.Name} {name} row {b} step {step}: top-5 logits off by {d:E3} from the full re-forward");
                    }
                    produced[b].Add(LogitsSampler.ArgMax(lastRows[b]));
                    mask[b].Add(1);
                }
                using var scope = NewDisposeScope();
                var next = Ids(produced.Select(p => new[] { p[^1] }).ToArray());
                Tensor? m = batch.HasPadding ? Ids(mask.Select(r => r.ToArray()).ToArray()) : null;
                var logits = model.Forward(next, m, cache, LogitPositions.Last);
                lastRows = Enumerable.Range(0, batch.BatchSize).Select(b => logits[b, 0].cpu().data<float>().ToArray()).ToArray();
            }
            for (int b = 0; b < batch.BatchSize; b++)
                Assert.True(batch.GreedyNewTokens[b].SequenceEqual(produced[b]), $"{fx.Name} {name} row {b}: greedy [{string.Join(",", produced[b])}] != [{string.Join(",", batch.GreedyNewTokens[b])}]");
        }
    }

    [Theory]
    [MemberData(nameof(FixturesOnBothPaths))]
    public void RaggedBatchOfDifferentLengthsEqualsEachAlone(ModelFixtureName fixtureName, ForwardPath path)
    {
        var fx = ModelFixture.Load(fixtureName.Path);
        using var model = LoadFp32(fx.Folder, path);
        // The two prompts of batch2, unpadded, prefilled separately, then decoded together in one CacheBatch.
        var prompts = fx.Batch2.InputIds.Select((r, b) => r[fx.Batch2.Sequences[b].NumPad..]).ToArray();
        var caches = prompts.Select(_ => model.CreateCache(1)).ToArray();
        try
        {
            var last = new float[prompts.Length][];
            for (int b = 0; b < prompts.Length; b++)
            {
                using var scope = NewDisposeScope();
                last[b] = model.Forward(Ids([prompts[b]]), null, caches[b], LogitPositions.Last).cpu().data<float>().ToArray();
            }
            var produced = prompts.Select(_ => new List<long>()).ToArray();
            for (int step = 0; step < fx.MaxNewTokens; step++)
            {
                for (int b = 0; b < prompts.Length; b++) produced[b].Add(LogitsSampler.ArgMax(last[b]));
                using var scope = NewDisposeScope();
                var logits = model.Forward(Ids(produced.Select(p => new[] { p[^1] }).ToArray()), null, new CacheBatch(caches), LogitPositions.Last);
                for (int b = 0; b < prompts.Length; b++) last[b] = logits[b, 0].cpu().data<float>().ToArray();
            }
            for (int b = 0; b < prompts.Length; b++)
                Assert.True(fx.Batch2.GreedyNewTokens[b].SequenceEqual(produced[b]), $"{fx.Name} ragged row {b}: [{string.Join(",", produced[b])}] != [{string.Join(",", fx.Batch2.GreedyNewTokens[b])}]");
        }
        finally
        {
            foreach (var c in caches) c.Dispose();
        }
    }

    /// <summary>A request the engine has to itself is prefilled in <see cref="EngineOptions.SoloPrefillChunkTokens"/> chunks, and
    /// the result does not depend on the chunking.</summary>
    [Theory]
    [MemberData(nameof(Fixtures))]
    public async Task SoloPrefillUsesLargerChunksWithTheSameResult(ModelFixtureName fixtureName)
    {
        var fx = ModelFixture.Load(fixtureName.Path);
        using var model = LoadFp32(fx.Folder);
        var tokens = Enumerable.Range(0, 100).Select(i => (i * 37 + 11) % model.Config.VocabSize).ToArray();
        async Task<(List<int> Steps, float[] Logits)> Prefill(int solo)
        {
            using var engine = new JambaEngine(model, options: new EngineOptions { PrefillChunkTokens = 16, SoloPrefillChunkTokens = solo });
            var progress = new Recorder();
            using var snapshot = await engine.CreateSnapshotAsync(tokens, progress);
            return (progress.Done, snapshot.LastLogits.ToArray());
        }
        var (soloSteps, soloLogits) = await Prefill(32);
        var (sharedSteps, sharedLogits) = await Prefill(16);
        Assert.Equal([32, 64, 96, 100], soloSteps);
        Assert.Equal([16, 32, 48, 64, 80, 96, 100], sharedSteps);
        float worst = soloLogits.Zip(sharedLogits).Max(p => Math.Abs(p.First - p.Second));
        Assert.True(worst < 1e-4f, $"{fx.Name}: logits differ by {worst} between chunkings");
    }

    private sealed class Recorder : IProgress<PrefillProgress>
    {
        public readonly List<int> Done = [];
        public void Report(PrefillProgress value)
        {
            lock (Done) Done.Add(value.TokensDone);
        }
    }

    [Theory]
    [MemberData(nameof(FixturesOnBothPaths))]
    public async Task EngineGreedyMatchesFixturesAloneAndConcurrently(ModelFixtureName fixtureName, ForwardPath path)
    {
        var fx = ModelFixture.Load(fixtureName.Path);
        using var model = LoadFp32(fx.Folder, path);
        using var engine = new JambaEngine(model, options: new EngineOptions { PrefillChunkTokens = 16, SoloPrefillChunkTokens = 16 });
        var prompts = fx.Batch2.InputIds.Select((r, b) => r[fx.Batch2.Sequences[b].NumPad..].Select(t => (int)t).ToArray()).ToArray();
        var greedy = new GenerationOptions { Temperature = 0, MaxNewTokens = fx.MaxNewTokens, IgnoreEos = true };
        long baseline = TensorCounts.Live();
        foreach (var concurrent in new[] { false, true })
        {
            var tasks = new List<Task<GenerationResult>>();
            for (int b = 0; b < prompts.Length; b++)
            {
                var task = engine.GenerateTextAsync(new GenerationRequest(prompts[b], greedy));
                if (!concurrent) await task;
                tasks.Add(task);
            }
            var results = await Task.WhenAll(tasks);
            for (int b = 0; b < prompts.Length; b++)
            {
                Assert.Equal(fx.Batch2.GreedyNewTokens[b].Select(t => (int)t), results[b].Tokens);
                Assert.Equal(FinishReason.Length, results[b].FinishReason);
                Assert.Equal((prompts[b].Length, fx.MaxNewTokens), (results[b].Usage.PromptTokens, results[b].Usage.CompletionTokens));
                // The second round may be served from the automatic prefix cache: whole prompts of at least
                // PrefixCacheMinTokens tokens are kept by the first, and nothing else is reused.
                var kept = (concurrent ? prompts : prompts.Take(b)).Where(p => engine.Options.PrefixCacheBytes > 0 && p.Length >= engine.Options.PrefixCacheMinTokens);
                int expectedCached = kept.Where(p => p.Length <= prompts[b].Length && prompts[b].AsSpan(0, p.Length).SequenceEqual(p)).Select(p => p.Length).DefaultIfEmpty(0).Max();
                Assert.Equal(expectedCached, results[b].Usage.CachedPromptTokens);
            }
        }
        await WaitIdle(engine);
        Assert.Equal(baseline, TensorCounts.Live());
    }

    [Fact]
    public void CacheSizeFollowsTheFormula()
    {
        foreach (var folder in FixtureRoots.Folders("models"))
        {
            var config = Jamba.Inference.Config.JambaConfig.Load(folder);
            foreach (var (dtype, elt) in new[] { (ScalarType.Float32, 4), (ScalarType.BFloat16, 2) })
            {
                using var cache = new HybridCache(config, 2, dtype, torch.CPU);
                cache.EnsureCapacity(300);
                cache.Advance(300);
                long perSequence = 2L * config.NumAttentionLayers * config.NumKeyValueHeads * config.HeadDim * 300 * elt
                                   + (long)config.NumMambaLayers * (config.MambaDInner * (config.MambaDConv - 1) * elt + config.MambaDInner * config.MambaDState * 4);
                Assert.Equal(2 * perSequence, cache.SizeInBytes);
                Assert.True(cache.AllocatedBytes >= cache.SizeInBytes);
            }
        }
    }

    internal static async Task WaitIdle(JambaEngine engine)
    {
        for (int i = 0; i < 500 && !(engine.Metrics.Idle && engine.Metrics.RequestsCompleted == engine.Metrics.RequestsSubmitted); i++)
            await Task.Delay(10);
        Assert.True(engine.Metrics.Idle, "engine did not go idle");
    }

    private static List<long> DecodeGreedy(JambaForCausalLM model, HybridCache cache, float[] first, int steps, out float[] lastLogits)
    {
        var produced = new List<long>();
        lastLogits = first;
        for (int s = 0; s < steps; s++)
        {
            produced.Add(LogitsSampler.ArgMax(lastLogits));
            using var scope = NewDisposeScope();
            lastLogits = model.Forward(Ids([[produced[^1]]]), null, cache, LogitPositions.Last).cpu().data<float>().ToArray();
        }
        return produced;
    }

    private static double MaxDiff(float[] expected, ReadOnlySpan<float> actual)
    {
        double worst = 0;
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
        return worst;
    }
}
