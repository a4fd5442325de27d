using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Kernels;

/// <summary>
/// A weight matrix <c>[out, in]</c> stored as symmetric per-output-channel int8: <c>W[n, k] ≈ Scale[n] · Data[n, k]</c>,
/// <c>Scale[n] = max_k |W[n, k]| / 127</c>, <c>Data</c> rounded to nearest and within ±127. Half the bytes of bf16, a quarter
/// of fp32: decode, which reads every weight once per token, reads half as much. Both tensors live on the model's device
/// and are owned by whoever made them (a projection, or a mixture-of-experts block whose stacks they slice).
/// </summary>
/// <param name="Data">int8 <c>[out, in]</c>, contiguous.</param>
/// <param name="Scale">fp32 <c>[out]</c>.</param>
internal sealed record Int8Weight(Tensor Data, Tensor Scale) : IDisposable
{
    /// <summary>Uninitialised storage for a <c>[out, in]</c> weight on <paramref name="device"/>.</summary>
    public static Int8Weight Empty(long outFeatures, long inFeatures, Device device) => new(
        torch.empty([outFeatures, inFeatures], dtype: ScalarType.Int8, device: device),
        torch.empty([outFeatures], dtype: ScalarType.Float32, device: device));

    /// <summary>Frees both tensors (for a slice of an <see cref="Int8Stack"/>: the views; the stack frees the storage).</summary>
    public void Dispose()
    {
        Data.Dispose();
        Scale.Dispose();
    }

    /// <summary>Output features.</summary>
    public long OutFeatures => Data.shape[0];

    /// <summary>Input features.</summary>
    public long InFeatures => Data.shape[1];

    /// <summary>Bytes held (data and scales).</summary>
    public long Bytes => Data.numel() + 4 * Scale.numel();

    /// <summary>Quantizes <paramref name="source"/> <c>[out, in]</c> (any float dtype, any device) into
    /// <paramref name="data"/> and <paramref name="scale"/> (views of this weight's storage, same device). Computed on the
    /// host in fp32, rows over the kernel threads.</summary>
    public static unsafe void Quantize(Tensor source, Tensor data, Tensor scale)
    {
        long rows = source.shape[0], cols = source.shape[1];
        if (data.shape[0] != rows || data.shape[1] != cols || scale.shape[0] != rows)
            throw new ArgumentException($"int8 storage [{string.Join(", ", data.shape)}] / [{string.Join(", ", scale.shape)}] does not fit the weight [{rows}, {cols}].");
        using var scope = NewDisposeScope();
        var host = source.to(ScalarType.Float32, torch.CPU).contiguous();
        bool onHost = data.device_type == DeviceType.CPU && data.is_contiguous() && scale.is_contiguous();
        var q = onHost ? data : torch.empty([rows, cols], dtype: ScalarType.Int8);
        var s = onHost ? scale : torch.empty([rows], dtype: ScalarType.Float32);
        nint pw = SelectiveScan.Address(host), pq = SelectiveScan.Address(q), ps = SelectiveScan.Address(s);
        int parts = (int)Math.Min(KernelThreads.Count, Math.Max(1, rows * cols >> 20));
        KernelThreads.Run(parts, part =>
        {
            long from = rows * part / parts, to = rows * (part + 1) / parts;
            for (long r = from; r < to; r++)
            {
                var row = new ReadOnlySpan<float>((float*)pw + r * cols, (int)cols);
                float max = 0;
                foreach (float v in row)
                {
                    if (!float.IsFinite(v)) throw new ArgumentException($"row {r} of the weight holds {v}: only finite weights can be quantized.");
                    max = Math.Max(max, Math.Abs(v));
                }
                float step = max / 127f;
                ((float*)ps)[r] = step;
                var dst = new Span<sbyte>((sbyte*)pq + r * cols, (int)cols);
                float inverse = step > 0 ? 1f / step : 0f;
                for (int k = 0; k < dst.Length; k++) dst[k] = (sbyte)Math.Clamp(MathF.Round(row[k] * inverse), -127f, 127f);
            }
        });
        if (!onHost)
        {
            data.copy_(q);
            scale.copy_(s);
        }
    }

