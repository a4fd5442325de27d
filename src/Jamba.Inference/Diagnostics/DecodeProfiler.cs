using Jamba.Inference.Modeling;
using Jamba.Inference.Kernels;
using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Diagnostics;

/// <summary>Where one decode step's time goes, per decoder layer and per layer kind.</summary>
/// <param name="StepMilliseconds">Mean wall time of a whole decode step (batch 1).</param>
/// <param name="EmbeddingMilliseconds">Mean time to the embedding output.</param>
/// <param name="LayerMilliseconds">Mean time of each decoder layer (mixer + feed-forward).</param>
/// <param name="LayerKinds">Each layer's kind, e.g. <c>mamba+moe</c>, <c>attention+mlp</c>.</param>
/// <param name="HeadMilliseconds">Mean time of the final norm, LM head and the logits' transfer.</param>
public sealed record DecodeProfile(double StepMilliseconds, double EmbeddingMilliseconds, double[] LayerMilliseconds, string[] LayerKinds, double HeadMilliseconds)
{
    /// <summary>Total mean milliseconds per layer kind.</summary>
    public IReadOnlyDictionary<string, double> ByKind =>
        LayerKinds.Zip(LayerMilliseconds).GroupBy(x => x.First).ToDictionary(g => g.Key, g => g.Sum(x => x.Second));
}

/// <summary>
/// Times decode steps layer by layer (CPU: the forward is synchronous, so the time between two layer outputs is the
/// layer's). Runs on the calling thread over its own cache after a prefill of <c>contextTokens</c> random tokens.
/// </summary>
public static class DecodeProfiler
{
    /// <summary>Profiles <paramref name="steps"/> decode steps after <paramref name="contextTokens"/> of context (after 3 warm-up steps).</summary>
    public static DecodeProfile Profile(JambaForCausalLM model, int contextTokens = 64, int steps = 32, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        var config = model.Config;
        var rng = new Random(seed);
        using var cache = model.CreateCache(1, contextTokens + steps + 8);
        using (var scope = NewDisposeScope())
        {
            var prompt = torch.tensor(Enumerable.Range(0, contextTokens).Select(_ => (long)rng.Next(config.VocabSize)).ToArray(), [1, contextTokens]);
            model.Forward(prompt, null, cache, LogitPositions.Last);
        }
        var timer = new Timer(config.NumHiddenLayers);
        long next = rng.Next(config.VocabSize);
        for (int s = -3; s < steps; s++)
        {
            using var scope = NewDisposeScope();
            var ids = torch.tensor(new[] { next }, [1, 1]);
            timer.Start();
            var logits = model.Forward(ids, null, cache, LogitPositions.Last, timer);
            next = logits.argmax(-1).item<long>();
            timer.Stop(record: s >= 0);
        }
        string Kind(int i) => $"{config.MixerKind(i).ToString().ToLowerInvariant()}+{(config.IsMoeLayer(i) ? "moe" : "mlp")}";
        double n = steps;
        return new DecodeProfile(timer.Total / n, timer.Embedding / n, timer.Layers.Select(t => t / n).ToArray(),
            Enumerable.Range(0, config.NumHiddenLayers).Select(Kind).ToArray(), timer.Head / n);
    }

    private sealed class Timer(int layers) : IForwardObserver
    {
        private long _start, _last;
        private readonly double[] _pending = new double[layers];
        private double _pendingEmbedding;
        public readonly double[] Layers = new double[layers];
        public double Embedding, Head, Total;

        private static double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;

        public void Start() => _start = _last = Stopwatch.GetTimestamp();

        public void OnEmbeddings(Tensor hidden)
        {
            long now = Stopwatch.GetTimestamp();
            _pendingEmbedding = Ms(now - _last);
            _last = now;
        }

        public void OnLayerOutput(int layer, Tensor hidden)
        {
            long now = Stopwatch.GetTimestamp();
            _pending[layer] = Ms(now - _last);
            _last = now;
        }

        public void Stop(bool record)
        {
            long now = Stopwatch.GetTimestamp();
            if (!record) return;
            Embedding += _pendingEmbedding;
            for (int i = 0; i < Layers.Length; i++) Layers[i] += _pending[i];
            Head += Ms(now - _last);
            Total += Ms(now - _start);
        }
    }
}
