using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Kernels;

/// <summary>
/// <c>y = x·Wᵀ + b</c> for the few rows of a decode step on CPU (bf16 or fp32 weights), streaming the weights once at
/// memory bandwidth. Decode is a matrix–vector product: every weight is used once per row, so the cost is reading the
/// weights. libtorch reaches ~8–18 GB/s here at one row; this kernel reads 16 weights (fp32) or 32 (bf16, widened with one
/// shift for the even elements and one mask for the odd ones against a de-interleaved fp32 copy of x) per AVX-512 load,
/// four weight rows per pass sharing each load of x, prefetches the next four rows into L1 and rows ~24 KiB ahead into L2, and splits the rows over the
/// intra-op threads (<see cref="KernelThreads"/>) in chunks taken in turn. Accumulation is fp32 and a bf16 result is rounded once, as libtorch does; only the summation order
/// differs.
/// </summary>
internal static class DecodeGemv
{
    /// <summary>Most rows (positions × batch) handled here; larger inputs are GEMMs and stay with libtorch.</summary>
    public const long MaxRows = 8;

    /// <summary>Products smaller than this run on the calling thread alone.</summary>
    private const long ParallelBytes = 256 << 10;

    /// <summary>Whether <paramref name="input"/> × <paramref name="weight"/> is a decode-sized product this kernel runs.</summary>
    public static bool Applies(Tensor input, Tensor weight) =>
        CpuKernels.Enabled && Enabled && Vector512.IsHardwareAccelerated
        && weight.device_type == DeviceType.CPU && input.dtype == weight.dtype
        && (weight.dtype == ScalarType.BFloat16 && weight.shape[1] % 32 == 0 || weight.dtype == ScalarType.Float32 && weight.shape[1] % 16 == 0)
        && !weight.requires_grad && !input.requires_grad && weight.is_contiguous() && input.is_contiguous()
        && input.numel() / weight.shape[1] <= MaxRows;

    /// <summary>Off with <c>JAMBA_DECODE_GEMV=0</c> (to benchmark against libtorch).</summary>
    internal static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("JAMBA_DECODE_GEMV") != "0";

    /// <summary>Computes the product; the output has <paramref name="input"/>'s shape with the last dimension replaced.</summary>
    public static unsafe Tensor Run(Tensor input, Tensor weight, Tensor? bias)
    {
        int inFeatures = (int)weight.shape[1], outFeatures = (int)weight.shape[0];
        int rows = (int)(input.numel() / inFeatures);
        bool half = weight.dtype == ScalarType.BFloat16;
        var shape = input.shape.ToArray();
        shape[^1] = outFeatures;
        var output = torch.empty(shape, dtype: weight.dtype);
        nint px = SelectiveScan.Address(input), pw = SelectiveScan.Address(weight), py = SelectiveScan.Address(output);
        nint pb = bias is null ? 0 : SelectiveScan.Address(bias);
        bool halfBias = bias is not null && bias.dtype == ScalarType.BFloat16;
        var xs = PrepareInput(px, rows, inFeatures, half);
        int threads = KernelThreads.Count;
        long bytes = (long)outFeatures * inFeatures * (half ? 2 : 4);
        if (threads == 1 || bytes < ParallelBytes)
        {
            fixed (float* x = xs) Rows(half, x, rows, inFeatures, pw, pb, halfBias, py, half, outFeatures, 0, outFeatures);
        }
        else
        {
            // Chunks of output rows taken in turn by whichever thread is free: a worker that starts late or reads slower
            // does less, instead of leaving the other thread waiting at the end.
            int chunk = ChunkRows(inFeatures, half ? 2 : 4, 4), chunks = (outFeatures + chunk - 1) / chunk;
            int taken = 0;
            KernelThreads.Run(Math.Min(threads, chunks), _ =>
            {
                fixed (float* x = xs)
                    for (int c; (c = Interlocked.Increment(ref taken) - 1) < chunks;)
                        Rows(half, x, rows, inFeatures, pw, pb, halfBias, py, half, outFeatures, c * chunk, Math.Min(outFeatures, (c + 1) * chunk));
            });
        }
        ArrayPool<float>.Shared.Return(xs);
        return output;
    }

