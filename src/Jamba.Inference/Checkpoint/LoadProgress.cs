namespace Jamba.Inference;

/// <summary>Progress of a weight load (reported by the checkpoint reader, tensor by tensor). In the root namespace so that
/// every room and every caller sees it without a using.</summary>
/// <param name="BytesLoaded">Tensor bytes copied so far.</param>
/// <param name="TotalBytes">Tensor bytes to copy.</param>
/// <param name="TensorsLoaded">Tensors copied so far.</param>
/// <param name="TotalTensors">Tensors to copy.</param>
/// <param name="CurrentTensor">The tensor just copied.</param>
public readonly record struct LoadProgress(long BytesLoaded, long TotalBytes, int TensorsLoaded, int TotalTensors, string CurrentTensor)
{
    /// <summary>Fraction done, 0..1.</summary>
    public double Fraction => TotalBytes == 0 ? 1 : (double)BytesLoaded / TotalBytes;
}
