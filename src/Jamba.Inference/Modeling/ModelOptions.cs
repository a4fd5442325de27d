using TorchSharp;

namespace Jamba.Inference.Modeling;

/// <summary>The floating-point type the model computes in.</summary>
public enum ComputeDType
{
    /// <summary>bfloat16 on CUDA and on CPUs with native bf16 arithmetic (AVX512-BF16 / AMX), else float32.</summary>
    Auto,
    /// <summary>float32: the reference precision.</summary>
    Float32,
    /// <summary>bfloat16: half the memory traffic; fast where the hardware has bf16 arithmetic.</summary>
    BFloat16,
    /// <summary>float16.</summary>
    Float16,
}

/// <summary>How the weights of the large projections are stored (quantized at load from the checkpoint's floats).</summary>
public enum WeightQuantization
{
    /// <summary>As the compute dtype (the checkpoint's values, converted).</summary>
    None,
    /// <summary>The mixture-of-experts weights as symmetric per-output-channel int8 (most of a Jamba's bytes; what vLLM's
    /// <c>experts_int8</c> does for Jamba); everything else in the compute dtype.</summary>
    Int8Experts,
    /// <summary>Every large projection as per-output-channel int8: the experts, dense MLPs, attention <c>q/k/v/o</c>, Mamba
    /// <c>in_proj</c>/<c>x_proj</c>/<c>out_proj</c> and the LM head (a tied embedding gets an int8 copy for the head; the table
    /// itself, read one row per token, stays). The router, <c>dt_proj</c>, norms and convolutions stay in the compute dtype.</summary>
    Int8,
}

/// <summary>Where and how a model runs.</summary>
public sealed class ModelOptions
{
    private string _device = "cpu";

    /// <summary>TorchSharp device string: <c>cpu</c>, <c>cuda</c>, <c>cuda:1</c>… (default <c>cpu</c>).</summary>
    /// <exception cref="ArgumentException">Not a device TorchSharp understands.</exception>
    public string Device
    {
        get => _device;
        set
        {
            ArgumentException.ThrowIfNullOrWhiteSpace(value, nameof(Device));
            string v = value.Trim().ToLowerInvariant();
            if (!(v == "cpu" || v == "cuda" || v.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(v.AsSpan(5), out int i) && i >= 0))
                throw new ArgumentException($"Device must be 'cpu', 'cuda' or 'cuda:N', found '{value}'.", nameof(Device));
            _device = v;
        }
    }

    /// <summary>Compute dtype (default <see cref="ComputeDType.Auto"/>).</summary>
    public ComputeDType DType { get; set; } = ComputeDType.Auto;

    /// <summary>Whether this model's forwards use the hand-written CPU kernels where they apply: <c>false</c> runs exactly the
    /// device-agnostic tensor path (the code a CUDA device runs) on a CPU too; <c>true</c> uses them even when the process
    /// switch (<c>JAMBA_CPU_KERNELS=0</c>) is off; null (the default) follows the process switch
    /// (<see cref="Jamba.Inference.Kernels.CpuKernels.Enabled"/>). The kernels never run on other devices.</summary>
    public bool? CpuKernels { get; set; }

    /// <summary>Weight storage (default <see cref="WeightQuantization.None"/>). int8 halves the bytes a bf16 decode reads per
    /// token; decode-sized products run on int8 CPU kernels (AVX512-BW or AVX2), prefill-sized ones dequantize each weight
    /// to the compute dtype for libtorch's GEMM. Not with <see cref="Trainable"/>.</summary>
    public WeightQuantization Quantization { get; set; } = WeightQuantization.None;

    /// <summary>Create parameters that require gradients (training). Default false.</summary>
    public bool Trainable { get; set; }

    /// <summary>The TorchSharp device.</summary>
    public torch.Device TorchDevice => new(_device);

    /// <summary>The dtype <see cref="DType"/> resolves to on <see cref="Device"/>.</summary>
    public torch.ScalarType ResolveScalarType() => DType switch
    {
        ComputeDType.Float32 => torch.ScalarType.Float32,
        ComputeDType.BFloat16 => torch.ScalarType.BFloat16,
        ComputeDType.Float16 => torch.ScalarType.Float16,
        _ => _device.StartsWith("cuda", StringComparison.Ordinal) || CpuFeatures.HasNativeBf16 ? torch.ScalarType.BFloat16 : torch.ScalarType.Float32,
    };
}

/// <summary>CPU capabilities that decide defaults.</summary>
public static class CpuFeatures
{
    private static readonly Lazy<bool> Bf16 = new(() =>
    {
        try
        {
            if (!OperatingSystem.IsLinux() || !File.Exists("/proc/cpuinfo")) return false;
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("flags", StringComparison.Ordinal))
                    return line.Contains(" avx512_bf16", StringComparison.Ordinal) || line.Contains(" amx_bf16", StringComparison.Ordinal);
        }
        catch (IOException) { }
        return false;
    });

    /// <summary>Whether the CPU has native bf16 arithmetic (AVX512-BF16 or AMX-BF16).</summary>
    public static bool HasNativeBf16 => Bf16.Value;
}
