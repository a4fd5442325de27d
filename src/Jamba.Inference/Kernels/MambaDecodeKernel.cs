using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static Jamba.Inference.Kernels.BFloat16Bits;
using static TorchSharp.torch;

namespace Jamba.Inference.Kernels;

/// <summary>
/// The Mamba mixer's one-position decode step on CPU as two hand-written kernels around the <c>x_proj</c> GEMV:
/// <list type="number">
/// <item><see cref="ConvStep"/>: the depthwise conv over <c>[window | x]</c>, SiLU, and the window shift;</item>
/// <item><see cref="SsmStep"/>: the dt/B/C RMSNorms, <c>dt_proj</c> + softplus, the selective-scan update, the <c>D</c>
/// skip and the SiLU gate.</item>
/// </list>
/// At decode every tensor here is a few KiB, so the ~45 small tensor ops of the general path cost far more in dispatch
/// than in arithmetic; these kernels do the same math in fp32 registers in one pass (reading bf16 or fp32 directly).
/// The projections (<c>in_proj</c>, <c>x_proj</c>, <c>out_proj</c>) stay libtorch GEMVs. Same formulas as the tensor path
/// (and HF): only the rounding points differ (intermediates stay fp32 instead of being rounded to the compute dtype).
/// </summary>
internal static class MambaDecodeKernel
{
    /// <summary>Whether the kernels handle this configuration (CPU, fp32/bf16, SiLU, every input contiguous).</summary>
    public static bool Supports(Tensor hidden, string activation, Tensor window, Tensor state) =>
        CpuKernels.Enabled && DecodeKernels.Enabled && hidden.device_type == DeviceType.CPU
        && hidden.dtype is ScalarType.Float32 or ScalarType.BFloat16
        && activation is "silu" or "swish"
        && window.dtype == hidden.dtype && window.is_contiguous()
        && state.dtype == ScalarType.Float32 && state.is_contiguous();

    /// <summary>
    /// <c>x = silu(Σ_k w[c,k]·[window | x_new][k] + bias[c])</c> for the new position; shifts <paramref name="window"/>
    /// (<c>[B, d_inner, d_conv−1]</c>) in place. <paramref name="projected"/> is <c>in_proj</c>'s output <c>[B, 2·d_inner]</c>
    /// (x then gate). Returns <c>[B, d_inner]</c> in the compute dtype.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe Tensor ConvStep(Tensor projected, Tensor window, Tensor weight, Tensor? bias)
    {
        int batch = (int)projected.shape[0], dInner = (int)window.shape[1], w = (int)window.shape[2] + 1;
        bool half = projected.dtype == ScalarType.BFloat16;
        var output = torch.empty([batch, dInner], dtype: projected.dtype);
        nint pProj = SelectiveScan.Address(projected), pWin = SelectiveScan.Address(window), pW = SelectiveScan.Address(weight),
            pB = bias is null ? 0 : SelectiveScan.Address(bias), pOut = SelectiveScan.Address(output);
        var rowBuffer = ArrayPool<float>.Shared.Rent(dInner);
        fixed (float* conv = rowBuffer)
        {
            for (int b = 0; b < batch; b++)
            {
                // The window moves by raw element copies (its values are already in the compute dtype): no rounding, no
                // per-element dtype test; only the dot products are widened to fp32.
                if (half)
                {
                    ushort* win = (ushort*)pWin + (long)b * dInner * (w - 1), x = (ushort*)pProj + (long)b * 2 * dInner, wt = (ushort*)pW, bs = (ushort*)pB;
                    for (int c = 0; c < dInner; c++, win += w - 1, wt += w)
                    {
                        float acc = bs == null ? 0f : FromBits(bs[c]);
                        for (int k = 0; k < w - 1; k++) acc += FromBits(wt[k]) * FromBits(win[k]);
                        acc += FromBits(wt[w - 1]) * FromBits(x[c]);
                        for (int k = 0; k < w - 2; k++) win[k] = win[k + 1];
                        if (w > 1) win[w - 2] = x[c];
                        conv[c] = acc;
                    }
                }
                else
                {
                    float* win = (float*)pWin + (long)b * dInner * (w - 1), x = (float*)pProj + (long)b * 2 * dInner, wt = (float*)pW, bs = (float*)pB;
                    for (int c = 0; c < dInner; c++, win += w - 1, wt += w)
                    {
                        float acc = bs == null ? 0f : bs[c];
                        for (int k = 0; k < w - 1; k++) acc += wt[k] * win[k];
                        acc += wt[w - 1] * x[c];
                        for (int k = 0; k < w - 2; k++) win[k] = win[k + 1];
                        if (w > 1) win[w - 2] = x[c];
                        conv[c] = acc;
                    }
                }
                SiluInPlace(conv, dInner);
                StoreRow(conv, pOut, (long)b * dInner, dInner, half);
            }
        }
        ArrayPool<float>.Shared.Return(rowBuffer);
        return output;
    }

