using Jamba.Inference.Caching;
using Jamba.Inference.Engine;
using Jamba.Inference.Generation;
using Jamba.Inference.Modeling;
using Jamba.Inference.Tests.Fixtures;
using TorchSharp;
using Xunit;

namespace Jamba.Inference.Tests;

/// <summary>The generation API and the engine on a random model with a real tokenizer.</summary>
[Trait("Category", "Generation")]
public sealed class EngineTests : IClassFixture<TextModelFixture>, IDisposable
{
    private readonly TextModelFixture _fx;
    private readonly JambaModelHandle _handle;

    public EngineTests(TextModelFixture fx)
    {
        _fx = fx;
        _handle = JambaModelHandle.LoadAsync(fx.Folder, new ModelLoadOptions { Model = { DType = ComputeDType.Float32 }, Engine = { PrefillChunkTokens = 16, SoloPrefillChunkTokens = 16, PrefixCacheMinTokens = 8 } }).GetAwaiter().GetResult();
    }

    public void Dispose() => _handle.Dispose();

    private JambaEngine Engine => _handle.Engine;
    private IReadOnlyList<int> Prompt(string text) => _handle.Encode(text);

    private static GenerationOptions Greedy(int n = 24) => new() { Temperature = 0, MaxNewTokens = n, IgnoreEos = true };

    [Fact]
    public async Task StreamedTextEqualsTheDecodedTokens()
    {
        var updates = new List<GenerationUpdate>();
        await foreach (var u in Engine.GenerateAsync(new GenerationRequest(Prompt("Call me Ishmael."), Greedy(40))))
            updates.Add(u);
        var tokens = updates.Where(u => u.TokenId is not null).Select(u => u.TokenId!.Value).ToList();
        Assert.Equal(40, tokens.Count);
        Assert.Equal(_handle.Tokenizer!.Decode(tokens), string.Concat(updates.Select(u => u.Text)));
        Assert.All(updates.SkipLast(1), u => Assert.Null(u.FinishReason));
        Assert.Equal(FinishReason.Length, updates[^1].FinishReason);
        Assert.Equal(40, updates[^1].Usage!.CompletionTokens);
    }

    [Fact]
    public async Task StopSequencesSpanningTokensEndGenerationAndAreNeverEmitted()
    {
        var prompt = Prompt("The whale");
        var free = await Engine.GenerateTextAsync(new GenerationRequest(prompt, Greedy(40)));
        var pieces = free.Tokens.Select(t => _handle.Tokenizer!.Decode([t])).ToList();
        // A stop string that starts inside one token's text and ends inside a later one.
        int i = pieces.FindIndex(2, p => p.Length >= 2);
        int j = pieces.FindIndex(i + 1, p => p.Length >= 1);
        Assert.True(i > 0 && j > i, "the free run should have multi-character pieces");
        string before = string.Concat(pieces.Take(i));
        string stop = pieces[i][1..] + string.Concat(pieces.Skip(i + 1).Take(j - i - 1)) + pieces[j][..1];
        int at = free.Text.IndexOf(stop, StringComparison.Ordinal);
        var options = Greedy(40);
        options.StopSequences.Add(stop);
        var stopped = await Engine.GenerateTextAsync(new GenerationRequest(prompt, options));
        Assert.Equal(FinishReason.Stop, stopped.FinishReason);
        Assert.Equal(free.Text[..at], stopped.Text);
        Assert.DoesNotContain(stop, stopped.Text);
        Assert.True(at <= before.Length + pieces[i].Length);
    }

    [Fact]
    public async Task EosEndsGenerationUnlessIgnored()
    {
        var prompt = Prompt("Loomings");
        var free = await Engine.GenerateTextAsync(new GenerationRequest(prompt, Greedy(20)));
        int eos = free.Tokens[5];
        var options = Greedy(20);
        options.IgnoreEos = false;
        options.StopTokenIds.Add(eos);
        var stopped = await Engine.GenerateTextAsync(new GenerationRequest(prompt, options));
        Assert.Equal(FinishReason.Stop, stopped.FinishReason);
        Assert.Equal(free.Tokens.Take(free.Tokens.ToList().IndexOf(eos) + 1), stopped.Tokens);
        Assert.Equal(free.Tokens.ToList().IndexOf(eos) + 1, stopped.Usage.CompletionTokens);
    }

