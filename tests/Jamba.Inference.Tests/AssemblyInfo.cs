using Xunit;

// Tests compare the process-wide live tensor count (torch.Tensor.TotalCount) and measure nothing in
// parallel: TorchSharp's intra-op threads already use every core.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