    /// <summary>
    /// The gated pair of a SwiGLU MLP in one pass: <c>silu(x·W_gateᵀ) ⊙ (x·W_upᵀ)</c>, both products into fp32 scratch and
    /// the product rounded once (the tensor path rounds the gate, the SiLU and the product to the dtype in turn).
    /// </summary>
    public static unsafe Tensor RunGated(Tensor input, Tensor gateWeight, Tensor upWeight)
    {
        int inFeatures = (int)gateWeight.shape[1], outFeatures = (int)gateWeight.shape[0];
        int rows = (int)(input.numel() / inFeatures);
        bool half = gateWeight.dtype == ScalarType.BFloat16;
        var shape = input.shape.ToArray();
        shape[^1] = outFeatures;
        var output = torch.empty(shape, dtype: gateWeight.dtype);
        nint px = SelectiveScan.Address(input), pg = SelectiveScan.Address(gateWeight), pu = SelectiveScan.Address(upWeight), py = SelectiveScan.Address(output);
        var xs = PrepareInput(px, rows, inFeatures, half);
        var gates = ArrayPool<float>.Shared.Rent(rows * outFeatures);
        var ups = ArrayPool<float>.Shared.Rent(rows * outFeatures);
        int threads = KernelThreads.Count;
        if ((long)outFeatures * inFeatures * (half ? 4 : 8) < ParallelBytes) threads = 1;
        int chunk = ChunkRows(inFeatures, half ? 4 : 8, 16), chunks = (outFeatures + chunk - 1) / chunk;
        int taken = 0;
        KernelThreads.Run(Math.Min(threads, chunks), _ =>
        {
            fixed (float* x = xs, g = gates, u = ups)
                for (int c; (c = Interlocked.Increment(ref taken) - 1) < chunks;)
                {
                    int start = c * chunk, end = Math.Min(outFeatures, start + chunk);
                    Rows(half, x, rows, inFeatures, pg, 0, false, (nint)g, false, outFeatures, start, end);
                    Rows(half, x, rows, inFeatures, pu, 0, false, (nint)u, false, outFeatures, start, end);
                    for (int r = 0; r < rows; r++)
                    {
                        float* gr = g + (long)r * outFeatures + start, ur = u + (long)r * outFeatures + start;
                        MambaDecodeKernel.SiluInPlace(gr, end - start);
                        for (int i = 0; i < end - start; i++) BFloat16Bits.Store(py, (long)r * outFeatures + start + i, gr[i] * ur[i], half);
                    }
                }
        });
        ArrayPool<float>.Shared.Return(xs);
        ArrayPool<float>.Shared.Return(gates);
        ArrayPool<float>.Shared.Return(ups);
        return output;
    }

    /// <summary>Output rows per work chunk: about <see cref="ChunkBytes"/> of weights, a multiple of <paramref name="multiple"/>.</summary>
    private static int ChunkRows(int inFeatures, int bytesPerWeight, int multiple) =>
        Math.Max(multiple, (int)(ChunkBytes / ((long)inFeatures * bytesPerWeight)) / multiple * multiple);

    /// <summary>Weight bytes per work chunk: large enough that taking a chunk (one atomic increment) costs nothing, small
    /// enough that the threads finish together.</summary>
    private const long ChunkBytes = 256 << 10;

