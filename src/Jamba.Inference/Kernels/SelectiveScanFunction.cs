using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Kernels;

/// <summary>
/// The selective scan as a custom autograd function for CPU training: the forward is the fast kernel, the
/// backward a hand-written reverse scan (the states are recomputed per row instead of stored). Exact
/// gradients for <c>x, Δ, A, B, C, D</c> from a zero initial state; a tensor-op scan would need thousands of
/// small autograd nodes per layer.
/// </summary>
internal sealed class SelectiveScanFunction : autograd.SingleTensorFunction<SelectiveScanFunction>
{
    public override string Name => nameof(SelectiveScanFunction);

    /// <summary>vars: x [B,D,L], delta [B,D,L], a [D,N], b [B,L,N], c [B,L,N], d [D] — fp32, CPU.</summary>
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var t = vars.Select(v => ((Tensor)v).detach().to(ScalarType.Float32).contiguous()).ToArray();
        ctx.save_for_backward([.. t]);
        using var state = torch.zeros([t[0].shape[0], t[0].shape[1], t[2].shape[1]], dtype: ScalarType.Float32);
        return SelectiveScan.RunCpuKernel(t[0], t[1], t[2], t[3], t[4], t[5], state);
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var saved = ctx.get_saved_variables();
        var (x, dt, a, bm, cm, dd) = (saved[0], saved[1], saved[2], saved[3], saved[4], saved[5]);
        var gy = gradOutput.to(ScalarType.Float32).contiguous();
        int batch = (int)x.shape[0], d = (int)x.shape[1], l = (int)x.shape[2], n = (int)a.shape[1];
        var gx = torch.zeros_like(x);
        var gdt = torch.zeros_like(dt);
        var ga = torch.zeros_like(a);
        var gb = torch.zeros_like(bm);
        var gc = torch.zeros_like(cm);
        var gd = torch.zeros_like(dd);
        Backward(x, dt, a, bm, cm, dd, gy, gx, gdt, ga, gb, gc, gd, batch, d, l, n);
        return [gx, gdt, ga, gb, gc, gd];
    }

    private static unsafe void Backward(Tensor x, Tensor dt, Tensor a, Tensor bm, Tensor cm, Tensor dd, Tensor gy,
        Tensor gx, Tensor gdt, Tensor ga, Tensor gb, Tensor gc, Tensor gd, int batch, int d, int l, int n)
    {
        nint px = SelectiveScan.Address(x), pdt = SelectiveScan.Address(dt), pa = SelectiveScan.Address(a), pb = SelectiveScan.Address(bm),
             pc = SelectiveScan.Address(cm), pd = SelectiveScan.Address(dd), pgy = SelectiveScan.Address(gy), pgx = SelectiveScan.Address(gx),
             pgdt = SelectiveScan.Address(gdt), pga = SelectiveScan.Address(ga), pgb = SelectiveScan.Address(gb), pgc = SelectiveScan.Address(gc),
             pgd = SelectiveScan.Address(gd);
        var gate = new object();
        // Parallel over channels d: gA, gD and gx/gΔ rows are private to a channel; gB/gC (shared across channels)
        // are summed in per-thread buffers and added once per thread.
        Parallel.For(0, d,
            () => (B: new float[batch * l * n], C: new float[batch * l * n], H: new float[l * n]),
            (di, _, local) =>
            {
                float* A = (float*)pa + (long)di * n;
                float* gA = (float*)pga + (long)di * n;
                float dskip = ((float*)pd)[di];
                float gDacc = 0;
                Span<float> gh = stackalloc float[n];
                for (int bi = 0; bi < batch; bi++)
                {
                    long row = (long)bi * d + di;
                    float* xr = (float*)px + row * l, dtr = (float*)pdt + row * l, gyr = (float*)pgy + row * l;
                    float* gxr = (float*)pgx + row * l, gdtr = (float*)pgdt + row * l;
                    float* B = (float*)pb + (long)bi * l * n, C = (float*)pc + (long)bi * l * n;
                    var H = local.H;
                    // recompute the states of this row
                    for (int s = 0; s < n; s++) gh[s] = 0f;
                    for (int t = 0; t < l; t++)
                    {
                        float step = dtr[t], xv = xr[t];
                        for (int s = 0; s < n; s++)
                        {
                            float prev = t == 0 ? 0f : H[(t - 1) * n + s];
                            H[t * n + s] = MathF.Exp(A[s] * step) * prev + step * B[t * n + s] * xv;
                        }
                    }
                    for (int t = l - 1; t >= 0; t--)
                    {
                        float step = dtr[t], xv = xr[t], g = gyr[t];
                        float gxv = g * dskip, gstep = 0f;
                        gDacc += g * xv;
                        int off = (bi * l + t) * n;
                        for (int s = 0; s < n; s++)
                        {
                            float h = H[t * n + s];
                            float prev = t == 0 ? 0f : H[(t - 1) * n + s];
                            float decay = MathF.Exp(A[s] * step);
                            float g_h = gh[s] + g * C[t * n + s];
                            local.C[off + s] += g * h;
                            float g_decay = g_h * prev;
                            gstep += g_decay * decay * A[s] + g_h * B[t * n + s] * xv;
                            gA[s] += g_decay * decay * step;
                            local.B[off + s] += g_h * step * xv;
                            gxv += g_h * step * B[t * n + s];
                            gh[s] = g_h * decay;
                        }
                        gxr[t] = gxv;
                        gdtr[t] = gstep;
                    }
                }
                ((float*)pgd)[di] = gDacc;
                return local;
            },
            local =>
            {
                lock (gate)
                {
                    float* gB = (float*)pgb, gC = (float*)pgc;
                    for (int i = 0; i < local.B.Length; i++)
                    {
                        gB[i] += local.B[i];
                        gC[i] += local.C[i];
                    }
                }
            });
    }
}
