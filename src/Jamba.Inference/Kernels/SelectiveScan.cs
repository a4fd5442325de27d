using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Kernels;

/// <summary>
/// Mamba's selective scan: <c>h_t = exp(Δ_t·A) ⊙ h_{t−1} + Δ_t·B_t·x_t</c>, <c>y_t = h_t·C_t + D·x_t</c>, with the
/// state in fp32. A hand-written kernel over the raw tensor memory runs it on CPU (a per-timestep loop of
/// tensor ops would be dominated by dispatch overhead); other devices use tensor operations.
/// </summary>
public static class SelectiveScan
{
    /// <summary>Runs the scan.</summary>
    /// <param name="x">Inputs <c>[B, D, L]</c>.</param>
    /// <param name="delta">Step sizes <c>[B, D, L]</c> (after softplus).</param>
    /// <param name="a">State matrix <c>A = −exp(A_log)</c>, <c>[D, N]</c> fp32.</param>
    /// <param name="bMat">Input matrix <c>[B, L, N]</c>.</param>
    /// <param name="cMat">Output matrix <c>[B, L, N]</c>.</param>
    /// <param name="dSkip">Skip weights <c>[D]</c>.</param>
    /// <param name="state">SSM state <c>[B, D, N]</c> fp32, updated in place (pass zeros to start).</param>
    /// <returns><c>y</c>, <c>[B, D, L]</c> fp32.</returns>
    public static Tensor Run(Tensor x, Tensor delta, Tensor a, Tensor bMat, Tensor cMat, Tensor dSkip, Tensor state)
    {
        bool needsGrad = torch.is_grad_enabled() && (x.requires_grad || delta.requires_grad || a.requires_grad || bMat.requires_grad || cMat.requires_grad || dSkip.requires_grad);
        bool cpu = CpuKernels.Enabled && x.device_type == DeviceType.CPU && state.is_contiguous() && state.dtype == ScalarType.Float32;
        if (cpu && !needsGrad)
            return RunCpu(x, delta, a, bMat, cMat, dSkip, state);
        if (cpu && IsZero(state))
            return SelectiveScanFunction.apply(x, delta, a, bMat, cMat, dSkip); // training: fused kernel with its own backward
        if (!needsGrad && x.shape[2] >= MinChunkedLength)
            return RunChunked(x, delta, a, bMat, cMat, dSkip, state);
        return RunTensor(x, delta, a, bMat, cMat, dSkip, state);
    }

    /// <summary>Prompts shorter than this run the per-step formulation (a handful of steps, no chunk set-up).</summary>
    internal const int MinChunkedLength = 32;

    /// <summary>Elements of one <c>[B, span, D, N]</c> working tensor of the chunked scan: the span of positions taken at
    /// once is chosen so that each of its four working tensors stays within this. On a CPU 4 MB, so that a span's passes run in
    /// cache (measured on the bench shape, 2,048 positions: 1 Mi elements 452 tok/s, 4 Mi 360, 16 Mi 272); on a GPU 256 MB,
    /// so that few, large kernels run.</summary>
    private static long SpanElements(Tensor x) => x.device_type == DeviceType.CPU ? 1L << 20 : 64L << 20;

    /// <summary>
    /// The selective scan in O(L / chunk) sequential steps of tensor operations (the device path; no gradients), exact to
    /// the per-step formulation up to fp32 rounding. Positions are taken in spans whose working tensors fit a memory budget,
    /// and each span in chunks of <paramref name="chunk"/> positions:
    /// <list type="number">
    /// <item>the decays <c>exp(Δ_t·A)</c> and the inputs <c>u_t = Δ_t·x_t·B_t</c> of every position at once, and the
    /// cumulative decay within each chunk, <c>P_t = exp(Σ_{s≤t} Δ_s·A)</c>, from a cumulative sum in log space
    /// (every exponent is ≤ 0: nothing overflows);</item>
    /// <item>the scan within every chunk from a zero state, all chunks together: <c>chunk − 1</c> steps, each one fused
    /// multiply-add over every chunk;</item>
    /// <item>the state carried from chunk to chunk: <c>H_c = P_end(c)·H_{c−1} + local_end(c)</c>, one step per chunk;</item>
    /// <item>every position's state <c>h_t = local_t + P_t·H_in</c> at once, and <c>y_t = h_t·C_t + D·x_t</c> as one batched
    /// matrix product.</item>
    /// </list>
    /// A 2048-position prompt of the bench shape is ≈ 1,400 tensor operations per layer on a CPU (cache-sized spans of 32) and ≈ 200 on a GPU, against ≈ 14,000 for the per-step loop.
    /// </summary>
    /// <param name="x">Inputs <c>[B, D, L]</c>.</param>
    /// <param name="delta">Step sizes <c>[B, D, L]</c> (after softplus).</param>
    /// <param name="a">State matrix <c>A</c>, <c>[D, N]</c>.</param>
    /// <param name="bMat">Input matrix <c>[B, L, N]</c>.</param>
    /// <param name="cMat">Output matrix <c>[B, L, N]</c>.</param>
    /// <param name="dSkip">Skip weights <c>[D]</c>.</param>
    /// <param name="state">SSM state <c>[B, D, N]</c> fp32, updated in place.</param>
    /// <param name="chunk">Positions per chunk (≥ 1); 0 picks 8 on a CPU (spans are short there), 16 elsewhere.</param>
    /// <returns><c>y</c>, <c>[B, D, L]</c> fp32.</returns>
    public static Tensor RunChunked(Tensor x, Tensor delta, Tensor a, Tensor bMat, Tensor cMat, Tensor dSkip, Tensor state, int chunk = 0) =>
        RunChunked(x, delta, a, bMat, cMat, dSkip, state, chunk, SpanElements(x));

