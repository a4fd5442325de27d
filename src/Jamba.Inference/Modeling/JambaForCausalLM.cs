using Jamba.Inference.Kernels;
using Jamba.Inference.Caching;
using Jamba.Inference.Checkpoint;
using Jamba.Inference.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Modeling;

/// <summary>Which positions get logits.</summary>
public enum LogitPositions
{
    /// <summary>Only the last position of each row (what sampling needs).</summary>
    Last,
    /// <summary>Every position.</summary>
    All,
}

/// <summary>
/// Jamba with its language-model head (HF <c>JambaForCausalLM</c>): the <see cref="JambaModel"/> stack and
/// <c>lm_head</c> (or the embedding matrix when <c>tie_word_embeddings</c>). A pure function of its inputs and
/// an explicit <see cref="HybridCache"/>: no hidden state, no threads.
/// </summary>
public sealed class JambaForCausalLM : nn.Module
{
#pragma warning disable IDE1006
    /// <summary>The decoder stack.</summary>
    public readonly JambaModel model;
    /// <summary>The LM head <c>[vocab, hidden]</c>; null when tied to the embedding.</summary>
    public readonly Projection? lm_head;
#pragma warning restore IDE1006

    /// <summary>Creates the model with uninitialised parameters on the options' device and dtype.</summary>
    /// <exception cref="JambaNativeLibraryException">TorchSharp's native runtime cannot be loaded (no backend package).</exception>
    public JambaForCausalLM(JambaConfig config, ModelOptions? options = null) : base(RuntimeChecked(nameof(JambaForCausalLM)))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        options ??= new ModelOptions();
        Config = config;
        DType = options.ResolveScalarType();
        Device = options.TorchDevice;
        Trainable = options.Trainable;
        CpuKernels = options.CpuKernels;
        Quantization = options.Quantization;
        var ctx = new ModelContext(Device, DType, options.Trainable, options.Quantization);
        using (torch.no_grad())
        {
            model = new JambaModel(config, ctx);
            if (!config.TieWordEmbeddings) lm_head = new Projection(config.HiddenSize, config.VocabSize, false, ctx, quantizable: true);
        }
        RegisterComponents();
    }

    /// <summary>The architecture.</summary>
    public JambaConfig Config { get; }
    /// <summary>Compute dtype.</summary>
    public ScalarType DType { get; }
    /// <summary>Device.</summary>
    public Device Device { get; }
    /// <summary>Whether parameters take gradients (training); inference forwards otherwise run without autograd.</summary>
    public bool Trainable { get; }
    /// <summary>How the large projections store their weights (<see cref="ModelOptions.Quantization"/>).</summary>
    public WeightQuantization Quantization { get; }
    /// <summary>This model's CPU-kernel setting (<see cref="ModelOptions.CpuKernels"/>): null follows the process switch.</summary>
    public bool? CpuKernels { get; }

    /// <summary>Checks the native runtime before the base constructor makes the first native call.</summary>
    private static string RuntimeChecked(string name)
    {
        Native.TorchRuntime.EnsureAvailable();
        return name;
    }

    /// <summary>Loads <c>config.json</c> and the safetensors weights of a Hugging Face checkpoint folder.</summary>
    /// <exception cref="JambaConfigException">The configuration is invalid.</exception>
    /// <exception cref="JambaCheckpointException">A file or tensor is malformed, missing, unexpected or mis-shaped.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; everything allocated so far is freed.</exception>
    public static JambaForCausalLM FromPretrained(string folder, ModelOptions? options = null,
        IProgress<LoadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var config = JambaConfig.Load(folder);
        using var checkpoint = SafetensorsCheckpoint.Open(folder);
        CheckpointConfigCheck.Check(config, checkpoint, options); // before allocating anything: sizes must match the tensors
        var lm = new JambaForCausalLM(config, options);
        try
        {
            WeightLoader.Load(lm, checkpoint, progress, cancellationToken);
            return lm;
        }
        catch
        {
            lm.Dispose();
            throw;
        }
    }

    /// <summary>Runs the model on <c>L</c> new positions and returns fp32 logits <c>[B, P, vocab]</c> for the
    /// positions asked for (<c>P = 1</c> for <see cref="LogitPositions.Last"/>, <c>L</c> for <see cref="LogitPositions.All"/>).</summary>
    /// <param name="inputIds">Token ids <c>[B, L]</c> (int64).</param>
    /// <param name="attentionMask">1/0 mask over all positions so far <c>[B, past+L]</c> (left padding); null if none is padded.</param>
    /// <param name="cache">The rows' cache (continued and updated): a <see cref="HybridCache"/> for rows that advance together,
    /// a <see cref="CacheBatch"/> for independent sequences at different lengths; null for a stateless forward.</param>
    /// <param name="positions">Which positions get logits; the LM head runs only on those.</param>
    /// <param name="observer">Optional observer of intermediate values.</param>
    public Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, IHybridCacheView? cache = null,
        LogitPositions positions = LogitPositions.Last, IForwardObserver? observer = null)
    {
        ArgumentNullException.ThrowIfNull(inputIds);
        if (inputIds.dim() != 2) throw new ArgumentException($"inputIds must be [batch, length], found {inputIds.dim()} dimensions.", nameof(inputIds));
        using var kernels = Kernels.CpuKernels.Use(CpuKernels);
        using var scope = NewDisposeScope();
        using var noGrad = Trainable ? null : torch.no_grad();
        var hidden = model.Forward(inputIds.to(Device), attentionMask?.to(Device), cache, observer);
        if (positions == LogitPositions.Last)
        {
            // A fresh row-major copy: the narrowed view keeps the prompt's strides, which send libtorch's bf16 GEMM down a slow path.
            var last = hidden.narrow(1, hidden.shape[1] - 1, 1);
            hidden = torch.empty(last.shape, dtype: last.dtype, device: last.device).copy_(last);
        }
        var logits = lm_head is not null ? lm_head.forward(hidden)
            : _tiedHead is { } head ? Int8Gemv.Linear(hidden, head, null)
            : Projection.Linear(hidden, model.embed_tokens.weight, null);
        return logits.to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>Creates an empty cache for <paramref name="batchSize"/> sequences on this model's device and dtype.</summary>
    public HybridCache CreateCache(int batchSize, int initialCapacity = 0) => new(Config, batchSize, DType, Device, initialCapacity);

    /// <summary>Total parameters (a tied embedding counted once).</summary>
    public long ParameterCount => parameters().Sum(p => p.numel());

    /// <summary>Parameters used per token: all but the unchosen experts of each MoE layer.</summary>
    public long ActiveParameterCount
    {
        get
        {
            long perExpert = 3L * Config.HiddenSize * Config.IntermediateSize;
            long inactive = Enumerable.Range(0, Config.NumHiddenLayers)
                .Where(Config.IsMoeLayer)
                .Sum(_ => (long)(Config.NumExperts - Config.NumExpertsPerTok) * perExpert);
            return ParameterCount - inactive;
        }
    }

    /// <summary>With <see cref="WeightQuantization.Int8"/> and a tied embedding: an int8 copy of the embedding for the LM
    /// head (the table stays in the compute dtype for the lookups, which read one row per token; the head reads all of it
    /// every step, the largest single matrix of a small Jamba).</summary>
    private Int8Weight? _tiedHead;

    /// <summary>Makes the int8 LM head of a tied embedding once the weights are in (no-op otherwise).</summary>
    internal void RefreshQuantizedHead()
    {
        if (Quantization != WeightQuantization.Int8 || lm_head is not null) return;
        var table = model.embed_tokens.weight;
        var head = Int8Weight.Empty(table.shape[0], table.shape[1], Device);
        using (torch.no_grad()) Int8Weight.Quantize(table, head.Data, head.Scale);
        _tiedHead?.Dispose();
        _tiedHead = head;
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _tiedHead?.Dispose();
            _tiedHead = null;
        }
        base.Dispose(disposing);
    }

    /// <summary>Bytes the weights hold: parameters in the compute dtype, int8 projections as their int8 data and fp32 scales
    /// (and the int8 copy of a tied embedding that serves as the LM head with <see cref="WeightQuantization.Int8"/>).</summary>
    public long WeightBytes
    {
        get
        {
            long bytes = parameters().Where(p => p.device_type != DeviceType.META).Sum(p => p.numel() * p.element_size());
            return bytes + QuantizedProjections().Sum(q => q.Quantized!.Bytes) + (_tiedHead?.Bytes ?? 0);
        }
    }

    /// <summary>Weight bytes one decoded token reads at batch 1: <see cref="WeightBytes"/> less the unchosen experts of each
    /// MoE layer and, for an untied embedding, all of the embedding table but one row. It bounds decode speed by memory bandwidth.</summary>
    public long WeightBytesReadPerToken
    {
        get
        {
            long total = WeightBytes;
            foreach (var layer in model.layers)
                if (layer.feed_forward is JambaSparseMoeBlock moe && moe.experts.Count > 0)
                {
                    long perExpert = ExpertBytes(moe.experts[0]);
                    total -= (long)(moe.experts.Count - Config.NumExpertsPerTok) * perExpert;
                }
            if (!Config.TieWordEmbeddings || _tiedHead is not null)
            {
                // The table is read one row per token (the head is another matrix: lm_head, or the tied table's int8 copy).
                var e = model.embed_tokens.weight;
                total -= (e.shape[0] - 1) * e.shape[1] * e.element_size();
            }
            return total;
        }
    }

    private static long ExpertBytes(JambaMlp expert) =>
        new[] { expert.gate_proj, expert.up_proj, expert.down_proj }.Sum(p => p.Quantized?.Bytes ?? p.weight.numel() * p.weight.element_size());

    private IEnumerable<Projection> QuantizedProjections() => modules().OfType<Projection>().Where(p => p.Quantized is not null);
}
