using Jamba.Inference.Kernels;
using Jamba.Inference.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Jamba.Inference.Modeling;

/// <summary>The SwiGLU feed-forward (HF <c>JambaMLP</c>): <c>down_proj(act(gate_proj(x)) ⊙ up_proj(x))</c>. Used as a
/// dense layer and as each expert of a <see cref="JambaSparseMoeBlock"/>.</summary>
public sealed class JambaMlp : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    /// <summary>Gate projection <c>[intermediate, hidden]</c>.</summary>
    public readonly Projection gate_proj;
    /// <summary>Up projection <c>[intermediate, hidden]</c>.</summary>
    public readonly Projection up_proj;
    /// <summary>Down projection <c>[hidden, intermediate]</c>.</summary>
    public readonly Projection down_proj;
#pragma warning restore IDE1006
    private readonly string _act;

    /// <summary>Creates the MLP.</summary>
    public JambaMlp(JambaConfig config, ModelContext ctx) : base(nameof(JambaMlp))
    {
        gate_proj = new Projection(config.HiddenSize, config.IntermediateSize, false, ctx, quantizable: true);
        up_proj = new Projection(config.HiddenSize, config.IntermediateSize, false, ctx, quantizable: true);
        down_proj = new Projection(config.IntermediateSize, config.HiddenSize, false, ctx, quantizable: true);
        _act = config.HiddenAct;
        RegisterComponents();
    }

    /// <summary>Creates an expert whose projections are the given parameters (slices of a block's stacked expert weights).</summary>
    internal JambaMlp(JambaConfig config, Parameter gate, Parameter up, Parameter down) : base(nameof(JambaMlp))
    {
        gate_proj = new Projection(gate);
        up_proj = new Projection(up);
        down_proj = new Projection(down);
        _act = config.HiddenAct;
        RegisterComponents();
    }

    /// <summary>Creates an expert over the given projections (int8 slices of a block's stacked expert weights).</summary>
    internal JambaMlp(JambaConfig config, Projection gate, Projection up, Projection down) : base(nameof(JambaMlp))
    {
        gate_proj = gate;
        up_proj = up;
        down_proj = down;
        _act = config.HiddenAct;
        RegisterComponents();
    }

    /// <summary>The activation's name (HF <c>hidden_act</c>).</summary>
    internal string Activation => _act;

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        if (_act is "silu" or "swish" && DecodeKernels.Enabled && DecodeGemv.Applies(input, gate_proj.weight) && DecodeGemv.Applies(input, up_proj.weight))
            return down_proj.forward(DecodeGemv.RunGated(input, gate_proj.weight, up_proj.weight)).MoveToOuterDisposeScope();
        var gate = gate_proj.forward(input);
        var up = up_proj.forward(input);
        var h = _act is "silu" or "swish" && SiluProduct.Applies(gate, up) ? SiluProduct.Run(gate, up) : Activations.Apply(_act, gate) * up;
        return down_proj.forward(h).MoveToOuterDisposeScope();
    }
}
