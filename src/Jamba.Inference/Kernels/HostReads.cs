using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Kernels;

/// <summary>
/// The one door through which the inference path reads tensor values back to the host (a device→host copy on a GPU, and a
/// synchronisation point: the host waits for every queued kernel). Every such read in Modeling and the engine goes through
/// here and is counted, so a test can show how many a decode step makes: on the device path, one (the step's logits).
/// </summary>
public static class HostReads
{
    private static long _count;

    /// <summary>Reads made so far in this process (all threads).</summary>
    public static long Count => Interlocked.Read(ref _count);

    /// <summary>A contiguous host copy of <paramref name="tensor"/> (the tensor itself, contiguous, when already on the CPU); counted.</summary>
    public static Tensor ToHost(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        Interlocked.Increment(ref _count);
        return tensor.to(DeviceType.CPU).contiguous();
    }

    /// <summary>The single value of <paramref name="tensor"/> on the host; counted.</summary>
    public static T Item<T>(Tensor tensor) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(tensor);
        Interlocked.Increment(ref _count);
        return tensor.item<T>();
    }
}
