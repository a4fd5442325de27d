using Jamba.Inference.Checkpoint;
using static TorchSharp.torch;

namespace Jamba.Inference.Modeling;

/// <summary>Writes a model as a Hugging Face checkpoint folder: <c>config.json</c> and safetensors weights
/// (one file, or shards with <c>model.safetensors.index.json</c>), with HF's tensor names (the parameters' own).</summary>
public static class CheckpointWriter
{
    /// <summary>Saves <paramref name="model"/> into <paramref name="folder"/>.</summary>
    /// <param name="model">The model.</param>
    /// <param name="folder">Target folder (created if needed).</param>
    /// <param name="dtype">Storage dtype (F32, F16 or BF16); null keeps the compute dtype.</param>
    /// <param name="maxShardBytes">Split into shards of at most this many bytes; 0 writes one file.</param>
    /// <exception cref="NotSupportedException">The model's weights are quantized.</exception>
    public static void Save(JambaForCausalLM model, string folder, ScalarType? dtype = null, long maxShardBytes = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.Quantization != WeightQuantization.None)
            throw new NotSupportedException($"The model holds {model.Quantization} weights, quantized at load; save the checkpoint it was loaded from instead (Hugging Face checkpoints store floats).");
        CheckpointFolderWriter.Save(model.Config, model.named_parameters().Select(p => (p.name, (Tensor)p.parameter)), folder, dtype ?? model.DType, maxShardBytes);
    }
}
