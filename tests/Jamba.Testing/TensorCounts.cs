using Jamba.Inference.Modeling;
using TorchSharp;

namespace Jamba.Testing;

/// <summary>Process-wide tensor counts for leak checks (tests that use them must not run in parallel).</summary>
public static class TensorCounts
{
    /// <summary>Live tensors, corrected for TorchSharp's Parameter accounting (see ModelContext.ParametersCreated).</summary>
    /// <remarks>Garbage from earlier tests is finalized first, so that only reachable tensors are counted.</remarks>
    public static long Live()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        return torch.Tensor.TotalCount - ModelContext.ParametersCreated;
    }
}
