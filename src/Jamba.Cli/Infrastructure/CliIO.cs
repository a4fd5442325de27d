using Spectre.Console;

namespace Jamba.Cli.Infrastructure;

/// <summary>Where a command reads and writes. The real console, or captured writers in tests.</summary>
internal sealed class CliIO
{
    public CliIO(TextWriter output, TextWriter error, TextReader input, bool interactive, IAnsiConsole console)
    {
        Out = output;
        Error = error;
        In = input;
        Interactive = interactive;
        Console = console;
    }

    /// <summary>Standard output: generated text, JSON, tables.</summary>
    public TextWriter Out { get; }
    /// <summary>Standard error: errors and statistics lines.</summary>
    public TextWriter Error { get; }
    /// <summary>Standard input (chat reads its lines here).</summary>
    public TextReader In { get; }
    /// <summary>Whether stdout is a terminal: progress bars, colours and prompts; plain output otherwise.</summary>
    public bool Interactive { get; }
    /// <summary>Spectre console over <see cref="Out"/> (tables; progress bars when interactive).</summary>
    public IAnsiConsole Console { get; }

    /// <summary>The process console: interactive unless stdout is redirected.</summary>
    public static CliIO FromSystemConsole()
    {
        bool interactive = !System.Console.IsOutputRedirected;
        IAnsiConsole console = interactive ? AnsiConsole.Console : Plain(System.Console.Out, 120);
        return new CliIO(System.Console.Out, System.Console.Error, System.Console.In, interactive, console);
    }

    /// <summary>Captured, non-interactive IO (tests).</summary>
    public static CliIO Capture(StringWriter output, StringWriter error, TextReader? input = null) =>
        new(output, error, input ?? TextReader.Null, false, Plain(output, 160));

    private static IAnsiConsole Plain(TextWriter writer, int width)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(writer),
        });
        console.Profile.Width = width;
        return console;
    }
}
