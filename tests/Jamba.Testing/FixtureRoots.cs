using Xunit;
using Xunit.Abstractions;
namespace Jamba.Testing;

/// <summary>Finds the reference-fixture roots: the repository's sibling <c>shared/fixtures</c> and every root in
/// <c>JAMBA_EXTRA_FIXTURES</c> (separated by the path separator).</summary>
public static class FixtureRoots
{
    /// <summary>The repository root (the folder holding <c>Jamba.sln</c>); same as <see cref="RepositoryPaths.Root"/>.</summary>
    public static string RepositoryRoot => RepositoryPaths.Root;

    /// <summary>Every fixture root, public first. A root named in <c>JAMBA_EXTRA_FIXTURES</c> that does not exist throws,
    /// or with <paramref name="skipMissingExtraRoots"/> is left out.</summary>
    public static IReadOnlyList<string> All(bool skipMissingExtraRoots = false)
    {
        var roots = new List<string>();
        string shared = RepositoryPaths.SharedFixtures;
        if (Directory.Exists(shared)) roots.Add(shared);
        foreach (var extra in (Environment.GetEnvironmentVariable("JAMBA_EXTRA_FIXTURES") ?? "")
                     .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!Directory.Exists(extra))
            {
                if (skipMissingExtraRoots) continue;
                throw new DirectoryNotFoundException($"JAMBA_EXTRA_FIXTURES names '{extra}', which does not exist.");
            }
            roots.Add(Path.GetFullPath(extra));
        }
        return roots;
    }

    /// <summary>Every folder under <c>&lt;root&gt;/<paramref name="kind"/>/</c> of every root (e.g. <c>models</c>), in
    /// root order, each root's folders in ordinal order.</summary>
    public static IReadOnlyList<string> Folders(string kind, bool skipMissingExtraRoots = false) =>
        All(skipMissingExtraRoots).Select(r => Path.Combine(r, kind)).Where(Directory.Exists)
            .SelectMany(d => Directory.GetDirectories(d).Order(StringComparer.Ordinal)).ToList();

    /// <summary>Model fixture folders (those with an <c>expected.json</c>).</summary>
    public static IReadOnlyList<string> ModelFolders(bool skipMissingExtraRoots = false) =>
        Folders("models", skipMissingExtraRoots).Where(f => File.Exists(Path.Combine(f, "expected.json"))).ToList();

    /// <summary>Model fixture folders (those with an <c>expected.json</c>), as xunit theory rows.</summary>
    public static TheoryData<ModelFixtureName> ModelFixtures()
    {
        var data = new TheoryData<ModelFixtureName>();
        foreach (var folder in ModelFolders())
            data.Add(new ModelFixtureName(folder));
        return data;
    }

    /// <summary>Every model fixture on both forward paths: the hand-written CPU kernels (<see cref="ForwardPath.CpuKernels"/>) and
    /// the device-agnostic tensor path a CUDA device runs (<see cref="ForwardPath.Device"/>).</summary>
    public static TheoryData<ModelFixtureName, ForwardPath> ModelFixturesOnBothPaths()
    {
        var data = new TheoryData<ModelFixtureName, ForwardPath>();
        foreach (var folder in ModelFolders())
            foreach (var path in new[] { ForwardPath.CpuKernels, ForwardPath.Device })
                data.Add(new ModelFixtureName(folder), path);
        return data;
    }
}

/// <summary>Which forward path a test runs (the model's <c>ModelOptions.CpuKernels</c>).</summary>
public enum ForwardPath
{
    /// <summary>The hand-written CPU kernels where they apply (the default on a CPU).</summary>
    CpuKernels,
    /// <summary>Every CPU kernel off: the tensor path a CUDA device runs.</summary>
    Device,
}

/// <summary>A fixture folder as a theory argument, displayed by its name and root.</summary>
public sealed class ModelFixtureName : IXunitSerializable
{
    /// <summary>For xunit.</summary>
    public ModelFixtureName() { Path = ""; }

    /// <summary>Wraps <paramref name="path"/>.</summary>
    public ModelFixtureName(string path) { Path = path; }

    /// <summary>The folder.</summary>
    public string Path { get; private set; }

    /// <inheritdoc />
    public void Deserialize(IXunitSerializationInfo info) => Path = info.GetValue<string>(nameof(Path));

    /// <inheritdoc />
    public void Serialize(IXunitSerializationInfo info) => info.AddValue(nameof(Path), Path);

    /// <inheritdoc />
    public override string ToString() => $"{System.IO.Path.GetFileName(Path)} ({System.IO.Path.GetDirectoryName(System.IO.Path.GetDirectoryName(Path))})";
}