    /// <summary>
    /// The rest of the step for each row: <c>dt, B, C</c> = RMSNorm'd slices of <paramref name="ssm"/> (<c>[B, R + 2N]</c>);
    /// <c>Δ = softplus(dt_proj(dt))</c>; <c>h ← exp(Δ·A) ⊙ h + Δ·B·x</c> (<paramref name="state"/>, <c>[B, d_inner, N]</c>
    /// fp32, in place); <c>y = (h·C + D·x) · silu(gate)</c>. Returns <c>y</c>, <c>[B, d_inner]</c> in the compute dtype.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe Tensor SsmStep(Tensor ssm, Tensor x, Tensor projected, Tensor state,
        (Tensor Weight, double Epsilon) dtNorm, (Tensor Weight, double Epsilon) bNorm, (Tensor Weight, double Epsilon) cNorm, Tensor dtWeight, Tensor dtBias, Tensor a, Tensor d)
    {
        int batch = (int)x.shape[0], dInner = (int)x.shape[1], n = (int)state.shape[2], rank = (int)dtWeight.shape[1];
        bool half = x.dtype == ScalarType.BFloat16;
        var output = torch.empty([batch, dInner], dtype: x.dtype);
        nint pSsm = SelectiveScan.Address(ssm), pX = SelectiveScan.Address(x), pProj = SelectiveScan.Address(projected),
            pState = SelectiveScan.Address(state), pDtW = SelectiveScan.Address(dtWeight), pDtB = SelectiveScan.Address(dtBias),
            pA = SelectiveScan.Address(a), pD = SelectiveScan.Address(d), pOut = SelectiveScan.Address(output),
            pDtN = SelectiveScan.Address(dtNorm.Weight), pBN = SelectiveScan.Address(bNorm.Weight), pCN = SelectiveScan.Address(cNorm.Weight);
        bool dHalf = d.dtype == ScalarType.BFloat16;
        int width = rank + 2 * n;
        // Scratch from the shared pool: a decode step runs this once per Mamba layer, and fresh arrays were a steady
        // source of garbage (with the GEMVs' scratch, ~1 MiB per step and a 10–20 ms collection every few dozen steps).
        var pool = ArrayPool<float>.Shared;
        float[] dtRow = pool.Rent(rank), bRow = pool.Rent(n), cRow = pool.Rent(n), deltaRow = pool.Rent(dInner), yRow = pool.Rent(dInner), gateRow = pool.Rent(dInner);
        for (int b = 0; b < batch; b++)
        {
            long row = (long)b * width;
            Normalize(pSsm, row, rank, pDtN, dtNorm.Epsilon, half, dtRow);
            Normalize(pSsm, row + rank, n, pBN, bNorm.Epsilon, half, bRow);
            Normalize(pSsm, row + rank + n, n, pCN, cNorm.Epsilon, half, cRow);
            // Channels are independent once dt, B and C are normalised: split them over the kernel threads.
            int parts = dInner >= 1024 ? KernelThreads.Count : 1;
            int per = (dInner / parts + 15) & ~15;
            int rowIndex = b;
            KernelThreads.Run(parts, part =>
            {
                int from = part * per, to = Math.Min(dInner, from + per);
                if (from < to) Channels(rowIndex, from, to);
            });
        }
        pool.Return(dtRow);
        pool.Return(bRow);
        pool.Return(cRow);
        pool.Return(deltaRow);
        pool.Return(yRow);
        pool.Return(gateRow);
        return output;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        void Channels(int b, int from, int to)
        {
            fixed (float* dtv = dtRow, bv = bRow, cv = cRow, deltaAll = deltaRow, yAll = yRow, gateAll = gateRow)
            {
                float* deltas = deltaAll + from, ys = yAll + from, gates = gateAll + from;
                int count = to - from;
                for (int i = 0; i < count; i++) deltas[i] = Load(pDtB, from + i, half) + Dot(pDtW, (long)(from + i) * rank, dtv, rank, half);
                SoftplusInPlace(deltas, count);
                float* h0 = (float*)pState + (long)b * dInner * n;
                for (int i = 0; i < count; i++)
                {
                    int c = from + i;
                    float delta = deltas[i];
                    float xv = Load(pX, (long)b * dInner + c, half);
                    float* h = h0 + (long)c * n, ar = (float*)pA + (long)c * n;
                    float yv;
                    if (n == 16 && Vector512.IsHardwareAccelerated)
                    {
                        var hv = FastMath.Exp(Vector512.Load(ar) * delta) * Vector512.Load(h) + Vector512.Load(bv) * (delta * xv);
                        hv.Store(h);
                        yv = Vector512.Sum(hv * Vector512.Load(cv));
                    }
                    else
                    {
                        yv = 0f;
                        for (int s = 0; s < n; s++)
                        {
                            float hs = MathF.Exp(ar[s] * delta) * h[s] + bv[s] * (delta * xv);
                            h[s] = hs;
                            yv += hs * cv[s];
                        }
                    }
                    ys[i] = yv + Load(pD, c, dHalf) * xv;
                    gates[i] = Load(pProj, (long)b * 2 * dInner + dInner + c, half);
                }
                SiluInPlace(gates, count);
                for (int i = 0; i < count; i++) ys[i] *= gates[i];
                StoreRow(ys, pOut, (long)b * dInner + from, count, half);
            }
        }
    }

    /// <summary>RMSNorm of <paramref name="count"/> values at element <paramref name="offset"/>, times the norm's weight, in fp32
    /// (the tensor path's formula: <c>x · rsqrt(mean(x²) + ε) · w</c>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Normalize(nint src, long offset, int count, nint weight, double eps, bool half, float[] dst)
    {
        float sum = 0f;
        for (int i = 0; i < count; i++)
        {
            float v = Load(src, offset + i, half);
            dst[i] = v;
            sum += v * v;
        }
        float inverse = 1f / MathF.Sqrt(sum / count + (float)eps);
        for (int i = 0; i < count; i++) dst[i] = dst[i] * inverse * Load(weight, i, half);
    }

    /// <summary><c>Σ_r w[offset + r] · v[r]</c> over a bf16 or fp32 weight row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe float Dot(nint weight, long offset, float* v, int count, bool half)
    {
        int r = 0;
        float acc = 0f;
        if (Vector512.IsHardwareAccelerated)
        {
            var sum = Vector512<float>.Zero;
            if (half)
            {
                ushort* wr = (ushort*)weight + offset;
                for (; r + 32 <= count; r += 32)
                {
                    var (lo, hi) = Vector512.Widen(Vector512.Load(wr + r));
                    sum += Vector512.ShiftLeft(lo, 16).AsSingle() * Vector512.Load(v + r);
                    sum += Vector512.ShiftLeft(hi, 16).AsSingle() * Vector512.Load(v + r + 16);
                }
            }
            else
            {
                float* wr = (float*)weight + offset;
                for (; r + 16 <= count; r += 16) sum += Vector512.Load(wr + r) * Vector512.Load(v + r);
            }
            acc = Vector512.Sum(sum);
        }
        for (; r < count; r++) acc += Load(weight, offset + r, half) * v[r];
        return acc;
    }

    /// <summary><c>v · sigmoid(v)</c> over <paramref name="values"/> in place.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void SiluInPlace(float* values, int count)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 16 <= count; i += 16)
            {
                var v = Vector512.Load(values + i);
                (v / (Vector512<float>.One + FastMath.Exp(-v))).Store(values + i);
            }
        for (; i < count; i++) values[i] /= 1f + MathF.Exp(-values[i]);
    }

    /// <summary>Writes <paramref name="count"/> fp32 values to elements <paramref name="offset"/>… of a bf16 or fp32 buffer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void StoreRow(float* values, nint dst, long offset, int count, bool half)
    {
        if (!half)
        {
            new ReadOnlySpan<float>(values, count).CopyTo(new Span<float>((float*)dst + offset, count));
            return;
        }
        int i = 0;
        if (Vector512.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Avx512F.IsSupported)
            for (; i + 16 <= count; i += 16) Store16(dst, offset + i, Vector512.Load(values + i), true);
        for (; i < count; i++) Store(dst, offset + i, values[i], half);
    }

    /// <summary>PyTorch's softplus (β = 1, threshold 20) over <paramref name="values"/> in place (<see cref="FastMath.Softplus"/>,
    /// within 3 ulp; the scalar tail in double).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void SoftplusInPlace(float* values, int count)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 16 <= count; i += 16) FastMath.Softplus(Vector512.Load(values + i)).Store(values + i);
        for (; i < count; i++) values[i] = values[i] > 20f ? values[i] : (float)Math.Log(1.0 + Math.Exp(values[i]));
    }
}
