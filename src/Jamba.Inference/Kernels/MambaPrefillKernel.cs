using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Kernels;

/// <summary>
/// The Mamba mixer's multi-position (prefill) path on CPU in the channels-last layout that <c>in_proj</c> produces
/// (<c>[B, L, channels]</c>), as two hand-written kernels around the <c>x_proj</c> and <c>dt_proj</c> GEMMs:
/// <list type="number">
/// <item><see cref="ConvSilu"/>: padding mask, the depthwise causal conv over <c>[window | x]</c>, SiLU, mask again, and the
/// window carried to the next call;</item>
/// <item><see cref="ScanGate"/>: the selective scan (<c>h ← exp(Δ·A) ⊙ h + Δ·B·x</c>, <c>y = h·C + D·x</c>) and the SiLU gate.</item>
/// </list>
/// The tensor path works channel-major (<c>[B, C, L]</c>, as HF does) and so transposes four activations of
/// <c>L × d_inner</c> per layer, runs libtorch's depthwise conv, and scans one channel at a time with a horizontal sum per
/// step. Here 16 channels share one AVX-512 register and the state's <c>N</c> columns are separate registers, so no
/// reduction is needed, and nothing is transposed: ~5× less time than the tensor path between the projections.
/// Rounding points are the tensor path's (conv, activation, scan output, gate and product each rounded to the compute dtype).
/// </summary>
internal static class MambaPrefillKernel
{
    /// <summary>Channels per block: one AVX-512 register of fp32.</summary>
    private const int Lanes = 16;

    /// <summary>The switch for the prefill kernels: on by default; <c>JAMBA_PREFILL_KERNELS=0</c> turns them off (to benchmark
    /// both paths); tests flip it to compare with the tensor path.</summary>
    internal static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("JAMBA_PREFILL_KERNELS") != "0";

    /// <summary>Whether the kernels handle this configuration: enabled, CPU with AVX-512, fp32/bf16, SiLU, channels a multiple
    /// of 16, a conv width of at most 8, and the cache tensors contiguous in the expected dtypes.</summary>
    public static bool Supports(Tensor hidden, string activation, int dInner, int dConv, Tensor window, Tensor state) =>
        CpuKernels.Enabled && Enabled && Vector512.IsHardwareAccelerated && Avx512F.IsSupported && Avx512BW.IsSupported
        && hidden.device_type == DeviceType.CPU
        && hidden.dtype is ScalarType.Float32 or ScalarType.BFloat16
        && activation is "silu" or "swish"
        && dInner % Lanes == 0 && dConv is >= 1 and <= 8
        && window.dtype == hidden.dtype && window.is_contiguous()
        && state.dtype == ScalarType.Float32 && state.is_contiguous();

