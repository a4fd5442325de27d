namespace Jamba.Inference.Tokenization;

/// <summary>A tokenizer file (<c>tokenizer.json</c>, <c>tokenizer.model</c>, <c>tokenizer_config.json</c>,
/// <c>generation_config.json</c>, a chat template file) is malformed or uses a feature this library does not implement.</summary>
public sealed class JambaTokenizerException : Exception
{
    /// <summary>Creates the exception for <paramref name="file"/>.</summary>
    public JambaTokenizerException(string file, string message, Exception? inner = null)
        : base($"{file}: {message}", inner)
    {
        File = file;
    }

    /// <summary>Creates the exception for <paramref name="field"/> (a JSON path such as <c>model.merges[12]</c>) of <paramref name="file"/>.</summary>
    public JambaTokenizerException(string file, string? field, string message, Exception? inner = null)
        : base(field is null ? $"{file}: {message}" : $"{file}: field '{field}': {message}", inner)
    {
        File = file;
        Field = field;
    }

    /// <summary>The file at fault.</summary>
    public string File { get; }

    /// <summary>The JSON path of the value at fault (e.g. <c>added_tokens[3].id</c>), when the problem concerns one.</summary>
    public string? Field { get; }
}
