using System.Runtime.CompilerServices;
using Jamba.Inference.Chat;
using Jamba.Inference.Generation;
using Jamba.Inference.Templates;

namespace Jamba.Testing;

/// <summary>
/// Plays back recorded model outputs (one per request, in order) as a stream of small pieces, the way the
/// engine streams detokenized text, and records the prompts it was given.
/// </summary>
public sealed class ScriptedGenerator
{
    private readonly Queue<string> _outputs;
    private readonly int _pieceLength;

    public ScriptedGenerator(IEnumerable<string> outputs, int pieceLength = 3)
    {
        _outputs = new Queue<string>(outputs);
        _pieceLength = pieceLength;
    }

    public List<string> Prompts { get; } = new();
    public List<GenerationOptions> Options { get; } = new();

    /// <summary>Finish reason of each scripted output (default Stop).</summary>
    public FinishReason FinishReason { get; set; } = FinishReason.Stop;

    internal async IAsyncEnumerable<GenerationUpdate> Generate(string prompt, GenerationOptions options, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        Prompts.Add(prompt);
        Options.Add(options.Clone());
        if (_outputs.Count == 0) throw new InvalidOperationException("The script has no more outputs.");
        string output = _outputs.Dequeue();
        int pieces = 0;
        for (int i = 0; i < output.Length; i += _pieceLength)
        {
            cancellationToken.ThrowIfCancellationRequested();
            await Task.Yield();
            pieces++;
            yield return new GenerationUpdate { TokenId = 100 + pieces, Text = output.Substring(i, Math.Min(_pieceLength, output.Length - i)) };
        }
        yield return new GenerationUpdate { TokenId = 2, FinishReason = FinishReason, Usage = new GenerationUsage(prompt.Length / 4, pieces + 1) };
    }

    /// <summary>A chat client over this script with the given template (default: Jamba Mini 1.7).</summary>
    public JambaChatClient CreateClient(string templateFolder = "jamba-mini-1.7", Microsoft.Extensions.Logging.ILogger? logger = null, JambaChatClientOptions? options = null)
    {
        var template = ChatTemplate.Parse(File.ReadAllText(Path.Combine(RepositoryPaths.ChatTemplates, templateFolder, "template.jinja")));
        return new JambaChatClient(Generate, new JambaChatFormatter(template, "<|startoftext|>", "<|endoftext|>"), "scripted-jamba", options, logger);
    }
}

/// <summary>Collects log entries.</summary>
public sealed class ListLogger : Microsoft.Extensions.Logging.ILogger
{
    public List<(Microsoft.Extensions.Logging.LogLevel Level, string Message)> Entries { get; } = new();

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;
    public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (Entries) Entries.Add((logLevel, formatter(state, exception)));
    }
}
