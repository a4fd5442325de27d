using Jamba.Inference.Engine;
using Jamba.Inference.Generation;
using Jamba.Inference.Modeling;
using Jamba.Inference.Tests.Fixtures;
using Xunit;
using Xunit.Abstractions;

namespace Jamba.Inference.Tests;

/// <summary>Hundreds of concurrent requests: random lengths, random cancellation, shared snapshots.</summary>
[Trait("Category", "Generation")]
public sealed class EngineStressTests(TextModelFixture fx, ITestOutputHelper output) : IClassFixture<TextModelFixture>
{
    [Fact]
    public async Task HundredsOfRequestsCompleteOrCancelDeterministicallyWithoutLeaks()
    {
        using var model = JambaForCausalLM.FromPretrained(fx.Folder, new ModelOptions { DType = ComputeDType.Float32 });
        using var engine = new JambaEngine(model, null, new EngineOptions { MaxConcurrentSequences = 12, PrefillChunkTokens = 16, SoloPrefillChunkTokens = 16, PrefixCacheMinTokens = 24, PrefixCacheBytes = 1 << 20 });
        await GenerationTests.WaitIdle(engine);
        long baseline = TensorCounts.Live();
        var rng = new Random(2026);
        var prefix = Enumerable.Range(0, 40).Select(_ => rng.Next(3, 1500)).ToArray();
        var snapshot = await engine.CreateSnapshotAsync(prefix);
        var prompts = Enumerable.Range(0, 8).Select(_ => Enumerable.Range(0, rng.Next(1, 60)).Select(_ => rng.Next(3, 1500)).ToArray()).ToArray();

        // Reference: each distinct (prompt, snapshot?, length) alone, greedy.
        var reference = new Dictionary<(int Prompt, bool Snap, int N), IReadOnlyList<int>>();
        async Task<IReadOnlyList<int>> Alone(int p, bool snap, int n)
        {
            if (reference.TryGetValue((p, snap, n), out var r)) return r;
            var tokens = snap ? prefix.Concat(prompts[p]).ToArray() : prompts[p];
            var result = await engine.GenerateTextAsync(new GenerationRequest(tokens, new GenerationOptions { Temperature = 0, MaxNewTokens = n, IgnoreEos = true }));
            return reference[(p, snap, n)] = result.Tokens;
        }

        const int Requests = 240;
        var jobs = new List<Task<(int P, bool Snap, int N, bool Cancelled, IReadOnlyList<int> Tokens)>>();
        int cancelledCount = 0;
        for (int i = 0; i < Requests; i++)
        {
            int p = rng.Next(prompts.Length), n = rng.Next(1, 24);
            bool snap = rng.NextDouble() < 0.4, cancel = rng.NextDouble() < 0.25;
            int cancelAfter = rng.Next(0, 6);
            jobs.Add(Task.Run(async () =>
            {
                using var cts = new CancellationTokenSource();
                var tokens = new List<int>();
                var request = snap ? GenerationRequest.ContinueFrom(snapshot, prompts[p], new GenerationOptions { Temperature = 0, MaxNewTokens = n, IgnoreEos = true })
                                   : new GenerationRequest(prompts[p], new GenerationOptions { Temperature = 0, MaxNewTokens = n, IgnoreEos = true });
                try
                {
                    await foreach (var u in engine.GenerateAsync(request, cts.Token))
                    {
                        if (u.TokenId is { } id) tokens.Add(id);
                        if (cancel && tokens.Count >= cancelAfter) cts.Cancel();
                    }
                    return (p, snap, n, false, (IReadOnlyList<int>)tokens);
                }
                catch (OperationCanceledException)
                {
                    Interlocked.Increment(ref cancelledCount);
                    return (p, snap, n, true, (IReadOnlyList<int>)tokens);
                }
            }));
        }
        var results = await Task.WhenAll(jobs);
        Assert.Equal(Requests, results.Length);
        foreach (var r in results)
        {
            var expected = await Alone(r.P, r.Snap, r.N);
            if (r.Cancelled) Assert.Equal(expected.Take(r.Tokens.Count), r.Tokens); // a cancelled prefix of the same output
            else Assert.Equal(expected, r.Tokens);
        }
        snapshot.Dispose();
        await GenerationTests.WaitIdle(engine);
        var metrics = engine.Metrics;
        Assert.Equal(metrics.RequestsSubmitted, metrics.RequestsCompleted);
        Assert.True(metrics.MaxBatch > 1, "requests should have been batched");
        output.WriteLine($"{Requests} requests, {cancelledCount} cancelled, max batch {metrics.MaxBatch}, {metrics.DecodeSteps} decode steps, reused {metrics.ReusedPrefixTokens} prefix tokens");
        engine.Dispose();
        Assert.Equal(baseline, TensorCounts.Live());
    }
}
