using Jamba.Inference.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Jamba.Inference.Modeling;

/// <summary>A linear map <c>y = x Wᵀ (+ b)</c> whose parameters are named <c>weight</c>/<c>bias</c> as in HF's <c>nn.Linear</c>.
/// Parameters are allocated uninitialised: they are filled from a checkpoint or by <see cref="JambaInitializer"/>.</summary>
public sealed class Projection : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // HF parameter names
    /// <summary>The weight, <c>[out_features, in_features]</c>.</summary>
    public readonly Parameter weight;
    /// <summary>The bias, <c>[out_features]</c>, or null.</summary>
    public readonly Parameter? bias;
#pragma warning restore IDE1006

    /// <summary>Creates the projection.</summary>
    public Projection(long inFeatures, long outFeatures, bool hasBias, ModelContext ctx) : this(inFeatures, outFeatures, hasBias, ctx, false)
    {
    }

    /// <summary>Creates the projection; a <paramref name="quantizable"/> one stores its weight as int8 when the context
    /// quantizes every projection (<see cref="WeightQuantization.Int8"/>).</summary>
    internal Projection(long inFeatures, long outFeatures, bool hasBias, ModelContext ctx, bool quantizable) : base(nameof(Projection))
    {
        if (quantizable && ctx.Quantization == WeightQuantization.Int8)
        {
            weight = ctx.NewPlaceholder(outFeatures, inFeatures);
            Quantized = ctx.NewInt8Weight(outFeatures, inFeatures);
        }
        else weight = ctx.NewParameter(outFeatures, inFeatures);
        if (hasBias) bias = ctx.NewParameter(outFeatures);
        RegisterComponents();
    }

    /// <summary>A projection over existing parameters (an expert's slice of its block's stacked weights).</summary>
    internal Projection(Parameter weight) : base(nameof(Projection))
    {
        this.weight = weight;
        RegisterComponents();
    }

    /// <summary>A projection over an int8 weight owned elsewhere (an expert's slice of its block's int8 stacks);
    /// <paramref name="placeholder"/> is its shape-only <c>weight</c>.</summary>
    internal Projection(Parameter placeholder, Int8Weight quantized) : base(nameof(Projection))
    {
        weight = placeholder;
        Quantized = quantized;
        RegisterComponents();
    }

    /// <summary>The int8 weight when this projection is quantized; <see cref="weight"/> is then a shape-only placeholder
    /// (on the <c>meta</c> device: it holds no memory and cannot be computed with).</summary>
    internal Int8Weight? Quantized { get; }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        // Owned storage, or this expert's views of its block's stacks (the block frees the storage).
        if (disposing) Quantized?.Dispose();
        base.Dispose(disposing);
    }

    /// <summary>Output features.</summary>
    public long OutFeatures => weight.shape[0];

    /// <inheritdoc />
    public override Tensor forward(Tensor input) =>
        Quantized is { } q ? Int8Gemv.Linear(input, q, bias) : Linear(input, weight, bias);

    /// <summary><c>input · weightᵀ + bias</c>: decode-sized products on CPU through <see cref="DecodeGemv"/>, the rest through libtorch.</summary>
    internal static Tensor Linear(Tensor input, Tensor weight, Tensor? bias) =>
        DecodeGemv.Applies(input, weight) ? DecodeGemv.Run(input, weight, bias) : nn.functional.linear(input, weight, bias);
}

/// <summary>Device, dtype and gradient flag shared by every module of one model while it is built.</summary>
public sealed class ModelContext
{
    /// <summary>Creates a context.</summary>
    public ModelContext(Device device, ScalarType dtype, bool trainable) : this(device, dtype, trainable, WeightQuantization.None)
    {
    }

    /// <summary>Creates a context whose large projections are stored as <paramref name="quantization"/> says.</summary>
    /// <exception cref="ArgumentException">Quantized weights cannot be trained.</exception>
    public ModelContext(Device device, ScalarType dtype, bool trainable, WeightQuantization quantization)
    {
        if (trainable && quantization != WeightQuantization.None)
            throw new ArgumentException($"Quantization {quantization} cannot be combined with Trainable: int8 weights take no gradients.", nameof(quantization));
        Device = device;
        DType = dtype;
        Trainable = trainable;
        Quantization = quantization;
    }

    /// <summary>How large projections store their weights.</summary>
    public WeightQuantization Quantization { get; }

    /// <summary>A shape-only parameter (on the <c>meta</c> device, no memory) standing for a weight held in int8.</summary>
    internal Parameter NewPlaceholder(params long[] shape)
    {
        using var data = torch.empty(shape, dtype: DType, device: new Device(DeviceType.META));
        Interlocked.Increment(ref _parametersCreated);
        return new Parameter(data, requires_grad: false);
    }

    /// <summary>Uninitialised int8 storage for <paramref name="count"/> stacked <c>[out, in]</c> weights on the model's device.</summary>
    internal Int8Stack NewInt8Stack(long count, long outFeatures, long inFeatures) => new(
        torch.empty([count, outFeatures, inFeatures], dtype: ScalarType.Int8, device: Device),
        torch.empty([count, outFeatures], dtype: ScalarType.Float32, device: Device));

    /// <summary>Uninitialised int8 storage for a <c>[out, in]</c> weight on the model's device.</summary>
    internal Int8Weight NewInt8Weight(long outFeatures, long inFeatures) => Int8Weight.Empty(outFeatures, inFeatures, Device);

    /// <summary>Where parameters live.</summary>
    public Device Device { get; }
    /// <summary>Compute dtype of parameters.</summary>
    public ScalarType DType { get; }
    /// <summary>Whether parameters require gradients.</summary>
    public bool Trainable { get; }

    /// <summary>An uninitialised parameter of <paramref name="shape"/> in the compute dtype.</summary>
    public Parameter NewParameter(params long[] shape) => NewParameter(DType, shape);

    /// <summary>An uninitialised parameter of <paramref name="shape"/> in <paramref name="dtype"/>.</summary>
    public Parameter NewParameter(ScalarType dtype, params long[] shape)
    {
        using var data = torch.empty(shape, dtype: dtype, device: Device);
        Interlocked.Increment(ref _parametersCreated);
        return new Parameter(data, requires_grad: Trainable);
    }

    /// <summary>A parameter over <paramref name="view"/>'s storage (it shares the memory: writes to either are seen by both).</summary>
    internal Parameter ParameterOver(Tensor view)
    {
        Interlocked.Increment(ref _parametersCreated);
        return new Parameter(view, requires_grad: Trainable);
    }

    private static long _parametersCreated;

    /// <summary>Parameters created so far in this process. TorchSharp's <c>Parameter(Tensor)</c> moves the native handle out
    /// of the source tensor without decrementing <c>torch.Tensor.TotalCount</c>, so that counter drifts up by one per
    /// parameter ever created (no memory is held); leak checks subtract this.</summary>
    internal static long ParametersCreated => Interlocked.Read(ref _parametersCreated);
}
