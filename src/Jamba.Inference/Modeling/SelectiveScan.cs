using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Modeling;

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
        if (x.device_type == DeviceType.CPU && state.is_contiguous() && state.dtype == ScalarType.Float32)
            return RunCpu(x, delta, a, bMat, cMat, dSkip, state);
        return RunTensor(x, delta, a, bMat, cMat, dSkip, state);
    }

    /// <summary>The reference formulation in tensor ops (any device; used off-CPU).</summary>
    public static Tensor RunTensor(Tensor x, Tensor delta, Tensor a, Tensor bMat, Tensor cMat, Tensor dSkip, Tensor state)
    {
        using var scope = NewDisposeScope();
        long l = x.shape[2];
        var xf = x.to(ScalarType.Float32);
        var dt = delta.to(ScalarType.Float32);
        var discreteA = torch.exp(a.unsqueeze(0).unsqueeze(2) * dt.unsqueeze(-1));              // [B, D, L, N]
        var deltaBu = dt.unsqueeze(-1) * bMat.to(ScalarType.Float32).unsqueeze(1) * xf.unsqueeze(-1); // [B, D, L, N]
        var c = cMat.to(ScalarType.Float32);
        var h = state.clone();
        var outputs = new Tensor[l];
        for (long t = 0; t < l; t++)
        {
            h = discreteA.select(2, t) * h + deltaBu.select(2, t);
            outputs[t] = torch.matmul(h, c.select(1, t).unsqueeze(-1)).squeeze(-1);          // [B, D]
        }
        state.copy_(h);
        var y = torch.stack(outputs, dim: -1) + xf * dSkip.to(ScalarType.Float32).view(1, -1, 1);
        return y.MoveToOuterDisposeScope();
    }

    private static unsafe Tensor RunCpu(Tensor x, Tensor delta, Tensor a, Tensor bMat, Tensor cMat, Tensor dSkip, Tensor state)
    {
        using var scope = NewDisposeScope();
        var xf = x.to(ScalarType.Float32).contiguous();
        var dt = delta.to(ScalarType.Float32).contiguous();
        var af = a.to(ScalarType.Float32).contiguous();
        var bf = bMat.to(ScalarType.Float32).contiguous();
        var cf = cMat.to(ScalarType.Float32).contiguous();
        var df = dSkip.to(ScalarType.Float32).contiguous();
        int batch = (int)x.shape[0], d = (int)x.shape[1], l = (int)x.shape[2], n = (int)a.shape[1];
        var y = torch.empty([batch, d, l], dtype: ScalarType.Float32);
        float* px = Ptr(xf), pdt = Ptr(dt), pa = Ptr(af), pb = Ptr(bf), pc = Ptr(cf), pd = Ptr(df), ph = Ptr(state), py = Ptr(y);
        nint ix = (nint)px, idt = (nint)pdt, ia = (nint)pa, ib = (nint)pb, ic = (nint)pc, id = (nint)pd, ih = (nint)ph, iy = (nint)py;
        int rows = batch * d;
        void Row(int r)
        {
            int bi = r / d, di = r % d;
            float* xr = (float*)ix + (long)r * l, dtr = (float*)idt + (long)r * l, yr = (float*)iy + (long)r * l;
            float* ar = (float*)ia + (long)di * n, hr = (float*)ih + (long)r * n;
            float* bb = (float*)ib + (long)bi * l * n, cb = (float*)ic + (long)bi * l * n;
            float dskip = ((float*)id)[di];
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
        return y.MoveToOuterDisposeScope();
    }

    private static unsafe float* Ptr(Tensor t) => (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref t.bytes.GetPinnableReference());
}
