using System.Text.RegularExpressions;
using Jamba.Inference.Checkpoint;
using Jamba.Inference.Config;
using Jamba.Inference.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Jamba.Inference.Modeling;

/// <summary>
/// Maps a checkpoint's Hugging Face tensor names onto a model's parameters (the model's quirks live here: a dense MLP
/// stored as <c>feed_forward.experts.0.*</c>, a stored head beside tied embeddings) and has
/// <see cref="TensorLoader"/> copy them, one tensor at a time (peak memory ≈ the weights plus one tensor). Every name is
/// checked both ways and every shape exactly: a missing, unexpected or mis-shaped tensor is an error naming it (no silent
/// broadcasting). Derived buffers (<c>A = −exp(A_log)</c>) are refreshed afterwards.
/// </summary>
public static partial class WeightLoader
{
    [GeneratedRegex(@"^model\.layers\.(\d+)\.feed_forward\.experts\.0\.(gate_proj|up_proj|down_proj)\.weight$")]
    private static partial Regex DenseAsExpertZero();

    /// <summary>Loads <paramref name="checkpoint"/> into <paramref name="model"/>.</summary>
    /// <exception cref="JambaCheckpointException">A tensor is missing, unexpected, mis-shaped or of an unsupported dtype.</exception>
    /// <exception cref="OperationCanceledException">Cancelled between two tensors.</exception>
    public static void Load(JambaForCausalLM model, SafetensorsCheckpoint checkpoint, IProgress<LoadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var expected = model.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        var plan = Plan(model, checkpoint, expected);
        // int8 projections: their weight parameters are shape-only placeholders; each tensor is quantized as it is read.
        var quantized = model.named_modules()
            .Where(m => m.module is Projection { Quantized: not null })
            .ToDictionary(m => m.name + ".weight", m => ((Projection)m.module).Quantized!, StringComparer.Ordinal);
        TensorLoader.Load(checkpoint, plan.Select(p => quantized.TryGetValue(p.Target, out var q)
            ? new TensorLoadItem(p.Source, Consume: t => QuantizeInto(checkpoint, p.Source, t, q))
            : new TensorLoadItem(p.Source, expected[p.Target])).ToList(), progress, cancellationToken);
        foreach (var layer in model.model.layers) layer.mamba?.RefreshDerived();
        model.RefreshQuantizedHead();
    }

    private static void QuantizeInto(SafetensorsCheckpoint checkpoint, string name, Tensor source, Int8Weight target)
    {
        try
        {
            Int8Weight.Quantize(source, target.Data, target.Scale);
        }
        catch (ArgumentException e)
        {
            throw new JambaCheckpointException(checkpoint.FileOf(name).Path, name, $"cannot be quantized to int8: {e.Message}");
        }
    }

    /// <summary>Pairs every checkpoint tensor with a parameter (checkpoint name, parameter name), checking names and shapes.</summary>
    internal static List<(string Source, string Target)> Plan(JambaForCausalLM model, SafetensorsCheckpoint checkpoint, IReadOnlyDictionary<string, Parameter> expected) =>
        Plan(model.Config, checkpoint, expected.ToDictionary(kv => kv.Key, kv => kv.Value.shape, StringComparer.Ordinal));

    /// <summary>Pairs every checkpoint tensor with a parameter of the given shapes (checkpoint name, parameter name);
    /// usable before the model exists (see <see cref="CheckpointConfigCheck"/>).</summary>
    internal static List<(string Source, string Target)> Plan(JambaConfig config, SafetensorsCheckpoint checkpoint, IReadOnlyDictionary<string, long[]> expected)
    {
        var plan = new List<(string, string)>();
        var covered = new HashSet<string>(StringComparer.Ordinal);
        var unexpected = new List<string>();
        foreach (var name in checkpoint.TensorNames.Order(StringComparer.Ordinal))
        {
            string target = name;
            var dense = DenseAsExpertZero().Match(name);
            if (dense.Success && int.TryParse(dense.Groups[1].Value, out int layer) && layer < config.NumHiddenLayers && !config.IsMoeLayer(layer))
                target = $"model.layers.{layer}.feed_forward.{dense.Groups[2].Value}.weight";
            if (name == "lm_head.weight" && config.TieWordEmbeddings)
                continue; // HF ignores a stored head when the embedding is tied (it is the same tensor)
            if (!expected.TryGetValue(target, out var shape))
            {
                unexpected.Add(name);
                continue;
            }
            if (!covered.Add(target))
                throw new JambaCheckpointException(checkpoint.FileOf(name).Path, name, $"provides parameter '{target}' a second time.");
            var info = checkpoint.GetInfo(name);
            if (!info.Shape.SequenceEqual(shape))
                throw new JambaCheckpointException(checkpoint.FileOf(name).Path, name,
                    $"shape [{string.Join(", ", info.Shape)}] does not match the model's [{string.Join(", ", shape)}] for this config.");
            plan.Add((name, target));
        }
        if (unexpected.Count > 0)
            throw new JambaCheckpointException(checkpoint.FileOf(unexpected[0]).Path, unexpected[0],
                $"unexpected tensor: the config has no such parameter{(unexpected.Count > 1 ? $" ({unexpected.Count} unexpected in all: {string.Join(", ", unexpected.Take(5))}{(unexpected.Count > 5 ? ", …" : "")})" : "")}.");
        var missing = expected.Keys.Where(k => !covered.Contains(k)).Order(StringComparer.Ordinal).ToList();
        if (missing.Count > 0)
            throw new JambaCheckpointException(checkpoint.Folder, missing[0],
                $"missing from the checkpoint{(missing.Count > 1 ? $" ({missing.Count} missing in all: {string.Join(", ", missing.Take(5))}{(missing.Count > 5 ? ", …" : "")})" : "")}.");
        return plan;
    }
}
