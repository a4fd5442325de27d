using Jamba.Inference.Kernels;
using Jamba.Inference.Caching;
using Jamba.Inference.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Jamba.Inference.Modeling;

/// <summary>The depthwise causal convolution of the Mamba mixer, with HF's parameter names (<c>conv1d.weight</c> <c>[d_inner, 1, d_conv]</c>, <c>conv1d.bias</c>).</summary>
public sealed class DepthwiseConv1d : nn.Module
{
#pragma warning disable IDE1006
    /// <summary>Kernel, <c>[channels, 1, width]</c>.</summary>
    public readonly Parameter weight;
    /// <summary>Bias, <c>[channels]</c>, or null.</summary>
    public readonly Parameter? bias;
#pragma warning restore IDE1006

    /// <summary>Creates the convolution.</summary>
    public DepthwiseConv1d(long channels, long width, bool hasBias, ModelContext ctx) : base(nameof(DepthwiseConv1d))
    {
        weight = ctx.NewParameter(channels, 1, width);
        if (hasBias) bias = ctx.NewParameter(channels);
        RegisterComponents();
    }

    /// <summary>One decode step: the window <c>[B, C, W]</c> against the kernel, <c>[B, C, 1]</c> (cheaper than conv1d for one position).</summary>
    public Tensor Step(Tensor window)
    {
        var y = (window * weight.squeeze(1)).sum(-1, keepdim: true);
        return bias is null ? y : y.Plus(bias.unsqueeze(-1));
    }

    /// <summary>Valid (unpadded) convolution of <c>[B, C, W−1+L]</c> to <c>[B, C, L]</c>.</summary>
    public Tensor Forward(Tensor input) =>
        nn.functional.conv1d(input, weight, bias, stride: 1, padding: 0, dilation: 1, groups: weight.shape[0]);
}

/// <summary>
/// Jamba's Mamba mixer (paper §2, HF <c>JambaMambaMixer</c>): <c>in_proj</c> → (x, gate); depthwise causal
/// <c>conv1d</c> + activation on x; <c>x_proj</c> → (dt, B, C), each through its own RMSNorm
/// (<c>dt_layernorm</c>, <c>b_layernorm</c>, <c>c_layernorm</c>); <c>dt_proj</c> + softplus; the selective scan
/// with <c>A = −exp(A_log)</c> and skip <c>D</c>; gate by <c>act(gate)</c>; <c>out_proj</c>. Padded positions
/// are zeroed before and after the convolution so that left padding leaves the state untouched.
/// </summary>
public sealed class JambaMambaMixer : nn.Module
{
#pragma warning disable IDE1006
    /// <summary>Input projection to x and gate, <c>[2·d_inner, hidden]</c>.</summary>
    public readonly Projection in_proj;
    /// <summary>Depthwise causal convolution.</summary>
    public readonly DepthwiseConv1d conv1d;
    /// <summary>Projection to (dt, B, C), <c>[dt_rank + 2·d_state, d_inner]</c>.</summary>
    public readonly Projection x_proj;
    /// <summary>Step-size projection, <c>[d_inner, dt_rank]</c> with bias.</summary>
    public readonly Projection dt_proj;
    /// <summary>Log of −A, <c>[d_inner, d_state]</c>.</summary>
    public readonly Parameter A_log;
    /// <summary>Skip connection weights, <c>[d_inner]</c>.</summary>
    public readonly Parameter D;
    /// <summary>Output projection, <c>[hidden, d_inner]</c>.</summary>
    public readonly Projection out_proj;
    /// <summary>RMSNorm of dt.</summary>
    public readonly RMSNorm dt_layernorm;
    /// <summary>RMSNorm of B.</summary>
    public readonly RMSNorm b_layernorm;
    /// <summary>RMSNorm of C.</summary>
    public readonly RMSNorm c_layernorm;
#pragma warning restore IDE1006
    private readonly int _layer;
    private readonly int _dInner;
    private readonly int _dState;
    private readonly int _dtRank;
    private readonly int _dConv;
    private readonly string _act;

