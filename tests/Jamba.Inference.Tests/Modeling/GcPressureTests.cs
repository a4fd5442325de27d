using Jamba.Inference.Caching;
using Jamba.Inference.Generation;
using Jamba.Inference.Modeling;
using Jamba.Inference.Tests.Fixtures;
using Xunit;
using Xunit.Abstractions;
using static Jamba.Inference.Tests.Fixtures.ModelTestHelpers;
using static TorchSharp.torch;

namespace Jamba.Inference.Tests;

/// <summary>
/// Forward passes while another thread collects garbage and runs finalizers non-stop: the condition under which
/// TorchSharp frees an unrooted Scalar in the middle of a native op (see <c>TorchScalars</c>). Before the fix, plain
/// <c>a + b</c> failed within a second here ("Expected false to be true … toFloat"), and the engine's batched decode over
/// four 120K-token requests failed the same way. Every pass must finish and give the same logits as without pressure.
/// </summary>
public sealed class GcPressureTests(ITestOutputHelper output)
{
    public static TheoryData<ModelFixtureName> Fixtures => FixtureRoots.ModelFixtures();

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void Prefill_padded_and_ragged_decode_are_exact_under_constant_collection(ModelFixtureName fixtureName)
    {
        var fx = ModelFixture.Load(fixtureName.Path);
        using var model = LoadFp32(fx.Folder);
        float[] reference = Pass(model, fx);

        using var stop = new CancellationTokenSource();
        long collections = 0;
        var collector = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
                Interlocked.Increment(ref collections);
            }
        }) { IsBackground = true };
        collector.Start();
        int passes = 0;
        try
        {
            // Long enough for TorchSharp's hot methods to reach optimised (tier-1) code, where a Scalar argument is dead
            // as soon as its handle has been read.
            var deadline = DateTime.UtcNow.AddSeconds(6);
            while (DateTime.UtcNow < deadline || passes < 20)
            {
                float[] logits = Pass(model, fx);
                passes++;
                Assert.Equal(reference.Length, logits.Length);
                for (int i = 0; i < logits.Length; i++)
                    Assert.True(Math.Abs(reference[i] - logits[i]) <= 1e-5f, $"pass {passes}: logit {i} {logits[i]} != {reference[i]}");
            }
        }
        finally
        {
            stop.Cancel();
            collector.Join();
        }
        output.WriteLine($"{fx.Name}: {passes} passes, {Interlocked.Read(ref collections)} collections on the other thread");
        Assert.True(Interlocked.Read(ref collections) > passes, "the collector thread must have run throughout");
    }

    /// <summary>A left-padded batch forward (masks, masked conv), then two unpadded prompts prefilled alone and decoded
    /// together as a ragged <see cref="CacheBatch"/>; returns every logit produced.</summary>
    private static float[] Pass(JambaForCausalLM model, ModelFixture fx)
    {
        var all = new List<float>();
        using (var scope = NewDisposeScope())
        {
            using var padded = model.CreateCache(fx.Batch2.InputIds.Length);
            all.AddRange(model.Forward(Ids(fx.Batch2.InputIds), Ids(fx.Batch2.AttentionMask), padded, LogitPositions.Last).data<float>().ToArray());
        }
        var prompts = fx.Batch2.InputIds.Select((r, b) => r[fx.Batch2.Sequences[b].NumPad..]).ToArray();
        var caches = prompts.Select(_ => model.CreateCache(1)).ToArray();
        try
        {
            var next = new long[prompts.Length];
            for (int b = 0; b < prompts.Length; b++)
            {
                using var scope = NewDisposeScope();
                var last = model.Forward(Ids([prompts[b]]), null, caches[b], LogitPositions.Last).data<float>().ToArray();
                all.AddRange(last);
                next[b] = LogitsSampler.ArgMax(last);
            }
            for (int step = 0; step < 4; step++)
            {
                using var scope = NewDisposeScope();
                var logits = model.Forward(Ids(next.Select(t => new[] { t }).ToArray()), null, new CacheBatch(caches), LogitPositions.Last);
                for (int b = 0; b < prompts.Length; b++)
                {
                    var row = logits[b, 0].data<float>().ToArray();
                    all.AddRange(row);
                    next[b] = LogitsSampler.ArgMax(row);
                }
            }
        }
        finally
        {
            foreach (var c in caches) c.Dispose();
        }
        return all.ToArray();
    }
}
