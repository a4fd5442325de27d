using System.Collections.Concurrent;
using Jamba.Inference.Tests.Fixtures;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Xunit;
using Xunit.Abstractions;

namespace Jamba.Inference.Tests;

/// <summary>
/// Keeps <c>docs/ARCHITECTURE.md</c> true: compiles <c>src/Jamba.Inference</c> (and the connectors) with Roslyn, resolves
/// every name to its symbol, and checks that each room (a folder of <c>src/Jamba.Inference</c>) uses only the rooms it may,
/// that the rooms named there never touch TorchSharp, and that the connectors use no Modeling type beyond the load options.
/// </summary>
public sealed class RoomDependencyTests(ITestOutputHelper output)
{
    /// <summary>What each room may use besides itself and the root namespace (exceptions, <c>LoadProgress</c>). The same table
    /// is in docs/ARCHITECTURE.md.</summary>
    private static readonly Dictionary<string, string[]> Allowed = new()
    {
        ["Config"] = [],
        ["Errors"] = [],
        ["Native"] = [],
        ["Kernels"] = [],
        ["Templates"] = ["Tokenization"], // only JambaTokenizerException: templates are read from tokenizer_config.json
        ["Tokenization"] = [],
        ["Checkpoint"] = ["Config"],
        ["Caching"] = ["Config"],
        ["Modeling"] = ["Config", "Checkpoint", "Caching", "Kernels", "Native"],
        ["Diagnostics"] = ["Config", "Caching", "Kernels", "Modeling"],
        ["Generation"] = ["Tokenization"],
        ["Engine"] = ["Config", "Checkpoint", "Caching", "Kernels", "Modeling", "Generation", "Tokenization", "Native"],
        ["Chat"] = ["Engine", "Generation", "Templates", "Tokenization", "Caching", "Config"],
        ["Training"] = ["Config", "Checkpoint", "Kernels", "Modeling", "Tokenization"],
    };

    /// <summary>Rooms whose logic is plain .NET (no tensors).</summary>
    private static readonly string[] NoTorchSharp = ["Templates", "Tokenization", "Generation", "Config", "Errors", "Chat"];

    /// <summary>The Modeling types a connector may name: the load options.</summary>
    private static readonly string[] ConnectorModelingTypes = ["ModelOptions", "ComputeDType"];

    private static readonly Lazy<(CSharpCompilation Compilation, IReadOnlyList<SyntaxTree> Trees)> Core = new(() => Compile("Jamba.Inference"));

