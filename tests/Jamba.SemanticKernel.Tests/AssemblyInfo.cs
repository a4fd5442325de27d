using Xunit;

// The tiny model's engine already uses every core, and several tests count registry loads.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
