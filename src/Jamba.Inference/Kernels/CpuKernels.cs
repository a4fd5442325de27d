namespace Jamba.Inference.Kernels;

/// <summary>
/// The one switch over every hand-written CPU kernel of this room (GEMV, RMSNorm, SiLU·up, the Mamba prefill and decode
/// kernels, the selective scan, decode attention). Off, the model runs exactly the device-agnostic tensor path — the code
/// a CUDA device runs — so CI can test that path on a CPU. On by default; the environment variable
/// <c>JAMBA_CPU_KERNELS=0</c> turns it off for a process, and a model loaded with
/// <c>ModelOptions.CpuKernels = false</c> runs its forwards with it off (<see cref="Use"/>). The finer switches
/// (<c>JAMBA_DECODE_GEMV</c>, <c>JAMBA_DECODE_KERNELS</c>, <c>JAMBA_PREFILL_KERNELS</c>) still select single families when
/// this one is on.
/// </summary>
/// <remarks>Every kernel's own <c>Applies</c>/<c>Supports</c> check reads this switch first: that check is the one dispatch
/// point of its concept, and the modules of <c>Modeling</c> call nothing else to choose a path.</remarks>
public static class CpuKernels
{
    private static bool _processEnabled = Environment.GetEnvironmentVariable("JAMBA_CPU_KERNELS") != "0";
    [ThreadStatic] private static int _override; // 0: none, 1: on, 2: off (a forward runs on one thread)

    /// <summary>Whether the CPU kernels are used where they apply: the calling thread's override while a model with its own
    /// setting runs a forward (<see cref="Use"/>), else the process-wide setting. Setting it changes the process-wide setting.</summary>
    public static bool Enabled
    {
        get => _override == 0 ? _processEnabled : _override == 1;
        set => _processEnabled = value;
    }

    /// <summary>The process-wide setting (<c>JAMBA_CPU_KERNELS</c>, or what <see cref="Enabled"/> was last set to).</summary>
    public static bool ProcessEnabled => _processEnabled;

    /// <summary>Overrides the switch on the calling thread until the returned scope is disposed (scopes nest);
    /// <paramref name="enabled"/> null keeps the current value.</summary>
    public static Scope Use(bool? enabled)
    {
        int previous = _override;
        if (enabled is { } on) _override = on ? 1 : 2;
        return new Scope(previous);
    }

    /// <summary>Restores the previous override of the thread when disposed.</summary>
    public readonly struct Scope : IDisposable
    {
        private readonly int _previous;
        internal Scope(int previous) => _previous = previous;

        /// <inheritdoc />
        public void Dispose() => _override = _previous;
    }
}