    /// <summary>The weight in <paramref name="dtype"/> (<c>Scale[n] · Data[n, k]</c> in fp32, rounded once), on its device;
    /// the caller disposes it. Prefill-sized products use it with libtorch's GEMM; on a CPU it is one vectorised pass.</summary>
    public unsafe Tensor Dequantize(ScalarType dtype)
    {
        bool fastCpu = Data.device_type == DeviceType.CPU && Data.is_contiguous() && Scale.is_contiguous()
            && (dtype == ScalarType.BFloat16 || dtype == ScalarType.Float32) && Vector512.IsHardwareAccelerated && Avx512BW.IsSupported
            && InFeatures % 16 == 0;
        if (!fastCpu)
        {
            using var scope = NewDisposeScope();
            return (Data.to(ScalarType.Float32) * Scale.unsqueeze(1)).to(dtype).MoveToOuterDisposeScope();
        }
        long rows = OutFeatures, cols = InFeatures;
        var output = torch.empty([rows, cols], dtype: dtype);
        nint pq = SelectiveScan.Address(Data), ps = SelectiveScan.Address(Scale), py = SelectiveScan.Address(output);
        bool half = dtype == ScalarType.BFloat16;
        int parts = (int)Math.Min(KernelThreads.Count, Math.Max(1, rows * cols >> 18));
        KernelThreads.Run(parts, part =>
        {
            long from = rows * part / parts, to = rows * (part + 1) / parts;
            for (long r = from; r < to; r++)
            {
                var step = Vector512.Create(((float*)ps)[r]);
                sbyte* src = (sbyte*)pq + r * cols;
                for (long k = 0; k < cols; k += 16)
                {
                    var wide = Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(src + k)));
                    BFloat16Bits.Store16(py, r * cols + k, wide * step, half);
                }
            }
        });
        return output;
    }
}

/// <summary>Stacked int8 weights of several same-shaped matrices (a mixture-of-experts block's experts): <c>[E, out, in]</c>
/// data and <c>[E, out]</c> scales; owns both.</summary>
internal sealed record Int8Stack(Tensor Data, Tensor Scale) : IDisposable
{
    /// <summary>Matrix <paramref name="i"/> (views of the stacks, no copy).</summary>
    public Int8Weight Slice(long i) => new(Data[i], Scale[i]);

    /// <inheritdoc />
    public void Dispose()
    {
        Data.Dispose();
        Scale.Dispose();
    }
}

/// <summary>
/// <c>y = x·Wᵀ + b</c> for the few rows of a decode step with an <see cref="Int8Weight"/>, on CPU: each input row is
/// quantized to int16 with its own scale (<c>max|x| / 32767</c>, far finer than the weights' int8), each 32 weights are
/// sign-extended to int16 and multiplied pairwise with <c>vpmaddwd</c> (AVX512-BW; 16 per step with AVX2) into int32
/// accumulators, which go to fp32 every 4,096 inputs (so they cannot overflow), and the sum is scaled by both scales.
/// Four weight rows per pass share each load of x, the rows are split over the kernel threads in chunks taken in turn, and
/// the weights are read once per step for all input rows (two input rows at a time reuse the four weight rows from L1).
/// </summary>
internal static class Int8Gemv
{
    /// <summary>Most rows (positions × batch) handled here: a batched decode step of up to 64 sequences reads each weight once
    /// for all of them; more rows are prefill GEMMs (the weight dequantized for the call, then libtorch), where that one
    /// conversion is amortised over enough rows.</summary>
    public const long MaxRows = 64;

    private const int KBlock = 4096;
    private const long FarPrefetchBytes = 24 << 10;
    private const long ChunkBytes = 128 << 10;

