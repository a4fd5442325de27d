namespace Jamba.Inference.Kernels;

/// <summary>
/// The one switch over every hand-written CPU kernel of this room (GEMV, RMSNorm, SiLU·up, the Mamba prefill and decode
/// kernels, the selective scan, decode attention). Off, the model runs exactly the device-agnostic tensor path — the code
/// a CUDA device runs — so CI can test that path on a CPU. On by default; the environment variable
/// <c>JAMBA_CPU_KERNELS=0</c> turns it off for a process. The finer switches (<c>JAMBA_DECODE_GEMV</c>,
/// <c>JAMBA_DECODE_KERNELS</c>, <c>JAMBA_PREFILL_KERNELS</c>) still select single families when this one is on.
/// </summary>
/// <remarks>Every kernel's own <c>Applies</c>/<c>Supports</c> check reads this switch first: that check is the one dispatch
/// point of its concept, and the modules of <c>Modeling</c> call nothing else to choose a path.</remarks>
public static class CpuKernels
{
    /// <summary>Whether the CPU kernels are used where they apply (process-wide; read at every dispatch).</summary>
    public static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("JAMBA_CPU_KERNELS") != "0";
}
