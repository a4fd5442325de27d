namespace Jamba.Inference.Tokenization;

/// <summary>A tokenizer file (<c>tokenizer.json</c>, <c>tokenizer.model</c>, <c>tokenizer_config.json</c>) is malformed or uses a feature this library does not implement.</summary>
public sealed class JambaTokenizerException : Exception
{
    /// <summary>Creates the exception for <paramref name="file"/>.</summary>
    public JambaTokenizerException(string file, string message, Exception? inner = null)
        : base($"{file}: {message}", inner)
    {
        File = file;
    }

    /// <summary>The file at fault.</summary>
    public string File { get; }
}