    /// <summary>Whether this kernel runs <paramref name="input"/> × <paramref name="weight"/>.</summary>
    public static bool Applies(Tensor input, Int8Weight weight) =>
        CpuKernels.Enabled && (Avx512BW.IsSupported || Avx2.IsSupported)
        && weight.Data.device_type == DeviceType.CPU && input.device_type == DeviceType.CPU
        && (input.dtype == ScalarType.BFloat16 || input.dtype == ScalarType.Float32)
        && weight.InFeatures % 32 == 0 && input.shape[^1] == weight.InFeatures
        && weight.Data.is_contiguous() && weight.Scale.is_contiguous() && input.is_contiguous() && !input.requires_grad
        && input.numel() / weight.InFeatures <= MaxRows;

    /// <summary><c>input · Wᵀ + bias</c> through the kernel where it applies, else through the dequantized weight.</summary>
    public static Tensor Linear(Tensor input, Int8Weight weight, Tensor? bias)
    {
        if (Applies(input, weight)) return Run(input, weight, bias);
        using var w = weight.Dequantize(input.dtype);
        return nn.functional.linear(input, w, bias);
    }

    /// <summary>Computes the product; the output has <paramref name="input"/>'s shape and dtype, the last dimension replaced.</summary>
    public static unsafe Tensor Run(Tensor input, Int8Weight weight, Tensor? bias)
    {
        int inFeatures = (int)weight.InFeatures, outFeatures = (int)weight.OutFeatures;
        int rows = (int)(input.numel() / inFeatures);
        bool half = input.dtype == ScalarType.BFloat16;
        var shape = input.shape.ToArray();
        shape[^1] = outFeatures;
        var output = torch.empty(shape, dtype: input.dtype);
        nint px = SelectiveScan.Address(input), pq = SelectiveScan.Address(weight.Data), ps = SelectiveScan.Address(weight.Scale), py = SelectiveScan.Address(output);
        nint pb = bias is null ? 0 : SelectiveScan.Address(bias);
        bool halfBias = bias is not null && bias.dtype == ScalarType.BFloat16;
        var xq = ArrayPool<short>.Shared.Rent(rows * inFeatures);
        var xs = new float[rows];
        for (int r = 0; r < rows; r++) xs[r] = QuantizeRow(px, (long)r * inFeatures, inFeatures, half, xq.AsSpan(r * inFeatures, inFeatures));
        int chunk = Math.Max(4, (int)(ChunkBytes / inFeatures) / 4 * 4), chunks = (outFeatures + chunk - 1) / chunk;
        int threads = (long)outFeatures * inFeatures < 256 << 10 ? 1 : Math.Min(KernelThreads.Count, chunks);
        int taken = 0;
        KernelThreads.Run(threads, _ =>
        {
            fixed (short* x = xq)
            fixed (float* sx = xs)
                for (int c; (c = Interlocked.Increment(ref taken) - 1) < chunks;)
                    Block(x, sx, rows, inFeatures, pq, ps, pb, halfBias, py, half, outFeatures, c * chunk, Math.Min(outFeatures, (c + 1) * chunk));
        });
        ArrayPool<short>.Shared.Return(xq);
        return output;
    }

