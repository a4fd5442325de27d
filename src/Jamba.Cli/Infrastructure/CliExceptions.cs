namespace Jamba.Cli.Infrastructure;

/// <summary>A command failed with a message for the user (one line) and an exit code.</summary>
internal class CliException(string message, int exitCode = ExitCodes.Failure) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}

/// <summary>Bad arguments: exit code 2.</summary>
internal sealed class UsageException(string message) : CliException(message, ExitCodes.Usage);

internal static class ExitCodes
{
    public const int Success = 0;
    /// <summary>Runtime failure: missing or broken checkpoint, unavailable device…</summary>
    public const int Failure = 1;
    /// <summary>Bad arguments.</summary>
    public const int Usage = 2;
    /// <summary>Interrupted (Ctrl+C).</summary>
    public const int Cancelled = 130;
}