    /// <summary>
    /// <c>x = silu(conv([window | x·mask]))·mask</c> for every new position, from the x half of <paramref name="projected"/>
    /// (<c>in_proj</c>'s output <c>[B, L, 2·d_inner]</c>, x then gate). Sets <paramref name="window"/> (<c>[B, d_inner, d_conv−1]</c>)
    /// to the last <c>d_conv − 1</c> inputs. Returns <c>[B, L, d_inner]</c> in the compute dtype.
    /// </summary>
    /// <param name="projected">Contiguous <c>[B, L, 2·d_inner]</c>.</param>
    /// <param name="window">The previous inputs, updated in place.</param>
    /// <param name="weight">Conv kernel <c>[d_inner, 1, d_conv]</c>.</param>
    /// <param name="bias">Conv bias <c>[d_inner]</c> or null.</param>
    /// <param name="positionMask">1/0 per position <c>[B, L]</c> in the compute dtype, or null.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe Tensor ConvSilu(Tensor projected, Tensor window, Tensor weight, Tensor? bias, Tensor? positionMask)
    {
        int batch = (int)projected.shape[0], l = (int)projected.shape[1], dInner = (int)window.shape[1], w = (int)window.shape[2] + 1;
        bool half = projected.dtype == ScalarType.BFloat16;
        using var maskTensor = positionMask?.to(projected.dtype).contiguous();
        var output = torch.empty([batch, l, dInner], dtype: projected.dtype);
        nint pProj = SelectiveScan.Address(projected), pWin = SelectiveScan.Address(window), pW = SelectiveScan.Address(weight),
            pB = bias is null ? 0 : SelectiveScan.Address(bias), pMask = maskTensor is null ? 0 : SelectiveScan.Address(maskTensor),
            pOut = SelectiveScan.Address(output);
        int blocksPerRow = dInner / Lanes, blocks = batch * blocksPerRow;
        RunBlocks(blocks, (from, to) =>
        {
            Span<Vector512<float>> taps = stackalloc Vector512<float>[w];
            Span<Vector512<float>> inputs = stackalloc Vector512<float>[w];   // the last w inputs, oldest first
            int dInnerL = dInner, lL = l, wL = w;
            bool halfL = half;
            Span<float> lanes = stackalloc float[Lanes];
            for (int block = from; block < to; block++)
            {
                int b = block / blocksPerRow, c0 = block % blocksPerRow * Lanes;
                for (int k = 0; k < w; k++)
                {
                    for (int j = 0; j < Lanes; j++) lanes[j] = BFloat16Bits.Load(pW, (long)(c0 + j) * w + k, half);
                    taps[k] = Vector512.Create<float>(lanes);
                }
                var biasV = Vector512<float>.Zero;
                if (pB != 0)
                {
                    for (int j = 0; j < Lanes; j++) lanes[j] = BFloat16Bits.Load(pB, c0 + j, half);
                    biasV = Vector512.Create<float>(lanes);
                }
                for (int k = 0; k < w - 1; k++)
                {
                    for (int j = 0; j < Lanes; j++) lanes[j] = BFloat16Bits.Load(pWin, ((long)b * dInner + c0 + j) * (w - 1) + k, half);
                    inputs[k] = Vector512.Create<float>(lanes);
                }
                long rowBase = (long)b * lL;
                for (int t = 0; t < lL; t++)
                {
                    long row = rowBase + t;
                    var xv = BFloat16Bits.Load16(pProj, row * 2 * dInnerL + c0, halfL);
                    var m = pMask == 0 ? Vector512<float>.One : Vector512.Create(BFloat16Bits.Load(pMask, row, halfL));
                    if (pMask != 0) xv *= m;
                    inputs[wL - 1] = xv;
                    var acc = biasV;
                    for (int k = 0; k < wL; k++) acc = Vector512.FusedMultiplyAdd(taps[k], inputs[k], acc);
                    for (int k = 0; k < wL - 1; k++) inputs[k] = inputs[k + 1];
                    if (halfL) acc = BFloat16Bits.Round16(acc);
                    var y = acc / (Vector512<float>.One + FastMath.Exp(-acc));
                    if (pMask != 0) y *= m;
                    BFloat16Bits.Store16(pOut, row * dInnerL + c0, y, halfL);
                }
                // The new window: the last w − 1 inputs (old window entries when fewer than w − 1 positions arrived).
                for (int k = 0; k < w - 1; k++)
                {
                    inputs[k].CopyTo(lanes);
                    for (int j = 0; j < Lanes; j++) BFloat16Bits.Store(pWin, ((long)b * dInner + c0 + j) * (w - 1) + k, lanes[j], half);
                }
            }
        });
        return output;
    }