    /// <summary><see cref="RunChunked(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, int)"/> with the span budget given
    /// (elements of one working tensor).</summary>
    internal static Tensor RunChunked(Tensor x, Tensor delta, Tensor a, Tensor bMat, Tensor cMat, Tensor dSkip, Tensor state, int chunk, long spanElements)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(chunk);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        long batch = x.shape[0], d = x.shape[1], l = x.shape[2], n = a.shape[1];
        int t = chunk > 0 ? chunk : x.device_type == DeviceType.CPU ? 8 : 16;
        var xs = x.to(ScalarType.Float32).transpose(1, 2);                      // [B, L, D]
        var dts = delta.to(ScalarType.Float32).transpose(1, 2);                 // [B, L, D] (contiguous when Δ is a transposed [B, L, D])
        var af = a.to(ScalarType.Float32);
        var bf = bMat.to(ScalarType.Float32);
        var cf = cMat.to(ScalarType.Float32);
        long perPosition = Math.Max(1, batch * d * n);
        long span = Math.Max(t, spanElements / perPosition / t * t);
        var h = state.to(ScalarType.Float32);
        var ys = new List<Tensor>();
        for (long start = 0; start < l; start += span)
        {
            long len = Math.Min(span, l - start);
            ys.Add(ScanSpan(xs.narrow(1, start, len), dts.narrow(1, start, len), af, bf.narrow(1, start, len), cf.narrow(1, start, len), ref h, t));
        }
        state.copy_(h);
        var y = (ys.Count == 1 ? ys[0] : torch.cat(ys, 1)).transpose(1, 2);    // [B, D, L]
        var result = y.Plus(x.to(ScalarType.Float32) * dSkip.to(ScalarType.Float32).view(1, -1, 1));
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>One span of the chunked scan: <c>x</c>, <c>Δ</c> <c>[B, S, D]</c>, <c>B</c>/<c>C</c> <c>[B, S, N]</c>,
    /// the state <paramref name="h"/> <c>[B, D, N]</c> in and out; returns <c>Σ_n h·C</c> <c>[B, S, D]</c>.</summary>
    private static Tensor ScanSpan(Tensor x, Tensor dt, Tensor a, Tensor b, Tensor c, ref Tensor h, int t)
    {
        using var scope = NewDisposeScope(); // one span's working tensors are freed before the next span's are made
        long batch = x.shape[0], s = x.shape[1], d = x.shape[2], n = a.shape[1];
        long chunks = (s + t - 1) / t, padded = chunks * t;
        if (padded != s)
        {
            // Zero steps at the end: Δ = 0 decays nothing and adds nothing, so the state leaves the span unchanged by them.
            long extra = padded - s;
            x = PadSteps(x, extra);
            dt = PadSteps(dt, extra);
            b = PadSteps(b, extra);
            c = PadSteps(c, extra);
        }
        var dA = dt.unsqueeze(-1) * a;                                          // [B, P, D, N], ≤ 0
        var decay = dA.exp().view(batch, chunks, t, d, n);
        var cumulative = dA.view(batch, chunks, t, d, n).cumsum(2).exp_();       // P_t within each chunk
        var u = ((dt * x).unsqueeze(-1) * b.unsqueeze(2)).view(batch, chunks, t, d, n); // Δ·x·B, becomes the local scan in place
        for (int i = 1; i < t; i++)
            u.select(2, i).addcmul_(decay.select(2, i), u.select(2, i - 1), TorchScalars.One);
        var endDecay = cumulative.select(2, t - 1);                             // [B, C, D, N]
        var endLocal = u.select(2, t - 1);
        var entering = new Tensor[chunks];
        for (long ci = 0; ci < chunks; ci++)
        {
            entering[ci] = h;
            h = torch.addcmul(endLocal.select(1, ci), endDecay.select(1, ci), h, TorchScalars.One);
        }
        u.addcmul_(cumulative, torch.stack(entering, 1).unsqueeze(2), TorchScalars.One);        // h_t = local_t + P_t·H_in
        var y = torch.matmul(u.view(batch * padded, d, n), c.reshape(batch * padded, n, 1)).view(batch, padded, d);
        h = h.MoveToOuterDisposeScope();
        return (padded == s ? y : y.narrow(1, 0, s)).MoveToOuterDisposeScope();
    }

