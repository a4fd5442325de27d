using Xunit;

namespace Jamba.Cli.Tests;

/// <summary>Locates the repository and the shared reference fixtures (<c>../shared/fixtures</c> and <c>JAMBA_EXTRA_FIXTURES</c>,
/// a named root that does not exist left out) through <see cref="FixtureRoots"/>.</summary>
public static class FixturePaths
{
    public static string RepositoryRoot => RepositoryPaths.Root;

    public static IReadOnlyList<string> Roots() => FixtureRoots.All(skipMissingExtraRoots: true);

    /// <summary>Every model fixture folder (with an <c>expected.json</c>).</summary>
    public static IReadOnlyList<string> ModelFixtures() => FixtureRoots.ModelFolders(skipMissingExtraRoots: true);

    public static TheoryData<string> ModelFixtureData()
    {
        var data = new TheoryData<string>();
        foreach (var f in ModelFixtures()) data.Add(f);
        return data;
    }

    /// <summary>The first model fixture (a checkpoint without tokenizer files).</summary>
    public static string AnyModelFixture() =>
        ModelFixtures().FirstOrDefault() ?? throw new InvalidOperationException("No model fixtures under ../shared/fixtures/models.");
}

/// <summary>A small random-weight checkpoint with the real SentencePiece test tokenizer and a chat template (the shared
/// <see cref="TinyCheckpoint"/>).</summary>
public sealed class TextModelFixture() : TinyCheckpointFixture("jamba-cli-text-", new TinyCheckpointOptions { ChatTemplate = ChatTemplate })
{
    /// <summary>The checkpoint's config.</summary>
    public static string ConfigJson { get; } = TinyCheckpoint.ConfigJson();

    public const string ChatTemplate =
        "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";
}

/// <summary>A temporary folder deleted on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("jamba-cli-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}
