using Jamba.Inference.Kernels;
using Jamba.Inference.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Jamba.Inference.Modeling;

/// <summary>
/// Top-k mixture of experts (paper §2, HF <c>JambaSparseMoeBlock</c>): the <c>router</c> scores every expert,
/// a softmax in fp32 over all experts gives probabilities, the top <c>k</c> are kept <b>without
/// renormalisation</b>, and each token's output is <c>Σ p_k · expert_k(x)</c>. Tokens are gathered per expert
/// so that every chosen expert runs once on its tokens and unchosen experts are never read.
/// </summary>
public sealed class JambaSparseMoeBlock : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    /// <summary>Router <c>[num_experts, hidden]</c>, no bias.</summary>
    public readonly Projection router;
    /// <summary>The experts, <c>experts.{e}.{gate,up,down}_proj</c>.</summary>
    public readonly ModuleList<JambaMlp> experts;
#pragma warning restore IDE1006
    private readonly int _topK;

    /// <summary>Creates the block. For inference the experts' weights are slices of three stacked tensors
    /// (<c>[E, intermediate, hidden]</c> gate and up, <c>[E, hidden, intermediate]</c> down) — the same memory, no copy — so
    /// that the device path can gather the chosen experts on the device.</summary>
    public JambaSparseMoeBlock(JambaConfig config, ModelContext ctx) : base(nameof(JambaSparseMoeBlock))
    {
        router = new Projection(config.HiddenSize, config.NumExperts, false, ctx);
        _topK = config.NumExpertsPerTok;
        if (ctx.Trainable)
        {
            experts = new ModuleList<JambaMlp>(Enumerable.Range(0, config.NumExperts).Select(_ => new JambaMlp(config, ctx)).ToArray());
        }
        else if (ctx.Quantization != WeightQuantization.None)
        {
            // int8 experts: three int8 stacks with their per-row scales; each expert's projections slice them and carry
            // shape-only placeholders as their weight parameters.
            long e = config.NumExperts, hidden = config.HiddenSize, inter = config.IntermediateSize;
            _quantized = new QuantizedStacks(ctx.NewInt8Stack(e, inter, hidden), ctx.NewInt8Stack(e, inter, hidden), ctx.NewInt8Stack(e, hidden, inter));
            experts = new ModuleList<JambaMlp>(Enumerable.Range(0, config.NumExperts).Select(i => new JambaMlp(config,
                new Projection(ctx.NewPlaceholder(inter, hidden), _quantized.Gate.Slice(i)),
                new Projection(ctx.NewPlaceholder(inter, hidden), _quantized.Up.Slice(i)),
                new Projection(ctx.NewPlaceholder(hidden, inter), _quantized.Down.Slice(i)))).ToArray());
        }
        else
        {
            long e = config.NumExperts, hidden = config.HiddenSize, inter = config.IntermediateSize;
            _stacks = new Stacks(
                torch.empty([e, inter, hidden], dtype: ctx.DType, device: ctx.Device),
                torch.empty([e, inter, hidden], dtype: ctx.DType, device: ctx.Device),
                torch.empty([e, hidden, inter], dtype: ctx.DType, device: ctx.Device));
            experts = new ModuleList<JambaMlp>(Enumerable.Range(0, config.NumExperts).Select(i => new JambaMlp(config,
                ctx.ParameterOver(_stacks.Gate[i]), ctx.ParameterOver(_stacks.Up[i]), ctx.ParameterOver(_stacks.Down[i]))).ToArray());
        }
        _act = config.HiddenAct;
        RegisterComponents();
    }

    /// <summary>The stacked expert weights the experts' parameters are slices of (null when training). An array-free holder,
    /// not tensor fields, so that module registration does not see them as buffers.</summary>
    private sealed record Stacks(Tensor Gate, Tensor Up, Tensor Down) : IDisposable
    {
        public void Dispose()
        {
            Gate.Dispose();
            Up.Dispose();
            Down.Dispose();
        }
    }

    private readonly Stacks? _stacks;

    /// <summary>int8 expert weights: <c>[E, out, in]</c> data and <c>[E, out]</c> scales per projection kind.</summary>
    private sealed record QuantizedStacks(Int8Stack Gate, Int8Stack Up, Int8Stack Down) : IDisposable
    {
        public void Dispose()
        {
            Gate.Dispose();
            Up.Dispose();
            Down.Dispose();
        }
    }

    private readonly QuantizedStacks? _quantized;
    private readonly string _act;

    /// <summary>On the device path, at most this many tokens are routed on the device (decode batches); longer inputs
    /// (prefill chunks) read the routing table once and run each chosen expert on its tokens.</summary>
    internal const int DeviceRoutingMaxTokens = 64;

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _stacks?.Dispose();
            _quantized?.Dispose();
        }
        base.Dispose(disposing);
    }

    /// <summary>Training hook: receives the router probabilities <c>[T, E]</c> and choices <c>[T, k]</c> for the load-balancing loss.</summary>
    internal Action<Tensor, Tensor>? AuxLossSink { get; set; }

    /// <summary>Optional observer of the routing decision: top-k expert ids and weights per token, <c>[T, k]</c>.</summary>
    internal Action<Tensor, Tensor>? RouterObserver { get; set; }

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var shape = input.shape;
        long hiddenSize = shape[^1];
        var x = input.reshape(-1, hiddenSize);                                   // [T, hidden]
        var probs = nn.functional.softmax(router.forward(x), dim: 1, dtype: ScalarType.Float32);
        var (weights, selected) = torch.topk(probs, _topK, dim: -1);            // [T, k], descending
        RouterObserver?.Invoke(selected, weights);
        AuxLossSink?.Invoke(probs, selected);
        weights = weights.to(input.dtype);
        long tokens = x.shape[0];
        if ((_stacks is not null || _quantized is not null) && !x.requires_grad && (!CpuKernels.Enabled || x.device_type != DeviceType.CPU) && tokens <= DeviceRoutingMaxTokens)
        {
            // The device path: no host read. A few tokens gather their chosen experts' weights (3·T·k expert-sized reads
            // and writes); more tokens run every expert on all of them with zero weight where unchosen (E reads).
            var routed = 3 * tokens * _topK < experts.Count ? Gathered(x, selected, weights) : Dense(x, selected, weights);
            return routed.view(shape).MoveToOuterDisposeScope();
        }

        // One host read of the (small) routing table, then one expert call per chosen expert.
        long[] chosen;
        using (var table = HostReads.ToHost(selected)) chosen = table.data<long>().ToArray();
        if (x.shape[0] == 1)
        {
            // One token (batch-1 decode): Σ_k w_k · expert_k(x) directly, in the same order and rounding as the gather path.
            Tensor? sum = null;
            for (int k = 0; k < chosen.Length; k++)
            {
                var y = experts[(int)chosen[k]].forward(x) * weights.narrow(1, k, 1);
                sum = sum is null ? y : sum.Plus(y);
            }
            return sum!.view(shape).MoveToOuterDisposeScope();
        }
        var rowsPerExpert = new List<long>?[experts.Count];
        for (long i = 0; i < chosen.Length; i++)
            (rowsPerExpert[chosen[i]] ??= []).Add(i);
        var output = torch.zeros_like(x);
        var flatWeights = weights.reshape(-1);
        using var topK = _topK.ToScalar();
        for (int e = 0; e < rowsPerExpert.Length; e++)
        {
            if (rowsPerExpert[e] is not { } rows) continue;
            var flatIdx = torch.tensor(rows.ToArray(), device: input.device);  // index into [T·k]
            var tokenIdx = flatIdx.div(topK, rounding_mode: RoundingMode.floor);
            var y = experts[e].forward(x.index_select(0, tokenIdx)) * flatWeights.index_select(0, flatIdx).unsqueeze(1);
            output.index_add_(0, tokenIdx, y, TorchScalars.One);
        }
        return output.view(shape).MoveToOuterDisposeScope();
    }

    /// <summary><c>Σ_k w_k · expert_k(x)</c> with the chosen experts' weights gathered from the stacks on the device.</summary>
    private Tensor Gathered(Tensor x, Tensor selected, Tensor weights)
    {
        long tokens = x.shape[0], hidden = x.shape[1];
        var index = selected.reshape(-1);                                       // [T·k]
        var rows = x.unsqueeze(1).expand(tokens, _topK, hidden).reshape(tokens * _topK, 1, hidden);
        var gate = torch.bmm(rows, Chosen(_stacks?.Gate, _quantized?.Gate, index, x.dtype).transpose(1, 2)); // [T·k, 1, I]
        var up = torch.bmm(rows, Chosen(_stacks?.Up, _quantized?.Up, index, x.dtype).transpose(1, 2));
        var h = Activations.Apply(_act, gate) * up;
        var y = torch.bmm(h, Chosen(_stacks?.Down, _quantized?.Down, index, x.dtype).transpose(1, 2)).view(tokens, _topK, hidden);
        return (y * weights.unsqueeze(-1)).sum(1);
    }

    /// <summary>The chosen experts' weights <c>[T·k, out, in]</c> in <paramref name="dtype"/>: gathered from the float stack, or
    /// gathered from the int8 stack and dequantized on the device.</summary>
    private static Tensor Chosen(Tensor? stack, Int8Stack? quantized, Tensor index, ScalarType dtype) =>
        stack is not null
            ? stack.index_select(0, index)
            : (quantized!.Data.index_select(0, index).to(ScalarType.Float32) * quantized.Scale.index_select(0, index).unsqueeze(-1)).to(dtype);

    /// <summary><c>Σ_e w_e · expert_e(x)</c> over every expert, <c>w_e</c> zero where the expert was not chosen.</summary>
    private Tensor Dense(Tensor x, Tensor selected, Tensor weights)
    {
        var full = torch.zeros([x.shape[0], experts.Count], dtype: weights.dtype, device: x.device).scatter_(1, selected, weights); // [T, E]
        Tensor? sum = null;
        for (int e = 0; e < experts.Count; e++)
        {
            var y = experts[e].forward(x) * full.narrow(1, e, 1);
            sum = sum is null ? y : sum.Plus(y);
        }
        return sum!;
    }
}