    /// <summary>x as fp32 in a pooled array (the caller returns it); for bf16 weights split into even and odd elements (a bf16 pair read as one uint holds element 2j
    /// in its low half and 2j+1 in its high half).</summary>
    private static unsafe float[] PrepareInput(nint px, int rows, int inFeatures, bool half)
    {
        var xs = ArrayPool<float>.Shared.Rent(rows * inFeatures);
        int pairs = inFeatures / 2;
        for (int r = 0; r < rows; r++)
        {
            long o = (long)r * inFeatures;
            if (half)
                for (int j = 0; j < pairs; j++)
                {
                    xs[o + j] = BFloat16Bits.Load(px, o + 2 * j, true);
                    xs[o + pairs + j] = BFloat16Bits.Load(px, o + 2 * j + 1, true);
                }
            else
                new ReadOnlySpan<float>((float*)px + o, inFeatures).CopyTo(xs.AsSpan((int)o, inFeatures));
        }
        return xs;
    }

    private static unsafe void Rows(bool half, float* xs, int rows, int inFeatures, nint pw, nint pb, bool halfBias, nint py, bool outHalf, int outFeatures, int start, int end)
    {
        if (half) Block(xs, rows, inFeatures, pw, pb, halfBias, py, outHalf, outFeatures, start, end);
        else BlockF32(xs, rows, inFeatures, pw, pb, py, outFeatures, start, end);
    }

    /// <summary>fp32 weights: output features <c>[start, end)</c> for every row, four weight rows per pass.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void BlockF32(float* xs, int rows, int inFeatures, nint pw, nint pb, nint py, int outFeatures, int start, int end)
    {
        int farBlocks = FarBlocks(16L * inFeatures);
        int o = start;
        for (; o + 4 <= end; o += 4)
        {
            float* w0 = (float*)pw + (long)o * inFeatures, w1 = w0 + inFeatures, w2 = w1 + inFeatures, w3 = w2 + inFeatures;
            byte* next = (byte*)(w3 + inFeatures);
            bool prefetch = Sse.IsSupported && o + 8 <= end;
            byte* far = (byte*)w0 + farBlocks * 16L * inFeatures;
            bool prefetchFar = Sse.IsSupported && o + 4 * (farBlocks + 1) <= end;
            for (int r = 0; r < rows; r++)
            {
                float* x = xs + (long)r * inFeatures;
                Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (int j = 0; j < inFeatures; j += 16)
                {
                    if (prefetch && r == 0) Prefetch256(next + (long)j * 16);
                    if (prefetchFar && r == 0) Prefetch256ToL2(far + (long)j * 16);
                    var xv = Vector512.Load(x + j);
                    a0 = Vector512.FusedMultiplyAdd(Vector512.Load(w0 + j), xv, a0);
                    a1 = Vector512.FusedMultiplyAdd(Vector512.Load(w1 + j), xv, a1);
                    a2 = Vector512.FusedMultiplyAdd(Vector512.Load(w2 + j), xv, a2);
                    a3 = Vector512.FusedMultiplyAdd(Vector512.Load(w3 + j), xv, a3);
                }
                float* y = (float*)py + (long)r * outFeatures + o;
                y[0] = Vector512.Sum(a0) + Bias(pb, o, false);
                y[1] = Vector512.Sum(a1) + Bias(pb, o + 1, false);
                y[2] = Vector512.Sum(a2) + Bias(pb, o + 2, false);
                y[3] = Vector512.Sum(a3) + Bias(pb, o + 3, false);
            }
        }
        for (; o < end; o++)
        {
            float* w = (float*)pw + (long)o * inFeatures;
            for (int r = 0; r < rows; r++)
            {
                float* x = xs + (long)r * inFeatures;
                Vector512<float> a = default;
                for (int j = 0; j < inFeatures; j += 16) a = Vector512.FusedMultiplyAdd(Vector512.Load(w + j), Vector512.Load(x + j), a);
                ((float*)py)[(long)r * outFeatures + o] = Vector512.Sum(a) + Bias(pb, o, false);
            }
        }
    }

