using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Checkpoint;

/// <summary>
/// Copies checkpoint tensors into tensors the caller allocated, by checkpoint name, one tensor at a time (peak memory ≈ the
/// targets plus one tensor), converting the stored dtype to the target's. Knows files and names only: which tensor goes
/// where is the model's business (<c>Modeling.WeightLoader</c>).
/// </summary>
public static class TensorLoader
{
    /// <summary>Copies each <c>Source</c> tensor of <paramref name="checkpoint"/> into its <c>Target</c> (same shape).</summary>
    /// <exception cref="JambaCheckpointException">A tensor is of an unsupported dtype or of another shape than its target.</exception>
    /// <exception cref="OperationCanceledException">Cancelled between two tensors.</exception>
    public static void Load(SafetensorsCheckpoint checkpoint, IReadOnlyList<(string Source, Tensor Target)> plan,
        IProgress<LoadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(plan);
        Load(checkpoint, plan.Select(p => new TensorLoadItem(p.Source, p.Target)).ToList(), progress, cancellationToken);
    }

    /// <summary>Reads each item's <c>Source</c> tensor: into its <see cref="TensorLoadItem.Target"/>, or (without one) into a
    /// temporary host tensor of the stored dtype handed to <see cref="TensorLoadItem.Consume"/> and freed right after
    /// (a consumer that converts the tensor, e.g. quantizes it, so that only one such tensor exists at a time).</summary>
    /// <exception cref="JambaCheckpointException">A tensor is of an unsupported dtype or of another shape than its target.</exception>
    /// <exception cref="OperationCanceledException">Cancelled between two tensors.</exception>
    public static void Load(SafetensorsCheckpoint checkpoint, IReadOnlyList<TensorLoadItem> plan,
        IProgress<LoadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(plan);
        long total = plan.Sum(p => checkpoint.GetInfo(p.Source).ByteLength), done = 0;
        int count = 0;
        using var noGrad = torch.no_grad();
        foreach (var item in plan)
        {
            cancellationToken.ThrowIfCancellationRequested();
            string source = item.Source;
            var info = checkpoint.GetInfo(source);
            var file = checkpoint.FileOf(source);
            if (item.Target is { } target)
            {
                if (!info.Shape.SequenceEqual(target.shape))
                    throw new JambaCheckpointException(file.Path, source,
                        $"shape [{string.Join(", ", info.Shape)}] does not match the target's [{string.Join(", ", target.shape)}].");
                CopyInto(file, info, target);
            }
            else
            {
                if (item.Consume is null) throw new ArgumentException($"Item '{source}' has neither a target nor a consumer.", nameof(plan));
                using var staging = torch.empty(info.Shape, dtype: ToScalarType(file, info));
                CopyInto(file, info, staging);
                item.Consume(staging);
            }
            done += info.ByteLength;
            progress?.Report(new LoadProgress(done, total, ++count, plan.Count, source));
        }
    }

    private static ScalarType ToScalarType(SafetensorsFile file, SafetensorsTensorInfo info) => info.DType switch
    {
        SafetensorsDType.F32 => ScalarType.Float32,
        SafetensorsDType.F16 => ScalarType.Float16,
        SafetensorsDType.BF16 => ScalarType.BFloat16,
        _ => throw new JambaCheckpointException(file.Path, info.Name, $"dtype {info.DType} is not a supported weight type (F32, F16, BF16)."),
    };

    private static void CopyInto(SafetensorsFile file, SafetensorsTensorInfo info, Tensor target)
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

/// <summary>One tensor for <see cref="TensorLoader.Load(SafetensorsCheckpoint, IReadOnlyList{TensorLoadItem}, IProgress{LoadProgress}?, CancellationToken)"/>:
/// copied into <paramref name="Target"/>, or, when that is null, read into a temporary and passed to <paramref name="Consume"/>.</summary>
/// <param name="Source">The checkpoint's tensor name.</param>
/// <param name="Target">The tensor to fill (same shape; the stored dtype is converted to its dtype).</param>
/// <param name="Consume">Receives the tensor as stored (host, the checkpoint's dtype) when there is no target; it must not keep it.</param>
public sealed record TensorLoadItem(string Source, Tensor? Target = null, Action<Tensor>? Consume = null);