    /// <summary><paramref name="t"/> <c>[B, S, F]</c> followed by <paramref name="extra"/> zero steps, concatenated
    /// (the padding function of TorchSharp would build a transient Scalar for its fill value).</summary>
    private static Tensor PadSteps(Tensor t, long extra) =>
        torch.cat([t, torch.zeros([t.shape[0], extra, t.shape[2]], t.dtype, t.device)], 1);

    /// <summary>The reference formulation in tensor ops (any device; differentiable, so training uses it).</summary>
    public static Tensor RunTensor(Tensor x, Tensor delta, Tensor a, Tensor bMat, Tensor cMat, Tensor dSkip, Tensor state)
    {
        using var scope = NewDisposeScope();
        var xf = x.to(ScalarType.Float32);
        var dt = delta.to(ScalarType.Float32);
        var af = a.to(ScalarType.Float32).unsqueeze(0);                          // [1, D, N]
        // unbind (not select) per time step: its backward is one stack instead of a full-size zero tensor per step.
        var xs = xf.unbind(2);                                                   // L × [B, D]
        var dts = dt.unbind(2);
        var bs = bMat.to(ScalarType.Float32).unbind(1);                          // L × [B, N]
        var cs = cMat.to(ScalarType.Float32).unbind(1);
        var h = state.clone(); // the caller's state is overwritten below; autograd must not see that write
        var outputs = new Tensor[xs.Length];
        for (int t = 0; t < xs.Length; t++)
        {
            var step = dts[t].unsqueeze(-1);                                     // [B, D, 1]
            h = (torch.exp(af * step) * h).Plus((step * xs[t].unsqueeze(-1)) * bs[t].unsqueeze(1));
            outputs[t] = (h * cs[t].unsqueeze(1)).sum(-1);                       // [B, D]
        }
        using (torch.no_grad()) state.copy_(h);
        var y = torch.stack(outputs, dim: -1).Plus(xf * dSkip.to(ScalarType.Float32).view(1, -1, 1));
        return y.MoveToOuterDisposeScope();
    }

    private static bool IsZero(Tensor state)
    {
        using var nz = state.count_nonzero();
        return nz.item<long>() == 0;
    }

