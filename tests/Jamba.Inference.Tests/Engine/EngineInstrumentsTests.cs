using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Jamba.Inference.Engine;
using Jamba.Inference.Generation;
using Jamba.Inference.Modeling;
using Jamba.Inference.Tests.Fixtures;
using Xunit;

namespace Jamba.Inference.Tests;

/// <summary>The engine's <see cref="System.Diagnostics.Metrics"/> instruments, read by a plain <see cref="MeterListener"/>.</summary>
[Trait("Category", "Generation")]
public sealed class EngineInstrumentsTests(TextModelFixture fx) : IClassFixture<TextModelFixture>
{
    [Fact]
    public async Task RequestsTokensLatenciesAndGaugesAreMeasuredPerEngine()
    {
        using var model = JambaForCausalLM.FromPretrained(fx.Folder, new ModelOptions { DType = ComputeDType.Float32 });
        using var engine = new JambaEngine(model, null, new EngineOptions { MaxConcurrentSequences = 2, QueueFull = QueueFullBehavior.Throw, MaxQueuedRequests = 0 }) { Name = "instruments-test" };
        var seen = new ConcurrentDictionary<string, double>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == EngineInstruments.MeterName) l.EnableMeasurementEvents(instrument);
        };
        void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            foreach (var tag in tags)
                if (tag.Key == "model" && (string?)tag.Value == "instruments-test")
                    seen.AddOrUpdate(instrument.Name, value, (_, old) => instrument is ObservableGauge<long> ? value : old + value);
        }
        listener.SetMeasurementEventCallback<long>((i, v, t, _) => Record(i, v, t));
        listener.SetMeasurementEventCallback<double>((i, v, t, _) => Record(i, v, t));
        listener.Start();

        // Two long generations hold both slots: a third is refused (and counted), and while they run the gauges see them.
        var options = new GenerationOptions { Temperature = 0, MaxNewTokens = 5, IgnoreEos = true };
        using var cts = new CancellationTokenSource();
        var running = Enumerable.Range(0, 2).Select(i => engine.GenerateAsync(new GenerationRequest([1, 20 + i], new GenerationOptions { MaxNewTokens = 100000, IgnoreEos = true }), cts.Token).GetAsyncEnumerator()).ToList();
        foreach (var e in running) Assert.True(await e.MoveNextAsync());
        Assert.Throws<EngineBusyException>(() => { _ = engine.GenerateAsync(new GenerationRequest([1, 2, 3], options)); });
        listener.RecordObservableInstruments();
        Assert.Equal(2, seen["jamba.sequences.running"]);
        Assert.True(seen["jamba.cache.bytes"] > 0);
        cts.Cancel();
        foreach (var e in running)
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => { while (await e.MoveNextAsync()) { } });
            await e.DisposeAsync();
        }
        var results = await Task.WhenAll(Enumerable.Range(0, 2).Select(i => engine.GenerateTextAsync(new GenerationRequest([1, 5 + i, 9, 12], options))));
        await GenerationTests.WaitIdle(engine);
        listener.RecordObservableInstruments();

        Assert.Equal(4, seen["jamba.requests"]);
        Assert.Equal(1, seen["jamba.requests.rejected"]);
        Assert.True(seen["jamba.completion_tokens"] >= 12);
        Assert.Equal(12, seen["jamba.prompt_tokens"]);
        Assert.Equal(4, seen["jamba.requests.finished"]);
        Assert.True(seen["jamba.time_to_first_token"] > 0);
        Assert.True(seen.ContainsKey("jamba.time_per_output_token"));
        Assert.Equal(0, seen["jamba.sequences.running"]);
        Assert.Equal(0, seen["jamba.queue.depth"]);
        Assert.True(seen.ContainsKey("jamba.cache.bytes") && seen.ContainsKey("jamba.prefix_cache.bytes"));
        Assert.All(results, r => Assert.Equal(5, r.Tokens.Count));
    }
}