    private static (CSharpCompilation, IReadOnlyList<SyntaxTree>) Compile(string project, string? referenceFolder = null, params MetadataReference[] extra)
    {
        var parse = new CSharpParseOptions(LanguageVersion.Preview);
        string folder = Path.Combine(FixtureRoots.RepositoryRoot, "src", project);
        string sep = Path.DirectorySeparatorChar.ToString();
        var trees = Directory.EnumerateFiles(folder, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains(sep + "obj" + sep) && !f.Contains(sep + "bin" + sep))
            .Select(f => CSharpSyntaxTree.ParseText(File.ReadAllText(f), parse, path: f))
            .ToList();
        var references = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Concat(Directory.EnumerateFiles(AppContext.BaseDirectory, "*.dll"))
            .Concat(referenceFolder is null ? [] : Directory.EnumerateFiles(referenceFolder, "*.dll"))
            .Concat(project == "Jamba.Inference" ? [] : AspNetCoreFramework())
            .Where(p => Path.GetFileNameWithoutExtension(p) is var n && n != project && n != "Jamba.Inference") // both compiled from source
            .GroupBy(Path.GetFileName).Select(g => g.First())
            .Select(p => (MetadataReference)MetadataReference.CreateFromFile(p))
            .Concat(extra);
        var global = CSharpSyntaxTree.ParseText("global using System; global using System.IO; global using System.Linq; global using System.Collections.Generic; global using System.Threading; global using System.Threading.Tasks; global using System.Net.Http;", parse);
        // Named as the real assembly, so that a referenced connector (Jamba.Remote) that references Jamba.Inference binds to this one.
        var compilation = CSharpCompilation.Create(project, trees.Append(global), references,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, allowUnsafe: true, nullableContextOptions: NullableContextOptions.Enable));
        return (compilation, trees);
    }

    /// <summary>The compile-time assemblies of <paramref name="project"/>'s packages, from its <c>obj/project.assets.json</c>
    /// (written by the solution's restore, before anything builds).</summary>
    private static IEnumerable<MetadataReference> PackageReferences(string project)
    {
        string assets = Path.Combine(FixtureRoots.RepositoryRoot, "src", project, "obj", "project.assets.json");
        Assert.True(File.Exists(assets), $"{assets} is missing: restore the solution (dotnet restore Jamba.sln) before running this test.");
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(assets));
        var root = doc.RootElement;
        var folders = root.GetProperty("packageFolders").EnumerateObject().Select(p => p.Name).ToList();
        var libraries = root.GetProperty("libraries");
        var target = root.GetProperty("targets").EnumerateObject().First().Value;
        foreach (var library in target.EnumerateObject())
        {
            if (!library.Value.TryGetProperty("type", out var type) || type.GetString() != "package") continue;
            if (!library.Value.TryGetProperty("compile", out var compile)) continue;
            string relative = libraries.GetProperty(library.Name).GetProperty("path").GetString()!;
            foreach (var asset in compile.EnumerateObject())
            {
                if (asset.Name.EndsWith("_._", StringComparison.Ordinal)) continue;
                string? file = folders.Select(f => Path.Combine(f, relative, asset.Name)).FirstOrDefault(File.Exists);
                if (file is not null) yield return MetadataReference.CreateFromFile(file);
            }
        }
    }

    /// <summary>The ASP.NET Core shared framework beside the running .NET one (Jamba.Server's framework reference, which no
    /// bin folder holds).</summary>
    private static IEnumerable<string> AspNetCoreFramework()
    {
        var netcore = new DirectoryInfo(Path.GetDirectoryName(typeof(object).Assembly.Location)!);
        var folder = Path.Combine(netcore.Parent!.Parent!.FullName, "Microsoft.AspNetCore.App", netcore.Name);
        return Directory.Exists(folder) ? Directory.EnumerateFiles(folder, "*.dll") : [];
    }

    /// <summary>The check is only as good as its symbol resolution: the compilation must have no errors (but the regex source
    /// generator's partial methods, which a plain compilation does not run).</summary>
    private static void AssertCompiles(CSharpCompilation compilation)
    {
        var errors = compilation.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error && d.Id != "CS8795").Take(5).ToList();
        Assert.True(errors.Count == 0, $"the check's compilation of {compilation.AssemblyName} failed:\n" + string.Join("\n", errors));
    }

    private static string RoomOf(string file)
    {
        string rel = Path.GetRelativePath(Path.Combine(FixtureRoots.RepositoryRoot, "src", "Jamba.Inference"), file);
        return rel.Split(Path.DirectorySeparatorChar)[0];
    }

    /// <summary>The symbols each file's names resolve to.</summary>
    private static IEnumerable<(string File, int Line, ISymbol Symbol)> References(CSharpCompilation compilation, IEnumerable<SyntaxTree> trees)
    {
        foreach (var tree in trees)
        {
            var model = compilation.GetSemanticModel(tree);
            foreach (var name in tree.GetRoot().DescendantNodes().OfType<SimpleNameSyntax>())
            {
                if (name.Parent is UsingDirectiveSyntax or QualifiedNameSyntax { Parent: UsingDirectiveSyntax }) continue;
                var symbol = model.GetSymbolInfo(name).Symbol ?? model.GetSymbolInfo(name).CandidateSymbols.FirstOrDefault();
                if (symbol is null or INamespaceSymbol) continue;
                var type = symbol as INamedTypeSymbol ?? symbol.ContainingType;
                if (type is null) continue;
                yield return (tree.FilePath, name.GetLocation().GetLineSpan().StartLinePosition.Line + 1, type.OriginalDefinition);
            }
        }
    }

    private static string? JambaRoom(ISymbol type)
    {
        string ns = type.ContainingNamespace.ToDisplayString();
        if (ns == "Jamba.Inference") return "";
        return ns.StartsWith("Jamba.Inference.", StringComparison.Ordinal) ? ns["Jamba.Inference.".Length..].Split('.')[0] : null;
    }

    [Fact]
    public void EachRoomUsesOnlyTheRoomsItMay()
    {
        var (compilation, trees) = Core.Value;
        AssertCompiles(compilation);
        var edges = new ConcurrentDictionary<(string From, string To), string>();
        var torch = new List<string>();
        foreach (var (file, line, type) in References(compilation, trees))
        {
            string from = RoomOf(file);
            if (type.ContainingNamespace.ToDisplayString().StartsWith("TorchSharp", StringComparison.Ordinal) && NoTorchSharp.Contains(from))
                torch.Add($"{Path.GetFileName(file)}:{line} uses {type.ToDisplayString()}");
            if (JambaRoom(type) is not { Length: > 0 } to || to == from) continue;
            edges.TryAdd((from, to), $"{Path.GetFileName(file)}:{line} ({type.Name})");
        }
        foreach (var ((from, to), where) in edges.OrderBy(e => e.Key)) output.WriteLine($"{from} -> {to}  e.g. {where}");
        Assert.All(edges.Keys.Select(e => e.From).Distinct(), room => Assert.True(Allowed.ContainsKey(room), $"room {room} is not in the table (docs/ARCHITECTURE.md)"));
        var forbidden = edges.Where(e => !Allowed[e.Key.From].Contains(e.Key.To)).Select(e => $"{e.Key.From} -> {e.Key.To} at {e.Value}").ToList();
        Assert.True(forbidden.Count == 0, "dependencies against the room rules:\n" + string.Join("\n", forbidden));
        Assert.True(torch.Count == 0, "TorchSharp in a room without tensors:\n" + string.Join("\n", torch.Take(20)));
    }

    [Theory]
    [InlineData("Jamba.SemanticKernel")]
    [InlineData("Jamba.MLNet")]
    [InlineData("Jamba.Server")]
    [InlineData("Jamba.Remote")]
    public void ConnectorsUseNoModelingTypeBeyondTheLoadOptions(string project)
    {
        var (core, _) = Core.Value;
        // The connectors and their packages are referenced by this test project (so they are built before it runs and sit in
        // its output); ASP.NET Core is a shared framework (added by Compile).
        var (compilation, trees) = Compile(project, null, core.ToMetadataReference());
        AssertCompiles(compilation);
        Assert.Contains(References(compilation, trees), r => JambaRoom(r.Symbol) is not null); // the check resolves the core's types
        var used = References(compilation, trees)
            .Where(r => JambaRoom(r.Symbol) is "Modeling" or "Kernels" or "Checkpoint" or "Caching" or "Diagnostics")
            .Where(r => !ConnectorModelingTypes.Contains(r.Symbol.Name))
            .Select(r => $"{Path.GetFileName(r.File)}:{r.Line} uses {r.Symbol.ToDisplayString()}")
            .Distinct().ToList();
        Assert.True(used.Count == 0, string.Join("\n", used));
    }
}
