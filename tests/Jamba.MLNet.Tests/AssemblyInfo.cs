using Xunit;

// Tests share one process-wide model registry and measure nothing in parallel: TorchSharp's intra-op threads use every core.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