    /// <summary>
    /// The selective scan over the <c>L</c> new positions and the SiLU gate: <c>y = (h·C + D·x) · silu(gate)</c>, with
    /// <paramref name="state"/> (<c>[B, d_inner, N]</c> fp32) continued and updated in place.
    /// </summary>
    /// <param name="x">Conv output <c>[B, L, d_inner]</c>, contiguous, compute dtype.</param>
    /// <param name="dtProjected"><c>dt_proj</c>'s output <c>[B, L, d_inner]</c>, contiguous, compute dtype: <c>Δ</c> before the
    /// softplus, which is applied here (and rounded to the compute dtype, as the tensor path's softplus output is).</param>
    /// <param name="aT">Transposed state matrix <c>Aᵀ = −exp(A_log)ᵀ</c>, <c>[N, d_inner]</c> fp32.</param>
    /// <param name="bMat">Input matrix <c>[B, L, N]</c> fp32, contiguous.</param>
    /// <param name="cMat">Output matrix <c>[B, L, N]</c> fp32, contiguous.</param>
    /// <param name="dSkip">Skip weights <c>[d_inner]</c>.</param>
    /// <param name="state">SSM state, updated in place.</param>
    /// <param name="projected"><c>in_proj</c>'s output <c>[B, L, 2·d_inner]</c>; the gate is its second half.</param>
    /// <returns><c>[B, L, d_inner]</c> in the compute dtype, ready for <c>out_proj</c>.</returns>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe Tensor ScanGate(Tensor x, Tensor dtProjected, Tensor aT, Tensor bMat, Tensor cMat, Tensor dSkip, Tensor state, Tensor projected)
    {
        int batch = (int)x.shape[0], l = (int)x.shape[1], dInner = (int)x.shape[2], n = (int)aT.shape[0];
        bool half = x.dtype == ScalarType.BFloat16, dHalf = dSkip.dtype == ScalarType.BFloat16;
        var output = torch.empty([batch, l, dInner], dtype: x.dtype);
        nint pX = SelectiveScan.Address(x), pDelta = SelectiveScan.Address(dtProjected), pA = SelectiveScan.Address(aT),
            pBm = SelectiveScan.Address(bMat), pCm = SelectiveScan.Address(cMat), pD = SelectiveScan.Address(dSkip),
            pState = SelectiveScan.Address(state), pProj = SelectiveScan.Address(projected), pOut = SelectiveScan.Address(output);
        int blocksPerRow = dInner / Lanes, blocks = batch * blocksPerRow;
        RunBlocks(blocks, (from, to) =>
        {
            var hBuffer = new Vector512<float>[n];
            Span<float> lanes = stackalloc float[Lanes];
            int dInnerL = dInner, lL = l, nL = n;
            bool halfL = half;
            fixed (Vector512<float>* h = hBuffer)
            {
                for (int block = from; block < to; block++)
                {
                    int b = block / blocksPerRow, c0 = block % blocksPerRow * Lanes;
                    float* stateBase = (float*)pState + ((long)b * dInner + c0) * n;
                    for (int s = 0; s < n; s++)
                    {
                        for (int j = 0; j < Lanes; j++) lanes[j] = stateBase[(long)j * n + s];
                        h[s] = Vector512.Create<float>(lanes);
                    }
                    for (int j = 0; j < Lanes; j++) lanes[j] = BFloat16Bits.Load(pD, c0 + j, dHalf);
                    var skip = Vector512.Create<float>(lanes);
                    float* aBlock = (float*)pA + c0;
                    for (int t = 0; t < lL; t++)
                    {
                        long row = (long)b * lL + t;
                        var dt = FastMath.Softplus(BFloat16Bits.Load16(pDelta, row * dInnerL + c0, halfL));
                        if (halfL) dt = BFloat16Bits.Round16(dt);
                        var xv = BFloat16Bits.Load16(pX, row * dInnerL + c0, halfL);
                        var dx = dt * xv;
                        float* bt = (float*)pBm + row * nL, ct = (float*)pCm + row * nL;
                        var y = Vector512<float>.Zero;
                        for (int s = 0; s < nL; s++)
                        {
                            var hs = Vector512.FusedMultiplyAdd(FastMath.Exp(dt * Vector512.Load(aBlock + (long)s * dInnerL)), h[s], dx * Vector512.Create(bt[s]));
                            h[s] = hs;
                            y = Vector512.FusedMultiplyAdd(hs, Vector512.Create(ct[s]), y);
                        }
                        y = Vector512.FusedMultiplyAdd(skip, xv, y);
                        var g = BFloat16Bits.Load16(pProj, row * 2 * dInnerL + dInnerL + c0, halfL);
                        var gate = g / (Vector512<float>.One + FastMath.Exp(-g));
                        if (halfL) { y = BFloat16Bits.Round16(y); gate = BFloat16Bits.Round16(gate); }
                        BFloat16Bits.Store16(pOut, row * dInnerL + c0, y * gate, halfL);
                    }
                    for (int s = 0; s < n; s++)
                    {
                        h[s].CopyTo(lanes);
                        for (int j = 0; j < Lanes; j++) stateBase[(long)j * n + s] = lanes[j];
                    }
                }
            }
        });
        return output;
    }

    /// <summary>Splits <paramref name="blocks"/> channel blocks into contiguous ranges over <see cref="KernelThreads"/>.</summary>
    private static void RunBlocks(int blocks, Action<int, int> body)
    {
        int parts = Math.Min(KernelThreads.Count, blocks);
        KernelThreads.Run(parts, part => body((int)((long)blocks * part / parts), (int)((long)blocks * (part + 1) / parts)));
    }
}
