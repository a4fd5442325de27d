using System.Text.RegularExpressions;
using Jamba.Inference.Config;
using Jamba.Inference.Modeling;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Jamba.Inference.Checkpoint;

/// <summary>
/// Copies checkpoint tensors into a model's parameters by Hugging Face name, one tensor at a time (peak
/// memory ≈ the weights plus one tensor). Every name is checked both ways and every shape exactly: a
/// missing, unexpected or mis-shaped tensor is an error naming it (no silent broadcasting).
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
        long total = plan.Sum(p => checkpoint.GetInfo(p.Source).ByteLength), done = 0;
        int count = 0;
        using var noGrad = torch.no_grad();
        foreach (var (source, target) in plan)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var info = checkpoint.GetInfo(source);
            CopyInto(checkpoint.FileOf(source), info, expected[target]);
            done += info.ByteLength;
            progress?.Report(new LoadProgress(done, total, ++count, plan.Count, source));
        }
        foreach (var layer in model.model.layers) layer.mamba?.RefreshDerived();
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

    private static ScalarType ToScalarType(SafetensorsFile file, SafetensorsTensorInfo info) => info.DType switch
    {
        SafetensorsDType.F32 => ScalarType.Float32,
        SafetensorsDType.F16 => ScalarType.Float16,
        SafetensorsDType.BF16 => ScalarType.BFloat16,
        _ => throw new JambaCheckpointException(file.Path, info.Name, $"dtype {info.DType} is not a supported weight type (F32, F16, BF16)."),
    };

    private static void CopyInto(SafetensorsFile file, SafetensorsTensorInfo info, Parameter target)
    {
        var sourceType = ToScalarType(file, info);
        bool direct = sourceType == target.dtype && target.device_type == DeviceType.CPU && target.is_contiguous();
        var staging = direct ? target : torch.empty(info.Shape, dtype: sourceType);
        try
        {
            using var flat = staging.view(-1);
            int elementSize = SafetensorsFile.ElementSize(info.DType);
            const long slice = 1L << 30;
            file.ReadSlices(info, slice, (span, offset) =>
            {
                using var part = flat.narrow(0, offset / elementSize, span.Length / elementSize);
                span.CopyTo(part.bytes);
            });
            if (!direct) target.copy_(staging);
        }
        finally
        {
            if (!direct) staging.Dispose();
        }
    }
}
