using Jamba.Cli.Infrastructure;

namespace Jamba.Cli;

internal static class Program
{
    private static async Task<int> Main(string[] args)
    {
        using var cts = new CancellationTokenSource();
        // First Ctrl+C cancels the running command (generation stops within one step); a second one kills the process.
        Console.CancelKeyPress += (_, e) =>
        {
            if (cts.IsCancellationRequested) return;
            e.Cancel = true;
            cts.Cancel();
        };
        return await JambaApp.RunAsync(args, CliIO.FromSystemConsole(), cts.Token).ConfigureAwait(false);
    }
}
