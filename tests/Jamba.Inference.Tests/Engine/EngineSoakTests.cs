using Jamba.Inference.Engine;
using Jamba.Inference.Generation;
using Jamba.Inference.Modeling;
using Jamba.Inference.Tests.Fixtures;
using Xunit;
using Xunit.Abstractions;

namespace Jamba.Inference.Tests;

/// <summary>
/// More than 500 concurrent requests of every kind at once — plain prompts, prompts sharing a prefix (the automatic prefix
/// cache), continuations of a snapshot, scoring — with random cancellation before and during generation and consumers that
/// walk away mid-stream, in fp32 and bf16: every request ends (completed or cancelled) within a time limit, completed ones
/// give exactly their length, fp32 ones equal the same request run alone, and no tensor outlives the engine.
/// </summary>
[Trait("Category", "Generation")]
public sealed class EngineSoakTests(TextModelFixture fx, ITestOutputHelper output) : IClassFixture<TextModelFixture>
{
    private enum Kind { Plain, SharedPrefix, Snapshot, Score }

    [Theory]
    [InlineData(ComputeDType.Float32)]
    [InlineData(ComputeDType.BFloat16)]
    public async Task FiveHundredMixedRequestsWithCancellationAndAbandonmentLoseNothing(ComputeDType dtype)
    {
        using (var model = JambaForCausalLM.FromPretrained(fx.Folder, new ModelOptions { DType = dtype }))
        {
            long baseline = TensorCounts.Live();
            var engine = new JambaEngine(model, null, new EngineOptions
            {
                MaxConcurrentSequences = 16, PrefillChunkTokens = 16, SoloPrefillChunkTokens = 32, PrefixCacheMinTokens = 20, PrefixCacheBytes = 1 << 20,
            });
            var rng = new Random(dtype == ComputeDType.Float32 ? 515 : 516);
            int Token() => rng.Next(3, 1500);
            var shared = Enumerable.Range(0, 30).Select(_ => Token()).ToArray();
            var snapshotPrefix = Enumerable.Range(0, 36).Select(_ => Token()).ToArray();
            var snapshot = await engine.CreateSnapshotAsync(snapshotPrefix);
            var tails = Enumerable.Range(0, 6).Select(_ => Enumerable.Range(0, rng.Next(1, 25)).Select(_ => Token()).ToArray()).ToArray();

            GenerationRequest Request(Kind kind, int tail, int n)
            {
                var options = new GenerationOptions { Temperature = 0, MaxNewTokens = n, IgnoreEos = true };
                return kind switch
                {
                    Kind.SharedPrefix => new GenerationRequest(shared.Concat(tails[tail]).ToArray(), options),
                    Kind.Snapshot => GenerationRequest.ContinueFrom(snapshot, tails[tail], options),
                    _ => new GenerationRequest(tails[tail], options),
                };
            }

            const int Requests = 520;
            int completed = 0, cancelled = 0, abandoned = 0, scored = 0;
            var jobs = new List<Task<(Kind Kind, int Tail, int N, IReadOnlyList<int> Tokens, bool Full, double Score)>>();
            for (int i = 0; i < Requests; i++)
            {
                var kind = (Kind)rng.Next(4);
                int tail = rng.Next(tails.Length), n = rng.Next(1, 20);
                int mode = rng.Next(10); // 0-1: cancel at a random token, 2: cancel before it starts, 3: abandon the stream, else run to the end
                int at = rng.Next(0, 8);
                jobs.Add(Task.Run(async () =>
                {
                    using var cts = new CancellationTokenSource();
                    if (mode == 2) cts.Cancel();
                    var tokens = new List<int>();
                    try
                    {
                        if (kind == Kind.Score)
                        {
                            var score = await engine.ScoreAsync(shared, tails[tail], cts.Token);
                            Interlocked.Increment(ref scored);
                            return (kind, tail, n, (IReadOnlyList<int>)tokens, true, score.LogLikelihood);
                        }
                        await foreach (var u in engine.GenerateAsync(Request(kind, tail, n), cts.Token))
                        {
                            if (u.TokenId is { } id) tokens.Add(id);
                            if (mode < 2 && tokens.Count >= at) cts.Cancel();
                            if (mode == 3 && tokens.Count >= at)
                            {
                                Interlocked.Increment(ref abandoned);
                                return (kind, tail, n, (IReadOnlyList<int>)tokens, false, 0.0); // leaves the enumeration: a disconnect
                            }
                        }
                        Interlocked.Increment(ref completed);
                        return (kind, tail, n, (IReadOnlyList<int>)tokens, true, 0.0);
                    }
                    catch (OperationCanceledException)
                    {
                        Interlocked.Increment(ref cancelled);
                        return (kind, tail, n, (IReadOnlyList<int>)tokens, false, 0.0);
                    }
                }));
            }
            var all = Task.WhenAll(jobs);
            Assert.True(await Task.WhenAny(all, Task.Delay(TimeSpan.FromMinutes(4))) == all, "requests hung");
            var results = await all;
            Assert.Equal(Requests, completed + cancelled + abandoned + scored);

            // Every completed generation has its length; fp32 ones equal the request run alone.
            var alone = new Dictionary<(Kind, int, int), IReadOnlyList<int>>();
            var scores = new Dictionary<int, double>();
            foreach (var r in results)
            {
                if (r.Kind == Kind.Score)
                {
                    if (!r.Full) continue; // cancelled
                    if (!scores.TryGetValue(r.Tail, out double first)) scores[r.Tail] = r.Score;
                    else Assert.Equal(first, r.Score, 3);
                    continue;
                }
                if (r.Full) Assert.Equal(r.N, r.Tokens.Count);
                Assert.All(r.Tokens, t => Assert.InRange(t, 0, model.Config.VocabSize - 1));
                if (dtype != ComputeDType.Float32) continue;
                if (!alone.TryGetValue((r.Kind, r.Tail, r.N), out var expected))
                    alone[(r.Kind, r.Tail, r.N)] = expected = (await engine.GenerateTextAsync(Request(r.Kind, r.Tail, r.N))).Tokens;
                Assert.Equal(expected.Take(r.Tokens.Count), r.Tokens);
            }
            await GenerationTests.WaitIdle(engine);
            var metrics = engine.Metrics;
            Assert.Equal(metrics.RequestsSubmitted, metrics.RequestsCompleted);
            Assert.True(metrics.ReusedPrefixTokens > 0, "shared prefixes and the snapshot should have been reused");
            output.WriteLine($"{dtype}: {Requests} requests: {completed} completed, {scored} scored, {cancelled} cancelled, {abandoned} abandoned; max batch {metrics.MaxBatch}, reused {metrics.ReusedPrefixTokens} prefix tokens");
            snapshot.Dispose();
            engine.Dispose();
            Assert.Equal(baseline, TensorCounts.Live());
        }
    }
}