    /// <summary>bf16 weights: output features <c>[start, end)</c> for every row; four weight rows at a time share each load of x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Block(float* xs, int rows, int inFeatures, nint pw, nint pb, bool bf16Bias, nint py, bool outHalf, int outFeatures, int start, int end)
    {
        int farBlocks = FarBlocks(8L * inFeatures);
        int pairs = inFeatures / 2;
        var mask = Vector512.Create(0xFFFF0000u);
        int o = start;
        for (; o + 4 <= end; o += 4)
        {
            uint* w0 = (uint*)((ushort*)pw + (long)o * inFeatures), w1 = w0 + pairs, w2 = w1 + pairs, w3 = w2 + pairs;
            // The next block of four rows (contiguous, 8·in bytes) is prefetched into L1 while this one is computed: rows are
            // short streams (2 KiB at in = 1024) that the hardware prefetcher alone does not ramp up on in time. A block
            // ~24 KiB further on is prefetched into L2 as well: one core's L1 can only have a few misses in flight, its L2
            // many more, and memory latency × misses in flight is what limits a core's read rate here (~25 % faster).
            byte* next = (byte*)(w3 + pairs);
            bool prefetch = Sse.IsSupported && o + 8 <= end;
            byte* far = (byte*)w0 + farBlocks * 8L * inFeatures;
            bool prefetchFar = Sse.IsSupported && o + 4 * (farBlocks + 1) <= end;
            // Four (or three, the fourth lane idle) then two input rows at a time share each widened weight vector (a batch of
            // several sequences was compute-bound: widening per row cost as much as the products); a last row takes the
            // one-row loop.
            int r = 0;
            for (; r + 3 <= rows; r += 4)
                Quad(xs + (long)r * inFeatures, Math.Min(4, rows - r), inFeatures, w0, r == 0 && prefetch ? next : null, r == 0 && prefetchFar ? far : null,
                    pb, bf16Bias, py, outHalf, (long)r * outFeatures + o, outFeatures, o);
            for (; r + 2 <= rows; r += 2)
                Pair(xs + (long)r * inFeatures, inFeatures, w0, r == 0 && prefetch ? next : null, r == 0 && prefetchFar ? far : null,
                    pb, bf16Bias, py, outHalf, (long)r * outFeatures + o, outFeatures, o);
            for (; r < rows; r++)
            {
                float* xe = xs + (long)r * inFeatures, xo = xe + pairs;
                Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (int j = 0; j < pairs; j += 16)
                {
                    if (prefetch && r == 0) Prefetch256(next + (long)j * 16);
                    if (prefetchFar && r == 0) Prefetch256ToL2(far + (long)j * 16);
                    var e = Vector512.Load(xe + j);
                    var d = Vector512.Load(xo + j);
                    var u0 = Vector512.Load(w0 + j);
                    var u1 = Vector512.Load(w1 + j);
                    var u2 = Vector512.Load(w2 + j);
                    var u3 = Vector512.Load(w3 + j);
                    a0 = Vector512.FusedMultiplyAdd(Vector512.ShiftLeft(u0, 16).AsSingle(), e, a0);
                    a1 = Vector512.FusedMultiplyAdd(Vector512.ShiftLeft(u1, 16).AsSingle(), e, a1);
                    a2 = Vector512.FusedMultiplyAdd(Vector512.ShiftLeft(u2, 16).AsSingle(), e, a2);
                    a3 = Vector512.FusedMultiplyAdd(Vector512.ShiftLeft(u3, 16).AsSingle(), e, a3);
                    a0 = Vector512.FusedMultiplyAdd((u0 & mask).AsSingle(), d, a0);
                    a1 = Vector512.FusedMultiplyAdd((u1 & mask).AsSingle(), d, a1);
                    a2 = Vector512.FusedMultiplyAdd((u2 & mask).AsSingle(), d, a2);
                    a3 = Vector512.FusedMultiplyAdd((u3 & mask).AsSingle(), d, a3);
                }
                long y = (long)r * outFeatures + o;
                BFloat16Bits.Store(py, y, Vector512.Sum(a0) + Bias(pb, o, bf16Bias), outHalf);
                BFloat16Bits.Store(py, y + 1, Vector512.Sum(a1) + Bias(pb, o + 1, bf16Bias), outHalf);
                BFloat16Bits.Store(py, y + 2, Vector512.Sum(a2) + Bias(pb, o + 2, bf16Bias), outHalf);
                BFloat16Bits.Store(py, y + 3, Vector512.Sum(a3) + Bias(pb, o + 3, bf16Bias), outHalf);
            }
        }
        for (; o < end; o++)
        {
            uint* w = (uint*)((ushort*)pw + (long)o * inFeatures);
            for (int r = 0; r < rows; r++)
            {
                float* xe = xs + (long)r * inFeatures, xo = xe + pairs;
                Vector512<float> a = default;
                for (int j = 0; j < pairs; j += 16)
                {
                    var u = Vector512.Load(w + j);
                    a = Vector512.FusedMultiplyAdd(Vector512.ShiftLeft(u, 16).AsSingle(), Vector512.Load(xe + j), a);
                    a = Vector512.FusedMultiplyAdd((u & mask).AsSingle(), Vector512.Load(xo + j), a);
                }
                BFloat16Bits.Store(py, (long)r * outFeatures + o, Vector512.Sum(a) + Bias(pb, o, bf16Bias), outHalf);
            }
        }
    }