    /// <summary>Row <paramref name="offset"/> of x as int16 in <paramref name="dst"/>; returns its scale.</summary>
    private static float QuantizeRow(nint px, long offset, int count, bool half, Span<short> dst)
    {
        float max = 0;
        for (int k = 0; k < count; k++) max = Math.Max(max, Math.Abs(BFloat16Bits.Load(px, offset + k, half)));
        if (max == 0 || !float.IsFinite(max))
        {
            // A zero row gives zeros; a non-finite one gives NaN (libtorch's product would hold NaN or ±∞ there).
            dst.Clear();
            return max == 0 ? 0f : float.NaN;
        }
        float step = max / 32767f, inverse = 32767f / max;
        for (int k = 0; k < count; k++) dst[k] = (short)Math.Clamp(MathF.Round(BFloat16Bits.Load(px, offset + k, half) * inverse), -32767f, 32767f);
        return step;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Block(short* x, float* sx, int rows, int k, nint pq, nint ps, nint pb, bool halfBias, nint py, bool half, int outFeatures, int start, int end)
    {
        int farBlocks = (int)Math.Max(2, (FarPrefetchBytes + 4L * k - 1) / (4L * k));
        // More than two input rows (a batched decode step): each K-block of four weight rows is widened to int16 once into
        // this L1-sized scratch and then read by every row, instead of being widened again for each pair of rows.
        bool widenOnce = rows > 2 && Avx512BW.IsSupported;
        short* scratch = stackalloc short[widenOnce ? 4 * KBlock : 1];
        float* sums = stackalloc float[widenOnce ? 4 * rows : 1];
        int n = start;
        for (; n + 4 <= end; n += 4)
        {
            sbyte* w0 = (sbyte*)pq + (long)n * k, w1 = w0 + k, w2 = w1 + k, w3 = w2 + k;
            // As in the bf16 GEMV: the next block of four rows into L1 and one ~24 KiB further into L2 while this one is
            // computed (short row streams that the hardware prefetcher alone does not ramp up on in time).
            byte* next = (byte*)(w3 + k), far = (byte*)w0 + farBlocks * 4L * k;
            bool prefetch = Sse.IsSupported && n + 8 <= end, prefetchFar = Sse.IsSupported && n + 4 * (farBlocks + 1) <= end;
            if (widenOnce)
            {
                new Span<float>(sums, 4 * rows).Clear();
                short* s0 = scratch, s1 = s0 + KBlock, s2 = s1 + KBlock, s3 = s2 + KBlock;
                for (int kb = 0; kb < k; kb += KBlock)
                {
                    int len = Math.Min(k, kb + KBlock) - kb;
                    for (int i = 0; i < len; i += 32)
                    {
                        Prefetch(prefetch ? next : null, prefetchFar ? far : null, 4L * (kb + i));
                        Avx512BW.ConvertToVector512Int16(Vector256.Load(w0 + kb + i)).Store(s0 + i);
                        Avx512BW.ConvertToVector512Int16(Vector256.Load(w1 + kb + i)).Store(s1 + i);
                        Avx512BW.ConvertToVector512Int16(Vector256.Load(w2 + kb + i)).Store(s2 + i);
                        Avx512BW.ConvertToVector512Int16(Vector256.Load(w3 + kb + i)).Store(s3 + i);
                    }
                    for (int r0 = 0; r0 < rows; r0 += 2)
                    {
                        bool two = r0 + 1 < rows;
                        short* xa = x + (long)r0 * k + kb, xb = two ? xa + k : xa;
                        Vector512<int> c0 = default, c1 = default, c2 = default, c3 = default, d0 = default, d1 = default, d2 = default, d3 = default;
                        for (int i = 0; i < len; i += 32)
                        {
                            var v0 = Vector512.Load(s0 + i);
                            var v1 = Vector512.Load(s1 + i);
                            var v2 = Vector512.Load(s2 + i);
                            var v3 = Vector512.Load(s3 + i);
                            var xv = Vector512.Load(xa + i);
                            var yv = Vector512.Load(xb + i);
                            c0 = Avx512F.Add(c0, Avx512BW.MultiplyAddAdjacent(v0, xv));
                            c1 = Avx512F.Add(c1, Avx512BW.MultiplyAddAdjacent(v1, xv));
                            c2 = Avx512F.Add(c2, Avx512BW.MultiplyAddAdjacent(v2, xv));
                            c3 = Avx512F.Add(c3, Avx512BW.MultiplyAddAdjacent(v3, xv));
                            d0 = Avx512F.Add(d0, Avx512BW.MultiplyAddAdjacent(v0, yv));
                            d1 = Avx512F.Add(d1, Avx512BW.MultiplyAddAdjacent(v1, yv));
                            d2 = Avx512F.Add(d2, Avx512BW.MultiplyAddAdjacent(v2, yv));
                            d3 = Avx512F.Add(d3, Avx512BW.MultiplyAddAdjacent(v3, yv));
                        }
                        float* ar = sums + 4 * r0;
                        ar[0] += Sum(c0); ar[1] += Sum(c1); ar[2] += Sum(c2); ar[3] += Sum(c3);
                        if (two) { ar[4] += Sum(d0); ar[5] += Sum(d1); ar[6] += Sum(d2); ar[7] += Sum(d3); }
                    }
                }
                for (int r = 0; r < rows; r++) Store(r, n, sums[4 * r], sums[4 * r + 1], sums[4 * r + 2], sums[4 * r + 3]);
                continue;
            }
            for (int r0 = 0; r0 < rows; r0 += 2)
            {
                bool first = r0 == 0;
                bool two = r0 + 1 < rows;
                short* xa = x + (long)r0 * k, xb = two ? xa + k : xa;
                float a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
                for (int kb = 0; kb < k; kb += KBlock)
                {
                    int ke = Math.Min(k, kb + KBlock);
                    if (Avx512BW.IsSupported && !two)
                    {
                        // One row (batch-1 decode): four weight rows against one x, four accumulators.
                        Vector512<int> c0 = default, c1 = default, c2 = default, c3 = default;
                        for (int i = kb; i < ke; i += 32)
                        {
                            Prefetch(prefetch ? next : null, prefetchFar ? far : null, 4L * i);
                            var xv = Vector512.Load(xa + i);
                            c0 = Avx512F.Add(c0, Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(Vector256.Load(w0 + i)), xv));
                            c1 = Avx512F.Add(c1, Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(Vector256.Load(w1 + i)), xv));
                            c2 = Avx512F.Add(c2, Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(Vector256.Load(w2 + i)), xv));
                            c3 = Avx512F.Add(c3, Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(Vector256.Load(w3 + i)), xv));
                        }
                        a0 += Sum(c0); a1 += Sum(c1); a2 += Sum(c2); a3 += Sum(c3);
                    }
                    else if (Avx512BW.IsSupported)
                    {
                        Vector512<int> c0 = default, c1 = default, c2 = default, c3 = default, d0 = default, d1 = default, d2 = default, d3 = default;
                        for (int i = kb; i < ke; i += 32)
                        {
                            if (first)
                            {
                                Prefetch(prefetch ? next : null, prefetchFar ? far : null, 4L * i);
                            }
                            var v0 = Avx512BW.ConvertToVector512Int16(Vector256.Load(w0 + i));
                            var v1 = Avx512BW.ConvertToVector512Int16(Vector256.Load(w1 + i));
                            var v2 = Avx512BW.ConvertToVector512Int16(Vector256.Load(w2 + i));
                            var v3 = Avx512BW.ConvertToVector512Int16(Vector256.Load(w3 + i));
                            var xv = Vector512.Load(xa + i);
                            c0 = Avx512F.Add(c0, Avx512BW.MultiplyAddAdjacent(v0, xv));
                            c1 = Avx512F.Add(c1, Avx512BW.MultiplyAddAdjacent(v1, xv));
                            c2 = Avx512F.Add(c2, Avx512BW.MultiplyAddAdjacent(v2, xv));
                            c3 = Avx512F.Add(c3, Avx512BW.MultiplyAddAdjacent(v3, xv));
                            if (two)
                            {
                                var yv = Vector512.Load(xb + i);
                                d0 = Avx512F.Add(d0, Avx512BW.MultiplyAddAdjacent(v0, yv));
                                d1 = Avx512F.Add(d1, Avx512BW.MultiplyAddAdjacent(v1, yv));
                                d2 = Avx512F.Add(d2, Avx512BW.MultiplyAddAdjacent(v2, yv));
                                d3 = Avx512F.Add(d3, Avx512BW.MultiplyAddAdjacent(v3, yv));
                            }
                        }
                        a0 += Sum(c0); a1 += Sum(c1); a2 += Sum(c2); a3 += Sum(c3);
                        b0 += Sum(d0); b1 += Sum(d1); b2 += Sum(d2); b3 += Sum(d3);
                    }
                    else
                    {
                        Vector256<int> c0 = default, c1 = default, c2 = default, c3 = default, d0 = default, d1 = default, d2 = default, d3 = default;
                        for (int i = kb; i < ke; i += 16)
                        {
                            var v0 = Avx2.ConvertToVector256Int16(Vector128.Load(w0 + i));
                            var v1 = Avx2.ConvertToVector256Int16(Vector128.Load(w1 + i));
                            var v2 = Avx2.ConvertToVector256Int16(Vector128.Load(w2 + i));
                            var v3 = Avx2.ConvertToVector256Int16(Vector128.Load(w3 + i));
                            var xv = Vector256.Load(xa + i);
                            c0 = Avx2.Add(c0, Avx2.MultiplyAddAdjacent(v0, xv));
                            c1 = Avx2.Add(c1, Avx2.MultiplyAddAdjacent(v1, xv));
                            c2 = Avx2.Add(c2, Avx2.MultiplyAddAdjacent(v2, xv));
                            c3 = Avx2.Add(c3, Avx2.MultiplyAddAdjacent(v3, xv));
                            if (two)
                            {
                                var yv = Vector256.Load(xb + i);
                                d0 = Avx2.Add(d0, Avx2.MultiplyAddAdjacent(v0, yv));
                                d1 = Avx2.Add(d1, Avx2.MultiplyAddAdjacent(v1, yv));
                                d2 = Avx2.Add(d2, Avx2.MultiplyAddAdjacent(v2, yv));
                                d3 = Avx2.Add(d3, Avx2.MultiplyAddAdjacent(v3, yv));
                            }
                        }
                        a0 += Sum(c0); a1 += Sum(c1); a2 += Sum(c2); a3 += Sum(c3);
                        b0 += Sum(d0); b1 += Sum(d1); b2 += Sum(d2); b3 += Sum(d3);
                    }
                }
                Store(r0, n, a0, a1, a2, a3);
                if (two) Store(r0 + 1, n, b0, b1, b2, b3);
            }
        }
        for (; n < end; n++)
        {
            sbyte* w = (sbyte*)pq + (long)n * k;
            for (int r = 0; r < rows; r++)
            {
                short* xr = x + (long)r * k;
                long acc = 0;
                for (int i = 0; i < k; i++) acc += w[i] * xr[i];
                Output(r, n, acc);
            }
        }

        void Store(int r, int n0, float s0, float s1, float s2, float s3)
        {
            Output(r, n0, s0);
            Output(r, n0 + 1, s1);
            Output(r, n0 + 2, s2);
            Output(r, n0 + 3, s3);
        }

        void Output(int r, int col, float acc)
        {
            float v = acc * sx[r] * ((float*)ps)[col];
            if (pb != 0) v += BFloat16Bits.Load(pb, col, halfBias);
            BFloat16Bits.Store(py, (long)r * outFeatures + col, v, half);
        }
    }

    /// <summary>The 128 bytes at <paramref name="offset"/> of the next block into L1 and of the far block into L2 (either
    /// null: skipped). Four weight rows advance 128 bytes per step of 32 weights.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Prefetch(byte* next, byte* far, long offset)
    {
        if (next != null)
        {
            Sse.Prefetch0(next + offset);
            Sse.Prefetch0(next + offset + 64);
        }
        if (far != null)
        {
            Sse.Prefetch1(far + offset);
            Sse.Prefetch1(far + offset + 64);
        }
    }

    private static float Sum(Vector512<int> v) => Vector512.Sum(Avx512F.ConvertToVector512Single(v));

    private static float Sum(Vector256<int> v) => Vector256.Sum(Avx.ConvertToVector256Single(v));
}