    private static Tensor RunCpu(Tensor x, Tensor delta, Tensor a, Tensor bMat, Tensor cMat, Tensor dSkip, Tensor state)
    {
        using var scope = NewDisposeScope();
        // The big per-channel inputs (x, Δ) are read as they are (fp32 or bf16, widened in registers) and y is written in
        // x's dtype: no full-size conversion copies around the kernel. B and C are small ([B, L, N]) and made fp32.
        static Tensor Native(Tensor t) => (t.dtype is ScalarType.Float32 or ScalarType.BFloat16 ? t : t.to(ScalarType.Float32)).contiguous();
        var y = RunCpuKernel(Native(x), Native(delta), a.to(ScalarType.Float32).contiguous(),
            bMat.to(ScalarType.Float32).contiguous(), cMat.to(ScalarType.Float32).contiguous(), dSkip.to(ScalarType.Float32).contiguous(), state);
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>The CPU kernel on contiguous inputs (<c>x</c>, <c>Δ</c> fp32 or bf16; the rest fp32); returns a new <c>y</c>
    /// in <c>x</c>'s dtype and updates <paramref name="state"/> in place.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    internal static unsafe Tensor RunCpuKernel(Tensor xf, Tensor dt, Tensor af, Tensor bf, Tensor cf, Tensor df, Tensor state)
    {
        int batch = (int)xf.shape[0], d = (int)xf.shape[1], l = (int)xf.shape[2], n = (int)af.shape[1];
        bool xHalf = xf.dtype == ScalarType.BFloat16, dtHalf = dt.dtype == ScalarType.BFloat16;
        var y = torch.empty([batch, d, l], dtype: xf.dtype);
        float* pa = Ptr(af), pb = Ptr(bf), pc = Ptr(cf), pd = Ptr(df), ph = Ptr(state);
        nint ix = Address(xf), idt = Address(dt), ia = (nint)pa, ib = (nint)pb, ic = (nint)pc, id = (nint)pd, ih = (nint)ph, iy = Address(y);
        int rows = batch * d;
        int xSize = xHalf ? 2 : 4, dtSize = dtHalf ? 2 : 4;
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
        void Row(int r)
        {
            int bi = r / d, di = r % d;
            // Rows are staged through fp32 scratch when stored as bf16 (one row is at most a chunk of the prompt).
            bool small = l <= 256;
            Span<float> xBuf = !xHalf ? default : small ? stackalloc float[l] : new float[l];
            Span<float> dtBuf = !dtHalf ? default : small ? stackalloc float[l] : new float[l];
            Span<float> yBuf = !xHalf ? default : small ? stackalloc float[l] : new float[l];
            float* xr, dtr, yr;
            fixed (float* xb = xBuf, db = dtBuf, yb = yBuf)
            {
                byte* xSrc = (byte*)ix + (long)r * l * xSize, dtSrc = (byte*)idt + (long)r * l * dtSize;
                if (xHalf) { Widen((ushort*)xSrc, xb, l); xr = xb; yr = yb; } else { xr = (float*)xSrc; yr = (float*)iy + (long)r * l; }
                if (dtHalf) { Widen((ushort*)dtSrc, db, l); dtr = db; } else dtr = (float*)dtSrc;
                RowCore(r, bi, di, xr, dtr, yr);
                if (xHalf) Narrow(yb, (ushort*)iy + (long)r * l, l);
            }
        }
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
        void RowCore(int r, int bi, int di, float* xr, float* dtr, float* yr)
        {
            float* ar = (float*)ia + (long)di * n, hr = (float*)ih + (long)r * n;
            float* bb = (float*)ib + (long)bi * l * n, cb = (float*)ic + (long)bi * l * n;
            float dskip = ((float*)id)[di];
            if (n == 16 && Vector512.IsHardwareAccelerated)
            {
                // One AVX-512 register holds the whole state of a channel (Jamba's d_state is 16).
                var av = Vector512.Load(ar);
                var hv = Vector512.Load(hr);
                for (int t = 0; t < l; t++)
                {
                    float step = dtr[t];
                    var decay = FastMath.Exp(av * step);
                    hv = decay * hv + Vector512.Load(bb + (long)t * n) * (step * xr[t]);
                    yr[t] = Vector512.Sum(hv * Vector512.Load(cb + (long)t * n)) + dskip * xr[t];
                }
                hv.Store(hr);
                return;
            }
            if (n % 8 == 0 && Vector256.IsHardwareAccelerated)
            {
                int chunks = n / 8;
                Span<Vector256<float>> hs = stackalloc Vector256<float>[chunks];
                for (int c = 0; c < chunks; c++) hs[c] = Vector256.Load(hr + c * 8);
                for (int t = 0; t < l; t++)
                {
                    float step = dtr[t], xs = step * xr[t];
                    float* bt = bb + (long)t * n, ct = cb + (long)t * n;
                    var acc = Vector256<float>.Zero;
                    for (int c = 0; c < chunks; c++)
                    {
                        var hv = Vector256.Exp(Vector256.Load(ar + c * 8) * step) * hs[c] + Vector256.Load(bt + c * 8) * xs;
                        hs[c] = hv;
                        acc += hv * Vector256.Load(ct + c * 8);
                    }
                    yr[t] = Vector256.Sum(acc) + dskip * xr[t];
                }
                for (int c = 0; c < chunks; c++) hs[c].Store(hr + c * 8);
                return;
            }
            Span<float> h = stackalloc float[n];
            for (int s = 0; s < n; s++) h[s] = hr[s];
            for (int t = 0; t < l; t++)
            {
                float step = dtr[t], xv = xr[t];
                float* bt = bb + (long)t * n, ct = cb + (long)t * n;
                float acc = 0f;
                for (int s = 0; s < n; s++)
                {
                    float hs = MathF.Exp(ar[s] * step) * h[s] + step * bt[s] * xv;
                    h[s] = hs;
                    acc += hs * ct[s];
                }
                yr[t] = acc + dskip * xv;
            }
            for (int s = 0; s < n; s++) hr[s] = h[s];
        }
        long work = (long)rows * l * n;
        if (work < 1 << 16) for (int r = 0; r < rows; r++) Row(r);
        else Parallel.For(0, rows, Row);
        return y;
    }

    private static unsafe float* Ptr(Tensor t) => (float*)Address(t);

    private static unsafe void Widen(ushort* src, float* dst, int count)
    {
        for (int i = 0; i < count; i++) dst[i] = BFloat16Bits.Load((nint)src, i, true);
    }

    private static unsafe void Narrow(float* src, ushort* dst, int count)
    {
        for (int i = 0; i < count; i++) BFloat16Bits.Store((nint)dst, i, src[i], true);
    }

    /// <summary>The data address of a contiguous CPU tensor.</summary>
    internal static unsafe nint Address(Tensor t) => (nint)System.Runtime.CompilerServices.Unsafe.AsPointer(ref t.bytes.GetPinnableReference());
}
