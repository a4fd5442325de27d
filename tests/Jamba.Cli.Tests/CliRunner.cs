using Jamba.Cli;
using Jamba.Cli.Infrastructure;

namespace Jamba.Cli.Tests;

/// <summary>The result of one in-process run of the command line.</summary>
public sealed record CliResult(int ExitCode, string Out, string Error)
{
    public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Out}\n--- stderr\n{Error}";
}

/// <summary>Runs <c>jamba</c> commands in-process with captured, non-interactive IO.</summary>
public static class CliRunner
{
    public static CliResult Run(params string[] args) => RunWithInput(null, args);

    public static CliResult RunWithInput(string? stdin, params string[] args) => RunCancellable(stdin, CancellationToken.None, args);

    public static CliResult RunCancellable(string? stdin, CancellationToken cancellationToken, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var io = CliIO.Capture(output, error, stdin is null ? null : new StringReader(stdin));
        int code = JambaApp.RunAsync(args, io, cancellationToken).GetAwaiter().GetResult();
        return new CliResult(code, output.ToString(), error.ToString());
    }
}
