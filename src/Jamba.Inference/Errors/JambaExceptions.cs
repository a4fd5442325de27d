namespace Jamba.Inference;

/// <summary>A <c>config.json</c> value is missing, of the wrong type, or breaks a rule of the architecture.</summary>
public sealed class JambaConfigException : Exception
{
    /// <summary>Creates the exception for <paramref name="field"/>.</summary>
    public JambaConfigException(string? source, string field, string message, Exception? inner = null)
        : base($"{(source is null ? "config" : source)}: field '{field}': {message}", inner)
    {
        Source = source;
        Field = field;
    }

    /// <summary>The file the configuration came from, when known.</summary>
    public new string? Source { get; }

    /// <summary>The configuration field that is wrong (HF name, e.g. <c>attn_layer_offset</c>).</summary>
    public string Field { get; }
}

/// <summary>A checkpoint file or tensor is malformed, missing, unexpected or of the wrong shape.</summary>
public sealed class JambaCheckpointException : Exception
{
    /// <summary>Creates the exception for <paramref name="file"/> and, when relevant, <paramref name="tensor"/>.</summary>
    public JambaCheckpointException(string file, string? tensor, string message, Exception? inner = null)
        : base(tensor is null ? $"{file}: {message}" : $"{file}: tensor '{tensor}': {message}", inner)
    {
        File = file;
        Tensor = tensor;
    }

    /// <summary>The file at fault (a shard, the index, or the checkpoint folder).</summary>
    public string File { get; }

    /// <summary>The tensor at fault, when the problem concerns one.</summary>
    public string? Tensor { get; }
}

/// <summary>TorchSharp's native runtime cannot be loaded — usually because the application references no backend package
/// (<c>TorchSharp-cpu</c>, <c>TorchSharp-cuda-linux</c>, <c>TorchSharp-cuda-windows</c>). The message says which to add.</summary>
public sealed class JambaNativeLibraryException : DllNotFoundException
{
    /// <summary>Creates the exception.</summary>
    public JambaNativeLibraryException(string message, Exception? inner = null) : base(message, inner) { }
}