    /// <summary>Creates the Mamba mixer of decoder layer <paramref name="layer"/>.</summary>
    public JambaMambaMixer(JambaConfig config, int layer, ModelContext ctx) : base(nameof(JambaMambaMixer))
    {
        _layer = layer;
        _dInner = config.MambaDInner;
        _dState = config.MambaDState;
        _dtRank = config.MambaDtRank;
        _dConv = config.MambaDConv;
        _act = config.HiddenAct;
        in_proj = new Projection(config.HiddenSize, 2L * _dInner, config.MambaProjBias, ctx, quantizable: true);
        conv1d = new DepthwiseConv1d(_dInner, _dConv, config.MambaConvBias, ctx);
        x_proj = new Projection(_dInner, _dtRank + 2L * _dState, false, ctx, quantizable: true);
        dt_proj = new Projection(_dtRank, _dInner, true, ctx);
        A_log = ctx.NewParameter(_dInner, _dState);
        D = ctx.NewParameter(_dInner);
        out_proj = new Projection(_dInner, config.HiddenSize, config.MambaProjBias, ctx, quantizable: true);
        dt_layernorm = new RMSNorm(_dtRank, config.RmsNormEps, ctx);
        b_layernorm = new RMSNorm(_dState, config.RmsNormEps, ctx);
        c_layernorm = new RMSNorm(_dState, config.RmsNormEps, ctx);
        RegisterComponents();
    }

    private Tensor? _stateMatrix;
    private Tensor? _stateMatrixT;

    /// <summary><c>[B, C, L]</c> → <c>[B, L, C]</c> with plain row-major strides. A transposed view, even one that
    /// <c>is_contiguous()</c> accepts because the moved dimension has size 1, sends libtorch's bf16 GEMM down a slow
    /// path (7 ms instead of 0.5 ms for out_proj at decode).</summary>
    private static Tensor ChannelsLast(Tensor t) =>
        t.shape[2] == 1 ? t.reshape(t.shape[0], 1, t.shape[1]) : t.transpose(1, 2).contiguous();

    /// <summary><c>A = −exp(A_log)</c> in fp32: computed once for inference (weights are fixed), every call when training.</summary>
    private Tensor StateMatrix()
    {
        if (A_log.requires_grad) return -torch.exp(A_log.to(ScalarType.Float32));
        if (_stateMatrix is null)
            using (torch.no_grad())
                _stateMatrix = (-torch.exp(A_log.to(ScalarType.Float32))).DetachFromDisposeScope();
        return _stateMatrix.alias();
    }

    /// <summary><c>Aᵀ</c> <c>[d_state, d_inner]</c> fp32 contiguous for the prefill kernel: computed once for inference, every call
    /// when training (a trainable model can run the kernels under <c>no_grad</c> between optimizer steps).</summary>
    private Tensor StateMatrixTransposed()
    {
        if (A_log.requires_grad)
            using (torch.no_grad())
            {
                using var fresh = StateMatrix();
                return fresh.t().contiguous();
            }
        if (_stateMatrixT is null)
            using (torch.no_grad())
            {
                using var a = StateMatrix();
                _stateMatrixT = a.t().contiguous().DetachFromDisposeScope();
            }
        return _stateMatrixT.alias();
    }

    /// <summary>Many positions on CPU, channels-last throughout: libtorch GEMMs for the projections, the prefill kernels
    /// for the conv and the scan + gate.</summary>
    private Tensor PrefillStep(Tensor hidden, Tensor? positionMask, IHybridCacheView? cache, Tensor window, Tensor state)
    {
        var projected = in_proj.forward(hidden).contiguous();                   // [B, L, 2·d_inner]: x | gate
        var x = MambaPrefillKernel.ConvSilu(projected, window, conv1d.weight, conv1d.bias, positionMask); // [B, L, d_inner]
        var ssmParams = x_proj.forward(x);                                       // [B, L, dt_rank + 2·d_state]
        var dt = dt_layernorm.forward(ssmParams.narrow(2, 0, _dtRank));
        var bMat = b_layernorm.forward(ssmParams.narrow(2, _dtRank, _dState)).to(ScalarType.Float32).contiguous();
        var cMat = c_layernorm.forward(ssmParams.narrow(2, _dtRank + _dState, _dState)).to(ScalarType.Float32).contiguous();
        var dtProjected = dt_proj.forward(dt).contiguous();                     // [B, L, d_inner], softplus in the kernel
        var y = MambaPrefillKernel.ScanGate(x, dtProjected, StateMatrixTransposed(), bMat, cMat, D, state, projected);
        cache?.CommitMamba(_layer, window, state);
        return out_proj.forward(y);
    }

