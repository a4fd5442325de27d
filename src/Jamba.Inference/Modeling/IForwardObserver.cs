using static TorchSharp.torch;

namespace Jamba.Inference.Modeling;

/// <summary>
/// Sees intermediate values of a forward pass (for tests, interpretability and debugging). The tensors are
/// valid only during the call: copy what you keep.
/// </summary>
public interface IForwardObserver
{
    /// <summary>The embedding output (before layer 0), <c>[B, L, hidden]</c>.</summary>
    void OnEmbeddings(Tensor hidden) { }

    /// <summary>Decoder layer <paramref name="layer"/>'s raw output (residual stream), <c>[B, L, hidden]</c>.</summary>
    void OnLayerOutput(int layer, Tensor hidden) { }

    /// <summary>The routing of MoE layer <paramref name="layer"/>: top-k expert ids and their (not renormalised)
    /// probabilities, both <c>[B·L, k]</c> in descending probability.</summary>
    void OnRouter(int layer, Tensor experts, Tensor weights) { }
}
