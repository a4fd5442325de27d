using Jamba.Inference.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Tests.Fixtures;

/// <summary>Tensors from fixture arrays and an observer that keeps copies of intermediate values.</summary>
internal static class ModelTestHelpers
{
    public static Tensor Ids(long[][] rows) => torch.tensor(rows.SelectMany(r => r).ToArray(), [rows.Length, rows[0].Length], dtype: ScalarType.Int64);

    /// <summary>The SSM state and conv window of every Mamba layer in <paramref name="cache"/>, as fp32 arrays.</summary>
    public static IEnumerable<float[]> MambaStateArrays(JambaForCausalLM model, Jamba.Inference.Caching.HybridCache cache)
    {
        for (int layer = 0; layer < model.Config.NumHiddenLayers; layer++)
        {
            if (model.Config.MixerKind(layer) != Jamba.Inference.Config.JambaMixerKind.Mamba) continue;
            var (conv, ssm) = cache.MambaStates(layer);
            using (var s = ssm.to(ScalarType.Float32)) yield return s.data<float>().ToArray();
            using (var c = conv.to(ScalarType.Float32)) yield return c.data<float>().ToArray();
        }
    }

    /// <summary>The largest element-wise difference over matching rows.</summary>
    public static float WorstDifference(List<float[]> a, List<float[]> b)
    {
        if (a.Count != b.Count) throw new ArgumentException($"{a.Count} rows against {b.Count}.");
        return a.Zip(b).Max(p => p.First.Zip(p.Second).Max(q => Math.Abs(q.First - q.Second)));
    }

    /// <summary>The median over rows (positions) of each row's root-mean-square difference: a stable measure of accuracy in
    /// bf16, where a few rows can jump when rounding flips a router's top-k choice (the MoE fixtures do that).</summary>
    public static float MedianRms(List<float[]> a, List<float[]> b)
    {
        var rows = a.Zip(b).Select(p => Math.Sqrt(p.First.Zip(p.Second).Average(q => (double)(q.First - q.Second) * (q.First - q.Second)))).Order().ToArray();
        return (float)(rows.Length % 2 == 1 ? rows[rows.Length / 2] : (rows[rows.Length / 2 - 1] + rows[rows.Length / 2]) / 2);
    }

    public static JambaForCausalLM LoadFp32(string folder) =>
        JambaForCausalLM.FromPretrained(folder, new ModelOptions { DType = ComputeDType.Float32 });

    /// <summary>Loads the fixture in fp32 for the given forward path (<see cref="ModelOptions.CpuKernels"/>): the CPU kernels on the
    /// CPU, the device path on <see cref="TestDevice.Name"/> (<c>JAMBA_TEST_DEVICE</c>, default <c>cpu</c>).</summary>
    public static JambaForCausalLM LoadFp32(string folder, ForwardPath path) =>
        JambaForCausalLM.FromPretrained(folder, new ModelOptions
        {
            DType = ComputeDType.Float32,
            CpuKernels = path == ForwardPath.CpuKernels ? null : false,
            Device = path == ForwardPath.Device ? TestDevice.Name : "cpu",
        });

    /// <summary>Copies layer outputs (fp64, CPU) and router choices of one forward.</summary>
    public sealed class Recorder : IForwardObserver, IDisposable
    {
        public Tensor? Embeddings;
        public readonly SortedDictionary<int, Tensor> Layers = new();
        public readonly SortedDictionary<int, (long[] Experts, double[] Weights, int K)> Routers = new();

        public void OnEmbeddings(Tensor hidden) => Embeddings = hidden.detach().to(ScalarType.Float64).cpu().DetachFromDisposeScope();

        public void OnLayerOutput(int layer, Tensor hidden) => Layers[layer] = hidden.detach().to(ScalarType.Float64).cpu().DetachFromDisposeScope();

        public void OnRouter(int layer, Tensor experts, Tensor weights)
        {
            using var e = experts.cpu();
            using var w = weights.to(ScalarType.Float64).cpu();
            Routers[layer] = (e.data<long>().ToArray(), w.data<double>().ToArray(), (int)experts.shape[1]);
        }

        public void Dispose()
        {
            Embeddings?.Dispose();
            foreach (var t in Layers.Values) t.Dispose();
        }
    }

    /// <summary>Greedy continuation by full re-forward each step (no cache), extending the mask with ones.</summary>
    public static long[][] GreedyFullReforward(JambaForCausalLM model, long[][] ids, long[][] mask, int steps)
    {
        var rows = ids.Select(r => r.ToList()).ToArray();
        var masks = mask.Select(r => r.ToList()).ToArray();
        var produced = ids.Select(_ => new List<long>()).ToArray();
        for (int s = 0; s < steps; s++)
        {
            using var scope = NewDisposeScope();
            var input = Ids(rows.Select(r => r.ToArray()).ToArray());
            Tensor? m = masks.Any(r => r.Contains(0)) ? Ids(masks.Select(r => r.ToArray()).ToArray()) : null;
            var logits = model.Forward(input, m, null, LogitPositions.Last);
            var next = logits.squeeze(1).argmax(-1).data<long>().ToArray();
            for (int b = 0; b < rows.Length; b++)
            {
                rows[b].Add(next[b]);
                masks[b].Add(1);
                produced[b].Add(next[b]);
            }
        }
        return produced.Select(p => p.ToArray()).ToArray();
    }
}