    [Fact]
    public async Task SameSeedSameOutputAndSamplingOptionsMatter()
    {
        var prompt = Prompt("It was a dark night");
        GenerationOptions Sampled(long seed) => new() { Temperature = 1f, TopK = 50, TopP = 0.95f, MinP = 0.01f, Seed = seed, MaxNewTokens = 30, IgnoreEos = true, RepetitionPenalty = 1.1f, PresencePenalty = 0.2f, FrequencyPenalty = 0.1f };
        var a = await Engine.GenerateTextAsync(new GenerationRequest(prompt, Sampled(42)));
        var b = await Engine.GenerateTextAsync(new GenerationRequest(prompt, Sampled(42)));
        var c = await Engine.GenerateTextAsync(new GenerationRequest(prompt, Sampled(43)));
        Assert.Equal(a.Tokens, b.Tokens);
        Assert.NotEqual(a.Tokens, c.Tokens);
        var topK1 = new GenerationOptions { Temperature = 1f, TopK = 1, Seed = 5, MaxNewTokens = 30, IgnoreEos = true };
        Assert.Equal((await Engine.GenerateTextAsync(new GenerationRequest(prompt, Greedy(30)))).Tokens, (await Engine.GenerateTextAsync(new GenerationRequest(prompt, topK1))).Tokens);
    }

    [Fact]
    public async Task LogProbsAreReported()
    {
        var options = Greedy(5);
        options.LogProbs = true;
        options.TopLogProbs = 3;
        await foreach (var u in Engine.GenerateAsync(new GenerationRequest(Prompt("Ahab"), options)))
        {
            Assert.NotNull(u.LogProb);
            Assert.True(u.LogProb <= 0);
            Assert.Equal(3, u.TopLogProbs!.Count);
            Assert.Equal(u.TokenId, u.TopLogProbs[0].TokenId); // greedy picks the most likely
            Assert.Equal(u.LogProb!.Value, u.TopLogProbs[0].LogProb, 5);
        }
    }

    [Theory]
    [InlineData(nameof(GenerationOptions.MaxNewTokens))]
    [InlineData(nameof(GenerationOptions.Temperature))]
    [InlineData(nameof(GenerationOptions.TopP))]
    [InlineData(nameof(GenerationOptions.TopK))]
    [InlineData(nameof(GenerationOptions.MinP))]
    [InlineData(nameof(GenerationOptions.RepetitionPenalty))]
    [InlineData(nameof(GenerationOptions.PresencePenalty))]
    [InlineData(nameof(GenerationOptions.FrequencyPenalty))]
    [InlineData(nameof(GenerationOptions.TopLogProbs))]
    [InlineData(nameof(GenerationOptions.StopSequences))]
    public void InvalidOptionsNameTheOptionAndRange(string option)
    {
        var o = new GenerationOptions();
        switch (option)
        {
            case nameof(GenerationOptions.MaxNewTokens): o.MaxNewTokens = 0; break;
            case nameof(GenerationOptions.Temperature): o.Temperature = -1; break;
            case nameof(GenerationOptions.TopP): o.TopP = 0; break;
            case nameof(GenerationOptions.TopK): o.TopK = -3; break;
            case nameof(GenerationOptions.MinP): o.MinP = 1.5f; break;
            case nameof(GenerationOptions.RepetitionPenalty): o.RepetitionPenalty = 0; break;
            case nameof(GenerationOptions.PresencePenalty): o.PresencePenalty = 3; break;
            case nameof(GenerationOptions.FrequencyPenalty): o.FrequencyPenalty = float.NaN; break;
            case nameof(GenerationOptions.TopLogProbs): o.TopLogProbs = 21; break;
            case nameof(GenerationOptions.StopSequences): o.StopSequences.Add(""); break;
        }
        var ex = Assert.Throws<ArgumentException>(() => new GenerationRequest([1, 2], o));
        Assert.Equal(option, ex.ParamName);
        Assert.Contains(option + " must be", ex.Message);
    }

