using Xunit;

// The servers share the process-wide model registry and TorchSharp's intra-op threads already use every core.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
