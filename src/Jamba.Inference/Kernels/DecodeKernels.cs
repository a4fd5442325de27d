namespace Jamba.Inference.Kernels;

/// <summary>The switch shared by the CPU decode kernels that replace a tensor-op path (<see cref="MambaDecodeKernel"/>,
/// <see cref="DecodeAttention"/>, the MLP's gated pair): on by default; <c>JAMBA_DECODE_KERNELS=0</c> turns them off for a
/// process (to benchmark both paths), and tests flip it to compare against the tensor path.</summary>
internal static class DecodeKernels
{
    /// <summary>Whether the decode kernels are used.</summary>
    internal static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("JAMBA_DECODE_KERNELS") != "0";
}