    /// <summary>Recomputes values derived from the weights (called after the weights changed, e.g. by the loader).</summary>
    internal void RefreshDerived()
    {
        _stateMatrix?.Dispose();
        _stateMatrix = null;
        _stateMatrixT?.Dispose();
        _stateMatrixT = null;
        if (!A_log.requires_grad)
        {
            StateMatrix().Dispose();
            StateMatrixTransposed().Dispose();
        }
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _stateMatrix?.Dispose();
            _stateMatrix = null;
            _stateMatrixT?.Dispose();
            _stateMatrixT = null;
        }
        base.Dispose(disposing);
    }

    /// <summary>One decode position on CPU: libtorch GEMVs for the projections, the fused kernels for everything between.</summary>
    private Tensor DecodeStep(Tensor hidden, IHybridCacheView cache, Tensor convState, Tensor ssmState)
    {
        long b = hidden.shape[0];
        var projected = in_proj.forward(hidden).reshape(b, 2L * _dInner).contiguous();         // [B, 2·d_inner]: x | gate
        var x = MambaDecodeKernel.ConvStep(projected, convState, conv1d.weight, conv1d.bias);  // [B, d_inner]
        var ssmParams = x_proj.forward(x.view(b, 1, _dInner)).reshape(b, _dtRank + 2L * _dState).contiguous();
        var y = MambaDecodeKernel.SsmStep(ssmParams, x, projected, ssmState, (dt_layernorm.weight, dt_layernorm.Epsilon), (b_layernorm.weight, b_layernorm.Epsilon), (c_layernorm.weight, c_layernorm.Epsilon),
            dt_proj.weight, dt_proj.bias!, StateMatrix(), D);
        cache.CommitMamba(_layer, convState, ssmState);
        return out_proj.forward(y.view(b, 1, _dInner));
    }

    /// <summary>Mixes the <c>L</c> new positions of <paramref name="hidden"/> (<c>[B, L, hidden]</c>).</summary>
    /// <param name="hidden">Normalised input.</param>
    /// <param name="positionMask">1/0 mask of the new positions, <c>[B, L]</c> in the compute dtype, or null when nothing is padded.</param>
    /// <param name="cache">Holds the conv window and SSM state to continue from and updates them; null starts from zeros.</param>
    public Tensor Forward(Tensor hidden, Tensor? positionMask, IHybridCacheView? cache)
    {
        using var scope = NewDisposeScope();
        long b = hidden.shape[0], l = hidden.shape[1];
        var dtype = hidden.dtype;
        // The conv window and SSM state to continue from (copies for a ragged batch: taken once, written back at the end).
        var (window, state) = cache is not null
            ? cache.MambaStates(_layer)
            : (torch.zeros([b, _dInner, _dConv - 1], dtype: dtype, device: hidden.device), torch.zeros([b, _dInner, _dState], dtype: ScalarType.Float32, device: hidden.device));
        if (l == 1 && positionMask is null && cache is not null && !A_log.requires_grad && DecodeKernels.Enabled
            && MambaDecodeKernel.Supports(hidden, _act, window, state))
            return DecodeStep(hidden, cache, window, state).MoveToOuterDisposeScope();
        bool needsGrad = torch.is_grad_enabled() && (hidden.requires_grad || A_log.requires_grad || in_proj.weight.requires_grad);
        if (!needsGrad && MambaPrefillKernel.Supports(hidden, _act, _dInner, _dConv, window, state))
            return PrefillStep(hidden, positionMask, cache, window, state).MoveToOuterDisposeScope();
        var projected = in_proj.forward(hidden).transpose(1, 2);                 // [B, 2·d_inner, L]
        var x = projected.narrow(1, 0, _dInner);
        var gate = projected.narrow(1, _dInner, _dInner);
        Tensor? mask = positionMask?.unsqueeze(1);                               // [B, 1, L]
        if (mask is not null) x = x * mask;

        // Causal conv over [previous d_conv−1 inputs | new inputs]; the window carries over between calls,
        // so a prompt fed in chunks of any size gives the same result as one forward.
        var full = torch.cat([window.to(dtype), x], dim: 2);                    // [B, d_inner, d_conv−1+L]
        if (cache is not null) window.copy_(full.narrow(2, full.shape[2] - (_dConv - 1), _dConv - 1));
        x = Activations.Apply(_act, l == 1 ? conv1d.Step(full) : conv1d.Forward(full)); // [B, d_inner, L]
        if (mask is not null) x = x * mask;

        var ssmParams = x_proj.forward(ChannelsLast(x));                         // [B, L, dt_rank + 2·d_state]
        var dt = dt_layernorm.forward(ssmParams.narrow(2, 0, _dtRank));
        var bMat = b_layernorm.forward(ssmParams.narrow(2, _dtRank, _dState));
        var cMat = c_layernorm.forward(ssmParams.narrow(2, _dtRank + _dState, _dState));
        var delta = TorchScalars.Softplus(dt_proj.forward(dt)).transpose(1, 2); // [B, d_inner, L]
        var a = StateMatrix();

        var y = SelectiveScan.Run(x, delta, a, bMat, cMat, D, state).to(dtype);  // [B, d_inner, L]
        cache?.CommitMamba(_layer, window, state);
        y = y * Activations.Apply(_act, gate);
        var output = out_proj.forward(ChannelsLast(y));
        return output.MoveToOuterDisposeScope();
    }
}
