using TorchSharp;

namespace Jamba.Inference.Native;

/// <summary>
/// Checks once, before the first tensor, that TorchSharp's native runtime loads, and turns the runtime's failure (a
/// <see cref="DllNotFoundException"/> listing every probed path) into one that says what to do: a library references
/// <c>TorchSharp</c> only, and the application must reference a backend package.
/// </summary>
public static class TorchRuntime
{
    /// <summary>The backend packages, by use.</summary>
    public const string BackendAdvice =
        "Add a TorchSharp backend package to the application's project (libraries such as Jamba.Inference reference TorchSharp only; " +
        "the application picks the backend): <PackageReference Include=\"TorchSharp-cpu\" Version=\"0.107.0\" /> for CPUs, or " +
        "TorchSharp-cuda-linux / TorchSharp-cuda-windows 0.107.0 for NVIDIA GPUs.";

    private static readonly object Gate = new();
    private static bool _available;

    /// <summary>Loads TorchSharp's native runtime if it is not loaded yet (idempotent, thread-safe).</summary>
    /// <exception cref="JambaNativeLibraryException">The native runtime cannot be loaded; the message names the package to add
    /// (or, when a backend is there but does not load, what the loader found).</exception>
    public static void EnsureAvailable()
    {
        if (Volatile.Read(ref _available)) return;
        lock (Gate)
        {
            if (_available) return;
            TorchNativeLoader.EnsureInitialized();
            try
            {
                torch.InitializeDeviceType(DeviceType.CPU);
            }
            catch (Exception ex) when (Explain(ex) is { } message)
            {
                throw new JambaNativeLibraryException(message, ex);
            }
            Volatile.Write(ref _available, true);
        }
    }

    /// <summary>The message for a failure to load the native runtime, or null when <paramref name="ex"/> is something else.</summary>
    internal static string? Explain(Exception ex)
    {
        var root = ex;
        while (root is TypeInitializationException { InnerException: { } inner }) root = inner;
        bool missing = root is DllNotFoundException
            || root is NotSupportedException && root.Message.Contains("libtorch", StringComparison.OrdinalIgnoreCase)
            || root.Message.Contains("LibTorchSharp", StringComparison.Ordinal);
        if (!missing) return null;
        // TorchSharp's own package carries libLibTorchSharp; the backend package brings libtorch next to it, and TorchSharp
        // says "doesn't contain a reference to libtorch-…" when it is absent.
        bool saysNoBackend = Messages(ex).Any(m => m.Contains("contain a reference to libtorch", StringComparison.OrdinalIgnoreCase));
        bool backendPresent = !saysNoBackend && TorchNativeLoader.FindBackend() is { } lib
            && (File.Exists(Path.Combine(Path.GetDirectoryName(lib)!, "libtorch.so")) || File.Exists(Path.Combine(Path.GetDirectoryName(lib)!, "libtorch_cpu.so")));
        return backendPresent
            ? $"TorchSharp's native library was found but could not be loaded ({FirstLine(root.Message)}). {TorchNativeLoader.Diagnostics}".TrimEnd()
            : $"TorchSharp's native library (LibTorchSharp) was not found: the application has no TorchSharp backend package. {BackendAdvice}";
    }

    private static IEnumerable<string> Messages(Exception? ex)
    {
        for (; ex is not null; ex = ex.InnerException) yield return ex.Message;
    }

    private static string FirstLine(string s)
    {
        int nl = s.IndexOf('\n');
        return (nl < 0 ? s : s[..nl]).Trim();
    }
}
