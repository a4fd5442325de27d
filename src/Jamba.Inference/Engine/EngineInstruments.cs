using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Jamba.Inference.Engine;

/// <summary>
/// The engine's <see cref="System.Diagnostics.Metrics"/> instruments, on one process-wide <see cref="Meter"/> named
/// <see cref="MeterName"/>: any listener (OpenTelemetry, <c>dotnet-counters</c>, a <see cref="MeterListener"/>) reads them;
/// without one they cost next to nothing. Every measurement carries the tag <c>model</c> (the engine's <see cref="JambaEngine.Name"/>).
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item><c>jamba.requests</c> (counter): generation requests accepted by an engine.</item>
/// <item><c>jamba.requests.finished</c> (counter, tag <c>finish_reason</c>: stop, length, cancelled, error).</item>
/// <item><c>jamba.requests.rejected</c> (counter): requests refused because the queue was full (<see cref="EngineBusyException"/>).</item>
/// <item><c>jamba.prompt_tokens</c> (counter): prompt tokens run through the model; <c>jamba.prompt_tokens.reused</c>: taken from snapshots.</item>
/// <item><c>jamba.completion_tokens</c> (counter): tokens generated.</item>
/// <item><c>jamba.time_to_first_token</c> (histogram, s): from a request's submission to its first token.</item>
/// <item><c>jamba.time_per_output_token</c> (histogram, s): between two tokens of one sequence.</item>
/// <item><c>jamba.queue.depth</c>, <c>jamba.sequences.running</c> (observable gauges): requests waiting, sequences admitted.</item>
/// <item><c>jamba.cache.bytes</c> (observable gauge): bytes allocated for the running sequences' caches;
/// <c>jamba.prefix_cache.bytes</c> / <c>jamba.prefix_cache.entries</c>: the automatic prefix snapshots.</item>
/// </list>
/// </remarks>
public static class EngineInstruments
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "Jamba.Inference";

    private static readonly List<WeakReference<JambaEngine>> Engines = [];

    /// <summary>The meter.</summary>
    public static Meter Meter { get; } = new(MeterName, typeof(EngineInstruments).Assembly.GetName().Version?.ToString());

    internal static readonly Counter<long> Requests = Meter.CreateCounter<long>("jamba.requests", "{request}", "Generation requests accepted by an engine.");
    internal static readonly Counter<long> Finished = Meter.CreateCounter<long>("jamba.requests.finished", "{request}", "Generation requests finished, by finish reason.");
    internal static readonly Counter<long> Rejected = Meter.CreateCounter<long>("jamba.requests.rejected", "{request}", "Requests refused because the engine's queue was full.");
    internal static readonly Counter<long> PromptTokens = Meter.CreateCounter<long>("jamba.prompt_tokens", "{token}", "Prompt tokens run through the model.");
    internal static readonly Counter<long> ReusedPromptTokens = Meter.CreateCounter<long>("jamba.prompt_tokens.reused", "{token}", "Prompt tokens whose state came from a snapshot.");
    internal static readonly Counter<long> CompletionTokens = Meter.CreateCounter<long>("jamba.completion_tokens", "{token}", "Tokens generated.");

    internal static readonly Histogram<double> TimeToFirstToken = Meter.CreateHistogram<double>("jamba.time_to_first_token", "s", "Time from a request's submission to its first token.",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] });
    internal static readonly Histogram<double> TimePerOutputToken = Meter.CreateHistogram<double>("jamba.time_per_output_token", "s", "Time between two generated tokens of one sequence.",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1] });

    static EngineInstruments()
    {
        Meter.CreateObservableGauge("jamba.queue.depth", () => Observe(e => e.QueuedCount), "{request}", "Requests waiting for a sequence slot.");
        Meter.CreateObservableGauge("jamba.sequences.running", () => Observe(e => e.RunningCount), "{sequence}", "Sequences admitted (prefilling or decoding).");
        Meter.CreateObservableGauge("jamba.cache.bytes", () => Observe(e => e.ActiveCacheBytes), "By", "Bytes allocated for the running sequences' caches.");
        Meter.CreateObservableGauge("jamba.prefix_cache.bytes", () => Observe(e => e.Metrics.PrefixCacheBytes), "By", "Bytes held by automatic prefix snapshots.");
        Meter.CreateObservableGauge("jamba.prefix_cache.entries", () => Observe(e => (long)e.Metrics.PrefixCacheEntries), "{snapshot}", "Automatic prefix snapshots kept.");
    }

    internal static TagList Tags(JambaEngine engine) => new() { { "model", engine.Name } };

    internal static void Register(JambaEngine engine)
    {
        lock (Engines)
        {
            Engines.RemoveAll(w => !w.TryGetTarget(out _));
            Engines.Add(new WeakReference<JambaEngine>(engine));
        }
    }

    internal static void Unregister(JambaEngine engine)
    {
        lock (Engines) Engines.RemoveAll(w => !w.TryGetTarget(out var e) || ReferenceEquals(e, engine));
    }

    private static IEnumerable<Measurement<long>> Observe(Func<JambaEngine, long> read)
    {
        List<JambaEngine> live;
        lock (Engines) live = Engines.Select(w => w.TryGetTarget(out var e) ? e : null).OfType<JambaEngine>().ToList();
        return live.Select(e => new Measurement<long>(read(e), Tags(e))).ToList();
    }
}
