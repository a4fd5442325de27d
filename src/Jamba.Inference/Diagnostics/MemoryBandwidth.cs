using Jamba.Inference.Modeling;
using Jamba.Inference.Kernels;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Diagnostics;

/// <summary>
/// Measures how fast this machine reads a model's weights from memory: the physical limit of batch-1 decoding, which
/// must read every active weight once per token. Reads the model's own (already resident) CPU parameters with wide vector
/// loads and software prefetch, split over threads — no extra memory is allocated.
/// </summary>
public static class MemoryBandwidth
{
    /// <summary>Bytes per second read from the CPU parameters of <paramref name="model"/> (the best of
    /// <paramref name="repeats"/> passes over all of them, with <paramref name="threads"/> threads).</summary>
    public static double MeasureReadBytesPerSecond(JambaForCausalLM model, int threads, int repeats = 3)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(repeats, 1);
        var regions = model.parameters().Where(p => p.device_type == DeviceType.CPU && p.is_contiguous())
            .Select(p => (Address: SelectiveScan.Address(p), Bytes: p.numel() * p.element_size())).Where(r => r.Bytes >= 4096).ToList();
        long total = regions.Sum(r => r.Bytes);
        if (total == 0) throw new InvalidOperationException("The model has no CPU parameters to read.");
        // Each thread takes whole tensors, largest first, onto the least loaded thread.
        var work = Enumerable.Range(0, threads).Select(_ => new List<(nint Address, long Bytes)>()).ToArray();
        var load = new long[threads];
        foreach (var r in regions.OrderByDescending(r => r.Bytes))
        {
            int t = Array.IndexOf(load, load.Min());
            work[t].Add(r);
            load[t] += r.Bytes;
        }
        double best = 0;
        float sink = 0;
        for (int i = 0; i < repeats; i++)
        {
            var clock = Stopwatch.StartNew();
            var sums = new float[threads];
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
            {
                float s = 0;
                foreach (var (address, bytes) in work[t]) s += Read(address, bytes);
                sums[t] = s;
            });
            best = Math.Max(best, total / clock.Elapsed.TotalSeconds);
            sink += sums.Sum();
        }
        GC.KeepAlive(sink);
        return best;
    }

    /// <summary>How far ahead the read prefetches into L2 (the decode GEMV's distance).</summary>
    private const long PrefetchBytes = 24 << 10;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe float Read(nint address, long bytes)
    {
        byte* p = (byte*)address;
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<uint> a = default, b = default;
            for (; i + 128 <= bytes; i += 128)
            {
                // Software prefetch into L2 ahead of the loads, as the decode GEMV does: without it one core's misses in
                // flight, not the memory, limit the rate, and the figure would understate what the kernels can reach.
                if (System.Runtime.Intrinsics.X86.Sse.IsSupported && i + PrefetchBytes + 128 <= bytes)
                {
                    System.Runtime.Intrinsics.X86.Sse.Prefetch1(p + i + PrefetchBytes);
                    System.Runtime.Intrinsics.X86.Sse.Prefetch1(p + i + PrefetchBytes + 64);
                }
                a ^= Vector512.Load((uint*)(p + i));
                b ^= Vector512.Load((uint*)(p + i + 64));
            }
            return Vector512.Sum(a ^ b);
        }
        uint x = 0;
        for (; i + 4 <= bytes; i += 4) x ^= *(uint*)(p + i);
        return x;
    }
}
