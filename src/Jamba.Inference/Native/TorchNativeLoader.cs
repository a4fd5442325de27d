using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Loader;
using System.Security.Cryptography;

namespace Jamba.Inference.Native;

/// <summary>
/// Makes TorchSharp's native library load on Linux systems whose libstdc++ is older than the one
/// it was linked against, without touching the system.
/// </summary>
/// <remarks>
/// TorchSharp 0.107's <c>libLibTorchSharp.so</c> declares a need for <c>GLIBCXX_3.4.32</c> (GCC 13)
/// only because of <c>std::ios_base_library_init()</c>, a link-time marker that is never called.
/// Debian 12's libstdc++ stops at 3.4.30, so the dynamic loader refuses the library. When (and only
/// when) the libstdc++ of this process lacks a version that is on <see cref="MarkerOnlyVersions"/>,
/// this loader writes a copy of <c>libLibTorchSharp.so</c> whose requirement is marked weak
/// (<c>VER_FLG_WEAK</c>) into a per-user cache folder and hands that copy to TorchSharp through the
/// <see cref="AssemblyLoadContext.ResolvingUnmanagedDll"/> event, which fires only after the default probing failed. Where libstdc++ already has the version,
/// nothing is done. The hook is installed by a module initializer, so any application that uses
/// Jamba.Inference gets it before its first tensor; call <see cref="EnsureInitialized"/> explicitly
/// when TorchSharp is used before any Jamba type.
/// </remarks>
public static class TorchNativeLoader
{
    /// <summary>libstdc++ versions whose only symbols are link-time markers that are never called.</summary>
    private static readonly HashSet<string> MarkerOnlyVersions = new(StringComparer.Ordinal) { "GLIBCXX_3.4.32" };

    private const string LibraryFileName = "libLibTorchSharp.so";
    private static readonly object Gate = new();
    private static bool _initialized;
    private static IntPtr _patchedHandle;

    /// <summary>What the loader decided, for diagnostics (null until the native library was asked for).</summary>
    public static string? Diagnostics { get; private set; }

#pragma warning disable CA2255 // Runs before any Jamba type so TorchSharp finds its native library on older libstdc++.
    [ModuleInitializer]
    internal static void OnModuleLoad() => EnsureInitialized();
#pragma warning restore CA2255

