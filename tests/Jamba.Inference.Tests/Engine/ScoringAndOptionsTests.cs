using Jamba.Inference.Engine;
using Jamba.Inference.Generation;
using Jamba.Inference.Modeling;
using Jamba.Inference.Tests.Fixtures;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Jamba.Inference.Tests;

/// <summary>Scoring as an engine request, and engine options that belong to each engine.</summary>
[Trait("Category", "Generation")]
public sealed class ScoringAndOptionsTests : IClassFixture<TextModelFixture>
{
    private readonly TextModelFixture _fx;

    public ScoringAndOptionsTests(TextModelFixture fx) => _fx = fx;

    /// <summary>The reference: one stateless forward over prompt + target, log-softmax, the target tokens picked.</summary>
    private static double Reference(JambaForCausalLM model, IReadOnlyList<int> prompt, IReadOnlyList<int> target)
    {
        using var scope = NewDisposeScope();
        var ids = prompt.Concat(target).Select(t => (long)t).ToArray();
        var logits = model.Forward(torch.tensor(ids, [1, ids.Length]), null, null, LogitPositions.All);
        var logProbs = logits.log_softmax(-1);
        double sum = 0;
        for (int i = 0; i < target.Count; i++)
            sum += logProbs[0, prompt.Count - 1 + i, target[i]].item<float>();
        return sum;
    }

    [Fact]
    public async Task ScoresMatchOneForwardAcrossChunksAndConcurrentGenerations()
    {
        var registry = new JambaModelRegistry();
        using var handle = await registry.LoadAsync(_fx.Folder, new ModelLoadOptions { Model = { DType = ComputeDType.Float32 }, Engine = { PrefillChunkTokens = 16, SoloPrefillChunkTokens = 16 } });
        long before = EngineTests.LiveTensors();
        var prompt = handle.Encode("Call me Ishmael. Some years ago, never mind how long precisely");
        var target = handle.Encode(" having little or no money in my purse, and nothing particular to interest me on shore", addSpecialTokens: false);
        Assert.True(prompt.Count + target.Count > 32, "the request must span several prefill chunks");
        var generating = handle.Engine.GenerateTextAsync(new GenerationRequest(prompt, new GenerationOptions { Temperature = 0, MaxNewTokens = 20, IgnoreEos = true }));
        var scores = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => handle.Engine.ScoreAsync(prompt, target)));
        await generating;
        double expected = Reference(handle.Model, prompt, target);
        foreach (var s in scores)
        {
            Assert.Equal(target.Count, s.Tokens);
            Assert.Equal(expected, s.LogLikelihood, 3);
            Assert.Equal(Math.Exp(-s.LogLikelihood / s.Tokens), s.Perplexity, 6);
        }
        Assert.Equal(0, (await handle.Engine.ScoreAsync(prompt, [])).LogLikelihood);
        await Assert.ThrowsAsync<ArgumentException>(() => handle.Engine.ScoreAsync([], target));
        await Assert.ThrowsAsync<ArgumentException>(() => handle.Engine.ScoreAsync(prompt, [1_000_000]));
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => handle.Engine.ScoreAsync(prompt, target, cts.Token));
        for (int i = 0; i < 100 && EngineTests.LiveTensors() != before; i++) await Task.Delay(10);
        Assert.Equal(before, EngineTests.LiveTensors());
    }

    [Fact]
    public async Task ASecondLoadWithOtherEngineOptionsIsToldTheConflict()
    {
        var registry = new JambaModelRegistry();
        var model = new ModelOptions { DType = ComputeDType.Float32 };
        using var first = await registry.LoadAsync(_fx.Folder, new ModelLoadOptions { Model = model, Engine = { MaxConcurrentSequences = 3 } });
        var e = await Assert.ThrowsAsync<EngineOptionsConflictException>(() =>
            registry.LoadAsync(_fx.Folder, new ModelLoadOptions { Model = model, Engine = { MaxConcurrentSequences = 5 } }));
        Assert.Contains("MaxConcurrentSequences (3 vs 5)", e.Message);
        using (var same = await registry.LoadAsync(_fx.Folder, new ModelLoadOptions { Model = model, Engine = { MaxConcurrentSequences = 3 } }))
            Assert.Same(first.Engine, same.Engine);
        using (var noPreference = await registry.LoadAsync(_fx.Folder, new ModelLoadOptions { Model = model }))
            Assert.Same(first.Engine, noPreference.Engine);
        Assert.Equal(1, registry.LoadCount);
        Assert.Equal(1, registry.LoadedCount);
    }
}