    /// <summary>Four weight rows (from <paramref name="w0"/>) against <paramref name="count"/> (3 or 4) input rows (from
    /// <paramref name="x0"/>): each weight vector is widened once for all of them (with 3, the fourth slot repeats the third
    /// and is not stored: still cheaper than a pair and a single). Same per-output summation order as the one-row loop
    /// (bit-identical).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Quad(float* x0, int count, int inFeatures, uint* w0, byte* next, byte* far, nint pb, bool bf16Bias, nint py, bool outHalf, long y0, int outFeatures, int o)
    {
        int pairs = inFeatures / 2;
        uint* w1 = w0 + pairs, w2 = w1 + pairs, w3 = w2 + pairs;
        float* x1 = x0 + inFeatures, x2 = x1 + inFeatures, x3 = count == 4 ? x2 + inFeatures : x2;
        var mask = Vector512.Create(0xFFFF0000u);
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
        for (int j = 0; j < pairs; j += 16)
        {
            if (next != null) Prefetch256(next + (long)j * 16);
            if (far != null) Prefetch256ToL2(far + (long)j * 16);
            var u0 = Vector512.Load(w0 + j);
            var u1 = Vector512.Load(w1 + j);
            var u2 = Vector512.Load(w2 + j);
            var u3 = Vector512.Load(w3 + j);
            var e0 = Vector512.ShiftLeft(u0, 16).AsSingle();
            var e1 = Vector512.ShiftLeft(u1, 16).AsSingle();
            var e2 = Vector512.ShiftLeft(u2, 16).AsSingle();
            var e3 = Vector512.ShiftLeft(u3, 16).AsSingle();
            var d0 = (u0 & mask).AsSingle();
            var d1 = (u1 & mask).AsSingle();
            var d2 = (u2 & mask).AsSingle();
            var d3 = (u3 & mask).AsSingle();
            var xe = Vector512.Load(x0 + j);
            var xo = Vector512.Load(x0 + pairs + j);
            a00 = Vector512.FusedMultiplyAdd(d0, xo, Vector512.FusedMultiplyAdd(e0, xe, a00));
            a10 = Vector512.FusedMultiplyAdd(d1, xo, Vector512.FusedMultiplyAdd(e1, xe, a10));
            a20 = Vector512.FusedMultiplyAdd(d2, xo, Vector512.FusedMultiplyAdd(e2, xe, a20));
            a30 = Vector512.FusedMultiplyAdd(d3, xo, Vector512.FusedMultiplyAdd(e3, xe, a30));
            xe = Vector512.Load(x1 + j);
            xo = Vector512.Load(x1 + pairs + j);
            a01 = Vector512.FusedMultiplyAdd(d0, xo, Vector512.FusedMultiplyAdd(e0, xe, a01));
            a11 = Vector512.FusedMultiplyAdd(d1, xo, Vector512.FusedMultiplyAdd(e1, xe, a11));
            a21 = Vector512.FusedMultiplyAdd(d2, xo, Vector512.FusedMultiplyAdd(e2, xe, a21));
            a31 = Vector512.FusedMultiplyAdd(d3, xo, Vector512.FusedMultiplyAdd(e3, xe, a31));
            xe = Vector512.Load(x2 + j);
            xo = Vector512.Load(x2 + pairs + j);
            a02 = Vector512.FusedMultiplyAdd(d0, xo, Vector512.FusedMultiplyAdd(e0, xe, a02));
            a12 = Vector512.FusedMultiplyAdd(d1, xo, Vector512.FusedMultiplyAdd(e1, xe, a12));
            a22 = Vector512.FusedMultiplyAdd(d2, xo, Vector512.FusedMultiplyAdd(e2, xe, a22));
            a32 = Vector512.FusedMultiplyAdd(d3, xo, Vector512.FusedMultiplyAdd(e3, xe, a32));
            xe = Vector512.Load(x3 + j);
            xo = Vector512.Load(x3 + pairs + j);
            a03 = Vector512.FusedMultiplyAdd(d0, xo, Vector512.FusedMultiplyAdd(e0, xe, a03));
            a13 = Vector512.FusedMultiplyAdd(d1, xo, Vector512.FusedMultiplyAdd(e1, xe, a13));
            a23 = Vector512.FusedMultiplyAdd(d2, xo, Vector512.FusedMultiplyAdd(e2, xe, a23));
            a33 = Vector512.FusedMultiplyAdd(d3, xo, Vector512.FusedMultiplyAdd(e3, xe, a33));
        }
        float b0 = Bias(pb, o, bf16Bias), b1 = Bias(pb, o + 1, bf16Bias), b2 = Bias(pb, o + 2, bf16Bias), b3 = Bias(pb, o + 3, bf16Bias);
        StoreFour(py, y0, a00, a10, a20, a30, b0, b1, b2, b3, outHalf);
        StoreFour(py, y0 + outFeatures, a01, a11, a21, a31, b0, b1, b2, b3, outHalf);
        StoreFour(py, y0 + 2L * outFeatures, a02, a12, a22, a32, b0, b1, b2, b3, outHalf);
        if (count == 4) StoreFour(py, y0 + 3L * outFeatures, a03, a13, a23, a33, b0, b1, b2, b3, outHalf);
    }

