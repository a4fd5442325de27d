namespace Jamba.Testing;

/// <summary>Where the repository and the shared reference fixtures are, seen from a test assembly's output folder.</summary>
public static class RepositoryPaths
{
    /// <summary>The repository root: the first folder above <see cref="AppContext.BaseDirectory"/> holding <c>Jamba.sln</c>.</summary>
    public static string Root { get; } = FindRoot();

    /// <summary><c>&lt;root&gt;/../shared/fixtures</c> (it may not exist: the shared fixtures are optional).</summary>
    public static string SharedFixtures => Path.GetFullPath(Path.Combine(Root, "..", "shared", "fixtures"));

    /// <summary><c>shared/fixtures/chat-templates</c>: one folder per recorded template (<c>template.jinja</c>, <c>cases.json</c>).</summary>
    public static string ChatTemplates => Path.Combine(SharedFixtures, "chat-templates");

    /// <summary>The folder of the source project <paramref name="project"/> (e.g. <c>Jamba.Inference</c>) under <c>src/</c>.</summary>
    public static string Source(string project) => Path.Combine(Root, "src", project);

    /// <summary>The output folder's <c>TestData</c>: the test tokenizer (<c>tokenizer.model</c>, <c>tokenizer_config.json</c>).</summary>
    public static string TokenizerTestData => Path.Combine(AppContext.BaseDirectory, "TestData");

    /// <summary>The model the repository ships (<c>models/jamba-moby-tiny</c>: a trained tiny checkpoint with Jamba's template).</summary>
    public static string ShippedModel => Path.Combine(Root, "models", "jamba-moby-tiny");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Jamba.sln"))) return dir.FullName;
        throw new InvalidOperationException($"Jamba.sln not found above {AppContext.BaseDirectory}.");
    }
}
