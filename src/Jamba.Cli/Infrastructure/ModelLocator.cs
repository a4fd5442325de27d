namespace Jamba.Cli.Infrastructure;

/// <summary>Finds the checkpoint a command runs on when <c>--model</c> is not given.</summary>
internal static class ModelLocator
{
    /// <summary>The folder name of the model shipped with the repository (under <c>models/</c>).</summary>
    public const string ShippedModelName = "jamba-moby-tiny";

    /// <summary>Environment variable naming the default checkpoint folder.</summary>
    public const string ModelEnvironmentVariable = "JAMBA_MODEL";

    /// <summary>
    /// <paramref name="explicitPath"/> when given (the core reports a missing or broken checkpoint); else
    /// <c>$JAMBA_MODEL</c>; else <c>models/jamba-moby-tiny</c> beside the executable (a packed tool) or in the
    /// repository that holds the executable (the folder with <c>Jamba.sln</c>, found by walking up).
    /// </summary>
    /// <exception cref="CliException">No model given and none found.</exception>
    public static string Resolve(string? explicitPath)
    {
        if (!string.IsNullOrWhiteSpace(explicitPath)) return explicitPath;
        if (Environment.GetEnvironmentVariable(ModelEnvironmentVariable) is { Length: > 0 } fromEnv) return fromEnv;
        var candidates = DefaultCandidates();
        foreach (var candidate in candidates)
            if (Directory.Exists(candidate)) return candidate;
        throw new CliException($"no --model given and the shipped model is not there ({string.Join(" or ", candidates.Select(c => $"'{c}'"))}); pass --model <checkpoint folder> or set {ModelEnvironmentVariable}.");
    }

    /// <summary>Where the shipped model may be, in order.</summary>
    public static IReadOnlyList<string> DefaultCandidates()
    {
        var list = new List<string> { Path.Combine(AppContext.BaseDirectory, "models", ShippedModelName) };
        if (RepositoryRoot() is { } root) list.Add(Path.Combine(root, "models", ShippedModelName));
        return list;
    }

    /// <summary>The folder holding <c>Jamba.sln</c> above the executable, if any.</summary>
    public static string? RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Jamba.sln"))) return dir.FullName;
        return null;
    }
}