    /// <summary><see cref="Quad"/> for two input rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Pair(float* x0, int inFeatures, uint* w0, byte* next, byte* far, nint pb, bool bf16Bias, nint py, bool outHalf, long y0, int outFeatures, int o)
    {
        int pairs = inFeatures / 2;
        uint* w1 = w0 + pairs, w2 = w1 + pairs, w3 = w2 + pairs;
        float* x1 = x0 + inFeatures;
        var mask = Vector512.Create(0xFFFF0000u);
        Vector512<float> a00 = default, a01 = default, a10 = default, a11 = default, a20 = default, a21 = default, a30 = default, a31 = default;
        for (int j = 0; j < pairs; j += 16)
        {
            if (next != null) Prefetch256(next + (long)j * 16);
            if (far != null) Prefetch256ToL2(far + (long)j * 16);
            var u0 = Vector512.Load(w0 + j);
            var u1 = Vector512.Load(w1 + j);
            var u2 = Vector512.Load(w2 + j);
            var u3 = Vector512.Load(w3 + j);
            var e0 = Vector512.ShiftLeft(u0, 16).AsSingle();
            var e1 = Vector512.ShiftLeft(u1, 16).AsSingle();
            var e2 = Vector512.ShiftLeft(u2, 16).AsSingle();
            var e3 = Vector512.ShiftLeft(u3, 16).AsSingle();
            var d0 = (u0 & mask).AsSingle();
            var d1 = (u1 & mask).AsSingle();
            var d2 = (u2 & mask).AsSingle();
            var d3 = (u3 & mask).AsSingle();
            var xe = Vector512.Load(x0 + j);
            var xo = Vector512.Load(x0 + pairs + j);
            a00 = Vector512.FusedMultiplyAdd(d0, xo, Vector512.FusedMultiplyAdd(e0, xe, a00));
            a10 = Vector512.FusedMultiplyAdd(d1, xo, Vector512.FusedMultiplyAdd(e1, xe, a10));
            a20 = Vector512.FusedMultiplyAdd(d2, xo, Vector512.FusedMultiplyAdd(e2, xe, a20));
            a30 = Vector512.FusedMultiplyAdd(d3, xo, Vector512.FusedMultiplyAdd(e3, xe, a30));
            xe = Vector512.Load(x1 + j);
            xo = Vector512.Load(x1 + pairs + j);
            a01 = Vector512.FusedMultiplyAdd(d0, xo, Vector512.FusedMultiplyAdd(e0, xe, a01));
            a11 = Vector512.FusedMultiplyAdd(d1, xo, Vector512.FusedMultiplyAdd(e1, xe, a11));
            a21 = Vector512.FusedMultiplyAdd(d2, xo, Vector512.FusedMultiplyAdd(e2, xe, a21));
            a31 = Vector512.FusedMultiplyAdd(d3, xo, Vector512.FusedMultiplyAdd(e3, xe, a31));
        }
        float b0 = Bias(pb, o, bf16Bias), b1 = Bias(pb, o + 1, bf16Bias), b2 = Bias(pb, o + 2, bf16Bias), b3 = Bias(pb, o + 3, bf16Bias);
        StoreFour(py, y0, a00, a10, a20, a30, b0, b1, b2, b3, outHalf);
        StoreFour(py, y0 + outFeatures, a01, a11, a21, a31, b0, b1, b2, b3, outHalf);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreFour(nint py, long y, Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3, float b0, float b1, float b2, float b3, bool outHalf)
    {
        BFloat16Bits.Store(py, y, Vector512.Sum(a0) + b0, outHalf);
        BFloat16Bits.Store(py, y + 1, Vector512.Sum(a1) + b1, outHalf);
        BFloat16Bits.Store(py, y + 2, Vector512.Sum(a2) + b2, outHalf);
        BFloat16Bits.Store(py, y + 3, Vector512.Sum(a3) + b3, outHalf);
    }

    /// <summary>Prefetches the 256 bytes (four cache lines) at <paramref name="line"/>: one pass over four rows consumes 256
    /// bytes (64 per row), so the next block of four rows arrives in step with this one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Prefetch256(byte* line)
    {
        Sse.Prefetch0(line);
        Sse.Prefetch0(line + 64);
        Sse.Prefetch0(line + 128);
        Sse.Prefetch0(line + 192);
    }

    /// <summary>Prefetches 256 bytes into L2 (<c>prefetcht1</c>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Prefetch256ToL2(byte* line)
    {
        Sse.Prefetch1(line);
        Sse.Prefetch1(line + 64);
        Sse.Prefetch1(line + 128);
        Sse.Prefetch1(line + 192);
    }

    /// <summary>How many blocks of four rows (<paramref name="blockBytes"/> each) ahead the L2 prefetch reads: about
    /// <see cref="FarPrefetchBytes"/>, at least two.</summary>
    private static int FarBlocks(long blockBytes) => (int)Math.Max(2, (FarPrefetchBytes + blockBytes - 1) / blockBytes);

    /// <summary>Distance of the L2 prefetch (measured: 16–32 KiB ahead read fastest at in = 1024).</summary>
    private const long FarPrefetchBytes = 24 << 10;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Bias(nint pb, int o, bool bf16) => pb == 0 ? 0f : BFloat16Bits.Load(pb, o, bf16);
}
