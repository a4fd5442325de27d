using Xunit;

// Commands share the process-wide model registry, console and environment variables; TorchSharp's intra-op
// threads already use every core.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