    /// <summary>Installs the native-library hook for TorchSharp (idempotent, thread-safe).</summary>
    public static void EnsureInitialized()
    {
        lock (Gate)
        {
            if (_initialized) return;
            _initialized = true;
            if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux)) return;
            PreferPassiveOpenMpWaiting();
            // Fires only after the runtime's own probing failed, for DllImport and NativeLibrary.Load alike,
            // so applications with a working libstdc++ or their own resolver are never affected.
            var torchAssembly = typeof(TorchSharp.torch).Assembly;
            (AssemblyLoadContext.GetLoadContext(torchAssembly) ?? AssemblyLoadContext.Default).ResolvingUnmanagedDll += Resolve;
        }
    }

    /// <summary>
    /// libtorch's OpenMP threads busy-wait after every parallel op (libgomp's default spins for up to ~1 ms). The decode path
    /// runs its own multi-threaded kernels between libtorch ops (<c>DecodeGemv</c>), and on a machine with few cores those
    /// spinning threads take the cores the kernels need (measured here: a GEMV after a libtorch op took 0.55 ms instead of
    /// 0.32 ms). So, unless the user chose an OpenMP wait policy or spin count, waiting threads sleep (<c>OMP_WAIT_POLICY
    /// =PASSIVE</c>; large GEMMs measured the same). libgomp reads the variable when it is loaded, which is after this runs
    /// (TorchSharp loads libtorch on first use); the native environment is set because .NET keeps its own copy.
    /// </summary>
    private static void PreferPassiveOpenMpWaiting()
    {
        if (Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is not null || Environment.GetEnvironmentVariable("GOMP_SPINCOUNT") is not null) return;
        try
        {
            if (setenv("OMP_WAIT_POLICY", "PASSIVE", 0) == 0) Environment.SetEnvironmentVariable("OMP_WAIT_POLICY", "PASSIVE");
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            // not glibc/musl: leave the default
        }
    }

    [DllImport("libc", SetLastError = false)]
    private static extern int setenv([MarshalAs(UnmanagedType.LPUTF8Str)] string name, [MarshalAs(UnmanagedType.LPUTF8Str)] string value, int overwrite);

    private static IntPtr Resolve(Assembly assembly, string libraryName)
    {
        if (libraryName is not ("LibTorchSharp" or LibraryFileName)) return IntPtr.Zero;
        lock (Gate)
        {
            if (_patchedHandle != IntPtr.Zero) return _patchedHandle;
            try
            {
                _patchedHandle = LoadPatchedIfNeeded();
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidDataException or DllNotFoundException or BadImageFormatException)
            {
                Diagnostics = $"Could not prepare a patched {LibraryFileName}: {ex.Message}";
            }
            return _patchedHandle;
        }
    }

    private static IntPtr LoadPatchedIfNeeded()
    {
        string? original = FindOriginal();
        if (original is null)
        {
            Diagnostics = $"{LibraryFileName} not found next to the application; default loading used.";
            return IntPtr.Zero;
        }
        byte[] image = File.ReadAllBytes(original);
        var needs = ElfVersionPatcher.ReadVersionNeeds(image)
            .Where(n => n.File == "libstdc++.so.6" && !n.Weak).Select(n => n.Version).ToList();
        string? libstdcxx = FindLoadedLibStdCxx();
        if (libstdcxx is null)
        {
            Diagnostics = "libstdc++.so.6 is not loaded in this process; default loading used.";
            return IntPtr.Zero;
        }
        var provided = ElfVersionPatcher.ReadVersionDefinitions(File.ReadAllBytes(libstdcxx));
        var missing = needs.Where(v => !provided.Contains(v)).ToList();
        if (missing.Count == 0)
        {
            Diagnostics = $"{libstdcxx} provides every version {original} needs; nothing patched.";
            return IntPtr.Zero;
        }
        var unsafeMissing = missing.Where(v => !MarkerOnlyVersions.Contains(v)).ToList();
        if (unsafeMissing.Count > 0)
        {
            Diagnostics = $"{libstdcxx} lacks {string.Join(", ", unsafeMissing)} needed by {original}; " +
                          "these carry real symbols, so the library was not patched. Install a newer libstdc++ for TorchSharp.";
            return IntPtr.Zero;
        }

        foreach (var version in missing) ElfVersionPatcher.MarkWeak(image, "libstdc++.so.6", version);
        string patched = WritePatchedCopy(image);

        // The copy lives outside the original folder, so its $ORIGIN run path no longer finds libtorch:
        // load the libraries it needs from the original folder first (the loader then matches them by soname).
        string dir = Path.GetDirectoryName(original)!;
        foreach (var dep in new[] { "libc10.so", "libtorch_cpu.so", "libtorch_cuda.so", "libtorch.so" })
        {
            string candidate = Path.Combine(dir, dep);
            if (File.Exists(candidate)) NativeLibrary.Load(candidate);
        }
        var handle = NativeLibrary.Load(patched);
        Diagnostics = $"{libstdcxx} lacks {string.Join(", ", missing)} (link-time markers only); loaded {patched} with those requirements marked weak.";
        return handle;
    }

    private static string WritePatchedCopy(byte[] image)
    {
        string hash = Convert.ToHexString(SHA256.HashData(image))[..16].ToLowerInvariant();
        string root = Environment.GetEnvironmentVariable("JAMBA_NATIVE_CACHE")
                      ?? Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg
                          ? xdg
                          : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile, Environment.SpecialFolderOption.DoNotVerify) is { Length: > 0 } home ? home : Path.GetTempPath(), ".cache"),
                          "jamba-dotnet", "native");
        string dir = Path.Combine(root, hash);
        string target = Path.Combine(dir, LibraryFileName);
        if (File.Exists(target) && new FileInfo(target).Length == image.Length) return target;
        Directory.CreateDirectory(dir);
        string temp = Path.Combine(dir, $"{LibraryFileName}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        File.WriteAllBytes(temp, image);
        File.Move(temp, target, overwrite: true); // atomic on one file system: concurrent processes agree
        return target;
    }

    /// <summary>The backend's <c>libLibTorchSharp</c> next to the application, or null when no backend package is there.</summary>
    internal static string? FindBackend() => FindOriginal();

    private static string? FindOriginal()
    {
        var dirs = new List<string>();
        if (AppContext.GetData("NATIVE_DLL_SEARCH_DIRECTORIES") is string searchDirs)
            dirs.AddRange(searchDirs.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries));
        string baseDir = AppContext.BaseDirectory;
        dirs.Add(baseDir);
        dirs.Add(Path.Combine(baseDir, "runtimes", RuntimeInformation.RuntimeIdentifier, "native"));
        dirs.Add(Path.Combine(baseDir, "runtimes", "linux-x64", "native"));
        string? torchDir = Path.GetDirectoryName(typeof(TorchSharp.torch).Assembly.Location);
        if (!string.IsNullOrEmpty(torchDir))
        {
            dirs.Add(torchDir);
            dirs.Add(Path.Combine(torchDir, "runtimes", "linux-x64", "native"));
        }
        foreach (var dir in dirs)
        {
            string candidate = Path.Combine(dir, LibraryFileName);
            if (File.Exists(candidate)) return Path.GetFullPath(candidate);
        }
        return null;
    }

    private static string? FindLoadedLibStdCxx()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/maps"))
            {
                int slash = line.IndexOf('/');
                if (slash >= 0 && Path.GetFileName(line[slash..].Trim()).StartsWith("libstdc++.so.6", StringComparison.Ordinal))
                    return line[slash..].Trim();
            }
        }
        catch (IOException) { }
        foreach (var candidate in new[] { "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6" })
            if (File.Exists(candidate)) return candidate;
        return null;
    }
}
