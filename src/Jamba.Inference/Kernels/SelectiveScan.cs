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
        return RunTensor(x, delta, a, bMat, cMat, dSkip, state);
    }

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