    [Fact]
    public async Task CancellationStopsWithinAStepAndFreesEverything()
    {
        await GenerationTests.WaitIdle(Engine);
        long baseline = TensorCounts.Live();
        using var cts = new CancellationTokenSource();
        int seen = 0;
        var other = Engine.GenerateTextAsync(new GenerationRequest(Prompt("Queequeg"), Greedy(30)));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var u in Engine.GenerateAsync(new GenerationRequest(Prompt("Starbuck"), Greedy(500)), cts.Token))
                if (++seen == 3) cts.Cancel();
        });
        Assert.InRange(seen, 3, 5);
        Assert.Equal(30, (await other).Tokens.Count); // the other request was not disturbed
        // an abandoned enumeration is cancelled too
        await foreach (var u in Engine.GenerateAsync(new GenerationRequest(Prompt("Stubb"), Greedy(500)))) break;
        await GenerationTests.WaitIdle(Engine);
        Assert.Equal(baseline, TensorCounts.Live());
    }

    [Fact]
    public async Task TooLongPromptsAndFullQueuesAreRefusedBeforeAnyWork()
    {
        using var model = JambaForCausalLM.FromPretrained(_fx.Folder, new ModelOptions { DType = ComputeDType.Float32 });
        using var engine = new JambaEngine(model, _handle.Tokenizer, new EngineOptions { MaxContextTokens = 32, MaxConcurrentSequences = 1, MaxQueuedRequests = 0, QueueFull = QueueFullBehavior.Throw });
        var ex = Assert.Throws<ContextLengthExceededException>(() => engine.GenerateAsync(new GenerationRequest(Enumerable.Repeat(20, 40).ToArray(), Greedy())));
        Assert.Equal(40, ex.PromptTokens);
        Assert.Equal(32, ex.Limit);
        Assert.Equal(0, engine.Metrics.RequestsSubmitted);
        // Generation stops at the context limit with Length, never truncating the prompt.
        var capped = await engine.GenerateTextAsync(new GenerationRequest(Enumerable.Repeat(20, 30).ToArray(), Greedy(100)));
        Assert.Equal(FinishReason.Length, capped.FinishReason);
        Assert.Equal(2, capped.Tokens.Count); // prompt 30 + 2 generated = the 32-token limit
        // one running, none may wait
        await using var first = engine.GenerateAsync(new GenerationRequest([5, 6, 7], Greedy(10))).GetAsyncEnumerator();
        Assert.True(await first.MoveNextAsync());
        Assert.Throws<EngineBusyException>(() => engine.GenerateAsync(new GenerationRequest([5, 6, 7], Greedy(10))));
    }

    [Fact]
    public async Task SnapshotsContinueExactlyLikeTheFullPromptAndSurviveAFile()
    {
        var prefix = Prompt("Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse");
        var suffixes = new[] { "and nothing", " the sea", "Whale", "Ahab and Starbuck" }.Select(s => _handle.Encode(s, addSpecialTokens: false)).ToArray();
        using var snapshot = await Engine.CreateSnapshotAsync(prefix);
        Assert.Equal(prefix.Count, snapshot.Length);
        var fromFull = await Task.WhenAll(suffixes.Select(s => Engine.GenerateTextAsync(new GenerationRequest(prefix.Concat(s).ToArray(), Greedy(16)))));
        var fromSnapshot = await Task.WhenAll(suffixes.Select(s => Engine.GenerateTextAsync(GenerationRequest.ContinueFrom(snapshot, s, Greedy(16)))));
        for (int i = 0; i < suffixes.Length; i++)
        {
            Assert.Equal(fromFull[i].Tokens, fromSnapshot[i].Tokens);
            // At least the snapshot; more when the engine kept a longer prompt that extends it (the full-prompt runs above).
            Assert.InRange(fromSnapshot[i].Usage.CachedPromptTokens, prefix.Count, prefix.Count + suffixes[i].Count);
        }
        // A whole prompt that does not start with the snapshot is refused, never silently glued on.
        Assert.Contains("does not start with the snapshot", Assert.Throws<ArgumentException>(() => new GenerationRequest(suffixes[0], Greedy(4), snapshot)).Message);
        // The snapshot alone: first token from its stored logits.
        var alone = await Engine.GenerateTextAsync(new GenerationRequest(prefix, Greedy(8), snapshot));
        using (var model = JambaForCausalLM.FromPretrained(_fx.Folder, new ModelOptions { DType = ComputeDType.Float32 }))
        using (var fresh = new JambaEngine(model, _handle.Tokenizer, new EngineOptions { PrefixCacheBytes = 0 }))
        {
            Assert.Equal(alone.Tokens, (await fresh.GenerateTextAsync(new GenerationRequest(prefix, Greedy(8)))).Tokens);
            string file = Path.Combine(_fx.Folder, "prefix.snapshot");
            snapshot.Save(file);
            using var loaded = fresh.LoadSnapshot(file);
            Assert.Equal(prefix, loaded.Tokens);
            Assert.Equal(fromFull[1].Tokens, (await fresh.GenerateTextAsync(GenerationRequest.ContinueFrom(loaded, suffixes[1], Greedy(16)))).Tokens);
            // damaged file / other model
            var bytes = File.ReadAllBytes(file);
            bytes[bytes.Length / 2] ^= 0x5a;
            File.WriteAllBytes(file + ".bad", bytes);
            Assert.Contains("checksum", Assert.Throws<SnapshotFormatException>(() => fresh.LoadSnapshot(file + ".bad")).Message);
            var other = model.Config with { RmsNormEps = 1e-5 };
            Assert.Contains("another model", Assert.Throws<SnapshotFormatException>(() => ContextSnapshot.Load(file, other, model.DType, torch.CPU)).Message);
        }
    }

    [Fact]
    public async Task AutomaticPrefixReuseGivesTheSameTokens()
    {
        var prompt = Prompt("Whaling voyage by one Ishmael. Grand contested election for the presidency of the United States.");
        var first = await Engine.GenerateTextAsync(new GenerationRequest(prompt, Greedy(10)));
        long reusedBefore = Engine.Metrics.ReusedPrefixTokens;
        var longer = prompt.Concat(_handle.Encode(" BLOODY BATTLE IN AFFGHANISTAN.", addSpecialTokens: false)).ToArray();
        var second = await Engine.GenerateTextAsync(new GenerationRequest(longer, Greedy(10)));
        Assert.Equal(prompt.Count, second.Usage.CachedPromptTokens);
        Assert.True(Engine.Metrics.ReusedPrefixTokens >= reusedBefore + prompt.Count);
        using var model = JambaForCausalLM.FromPretrained(_fx.Folder, new ModelOptions { DType = ComputeDType.Float32 });
        using var cold = new JambaEngine(model, _handle.Tokenizer, new EngineOptions { PrefixCacheBytes = 0 });
        Assert.Equal((await cold.GenerateTextAsync(new GenerationRequest(longer, Greedy(10)))).Tokens, second.Tokens);
        Assert.Equal(0, (await cold.GenerateTextAsync(new GenerationRequest(longer, Greedy(10)))).Usage.CachedPromptTokens);
        _ = first;
    }

    [Fact]
    public async Task RegistrySharesOneLoadedCopy()
    {
        var registry = new JambaModelRegistry();
        var options = new ModelLoadOptions { Model = { DType = ComputeDType.Float32 } };
        long before = TensorCounts.Live();
        using var a = await registry.LoadAsync(_fx.Folder, options);
        long afterFirst = TensorCounts.Live();
        var weights = a.Model.parameters().ToList();
        using var b = await registry.LoadAsync(_fx.Folder + Path.DirectorySeparatorChar, options);
        Assert.Same(a.Model, b.Model);
        Assert.Same(a.Engine, b.Engine);
        Assert.Equal(1, registry.LoadCount);
        Assert.Equal(afterFirst, TensorCounts.Live()); // no second copy of any tensor
        using (var c = await registry.LoadAsync(_fx.Folder, new ModelLoadOptions { Model = { DType = ComputeDType.BFloat16 } }))
            Assert.NotSame(a.Model, c.Model);
        Assert.Equal(2, registry.LoadCount);
        Assert.True(a.ActiveParameterCount < a.ParameterCount);
        a.Dispose();
        Assert.Equal(24, (await b.Engine.GenerateTextAsync(new GenerationRequest([5, 6], Greedy()))).Tokens.Count); // still alive
        b.Dispose();
        Assert.Equal(0, registry.LoadedCount);
        Assert.All(weights, w => Assert.True(w.IsInvalid)); // every weight freed with the last lease
        Assert.Equal(before, TensorCounts.Live());
        Assert.Throws<ObjectDisposedException>(() => b.Model);
    }

    [Fact]
    public async Task CancelledLoadLeavesNothingBehind()
    {
        var registry = new JambaModelRegistry();
        long before = TensorCounts.Live();
        using var cts = new CancellationTokenSource();
        var progress = new Progress(p => { if (p.TensorsLoaded == 2) cts.Cancel(); });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => registry.LoadAsync(_fx.Folder, new ModelLoadOptions { Model = { DType = ComputeDType.Float32 } }, progress, cts.Token));
        for (int i = 0; i < 100 && registry.LoadedCount != 0; i++) await Task.Delay(10);
        Assert.Equal(0, registry.LoadedCount);
        for (int i = 0; i < 100 && TensorCounts.Live() != before; i++) await Task.Delay(10);
        Assert.Equal(before, TensorCounts.Live());
    }

    /// <summary>Same as <see cref="TensorCounts.Live"/> (kept for tests written against this name).</summary>
    internal static long LiveTensors() => TensorCounts.Live();

    private sealed class Progress(Action<LoadProgress> report) : IProgress<LoadProgress>
    {
        public void Report(LoadProgress value) => report(value);
    }
}
