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

    /// <summary>Creates the block.</summary>
    public JambaSparseMoeBlock(JambaConfig config, ModelContext ctx) : base(nameof(JambaSparseMoeBlock))
    {
        router = new Projection(config.HiddenSize, config.NumExperts, false, ctx);
        experts = new ModuleList<JambaMlp>(Enumerable.Range(0, config.NumExperts).Select(_ => new JambaMlp(config, ctx)).ToArray());
        _topK = config.NumExpertsPerTok;
        RegisterComponents();
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

        // One host read of the (small) routing table, then one expert call per chosen expert.
        long[] chosen = selected.to(DeviceType.CPU).data<long>().ToArray();
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
}
