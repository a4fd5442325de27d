using System.Text;
using System.Text.Json.Nodes;
using Jamba.Inference.Templates;
using Xunit;

namespace Jamba.Inference.Tests.Templates;

/// <summary>Renders every case of every fixture folder under <c>chat-templates/</c> and compares with jinja2.</summary>
public sealed class ChatTemplateFixtureTests
{
    /// <summary>Fixture roots: <c>shared/fixtures</c> next to the repository, plus <c>JAMBA_EXTRA_FIXTURES</c>.</summary>
    internal static IEnumerable<string> FixtureRoots()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "shared", "fixtures");
            if (Directory.Exists(candidate))
            {
                yield return candidate;
                break;
            }
        }
        var extra = Environment.GetEnvironmentVariable("JAMBA_EXTRA_FIXTURES");
        if (!string.IsNullOrWhiteSpace(extra))
            foreach (var root in extra.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                if (Directory.Exists(root)) yield return Path.GetFullPath(root);
    }

    /// <summary>Every folder under each root's <c>chat-templates/</c> holding a template and cases.</summary>
    internal static IEnumerable<string> FixtureFolders() =>
        FixtureRoots()
            .Select(r => Path.Combine(r, "chat-templates"))
            .Where(Directory.Exists)
            .SelectMany(d => Directory.GetDirectories(d).Order(StringComparer.Ordinal))
            .Where(f => File.Exists(Path.Combine(f, "template.jinja")) && File.Exists(Path.Combine(f, "cases.json")))
            .Distinct();

    /// <summary>One row per (folder, case). The folder is shown relative to the default root when possible.</summary>
    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (var folder in FixtureFolders())
        {
            var cases = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "cases.json")))!.AsArray();
            foreach (var c in cases) data.Add(DisplayFolder(folder), c!["name"]!.GetValue<string>());
        }
        return data;
    }

    private static string DisplayFolder(string folder)
    {
        var first = FixtureRoots().FirstOrDefault();
        if (first != null)
        {
            var defaultDir = Path.Combine(first, "chat-templates", Path.GetFileName(folder));
            if (Path.GetFullPath(defaultDir) == Path.GetFullPath(folder)) return Path.GetFileName(folder);
        }
        return folder;
    }

    private static string ResolveFolder(string display)
    {
        if (Path.IsPathRooted(display)) return display;
        return Path.Combine(FixtureRoots().First(), "chat-templates", display);
    }

    [Fact]
    [Trait("Category", "ChatTemplate")]
    public void FixturesAreDiscovered()
    {
        Assert.NotEmpty(FixtureFolders());
        Assert.NotEmpty(Cases());
    }

    [Theory]
    [Trait("Category", "ChatTemplate")]
    [MemberData(nameof(Cases))]
    public void RendersLikeJinja2(string folder, string caseName)
    {
        var dir = ResolveFolder(folder);
        var template = ChatTemplate.Parse(File.ReadAllText(Path.Combine(dir, "template.jinja"), Encoding.UTF8));
        var c = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "cases.json")))!.AsArray()
            .Single(x => x!["name"]!.GetValue<string>() == caseName)!;

        var kwargs = new Dictionary<string, JsonNode?>();
        if (c["kwargs"] is JsonObject kw)
            foreach (var kv in kw) kwargs[kv.Key] = kv.Value;

        string Render() => template.Render(
            c["messages"],
            c["tools"],
            c["documents"],
            c["add_generation_prompt"]?.GetValue<bool>() ?? false,
            c["bos_token"]?.GetValue<string>(),
            c["eos_token"]?.GetValue<string>(),
            kwargs);

        if (c["expected_error"] is JsonNode err)
        {
            var ex = Assert.Throws<TemplateException>(Render);
            Assert.Equal(c["error_type"]!.GetValue<string>(), ex.ErrorType);
            if (ex.ErrorType is "TemplateError" or "UndefinedError")
                Assert.Equal(err.GetValue<string>(), ex.RawMessage);
            return;
        }

        string expected = c["expected"]!.GetValue<string>();
        string actual = Render();
        AssertSameText(expected, actual);
    }

    /// <summary>Byte-identical comparison with a readable report of the first difference.</summary>
    internal static void AssertSameText(string expected, string actual)
    {
        if (string.Equals(expected, actual, StringComparison.Ordinal)) return;
        int i = 0;
        while (i < expected.Length && i < actual.Length && expected[i] == actual[i]) i++;
        static string Around(string s, int at)
        {
            int from = Math.Max(0, at - 40);
            int to = Math.Min(s.Length, at + 40);
            return System.Text.Json.JsonSerializer.Serialize(s[from..to]);
        }
        Assert.Fail(
            $"Output differs at index {i} (expected length {expected.Length}, actual {actual.Length}).\n" +
            $"expected: …{Around(expected, i)}…\nactual:   …{Around(actual, i)}…");
    }
}
