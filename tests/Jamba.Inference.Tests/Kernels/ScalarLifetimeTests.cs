using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Xunit;
using Xunit.Abstractions;

namespace Jamba.Inference.Tests;

/// <summary>
/// Guards against a use-after-free in TorchSharp 0.107: a <c>TorchSharp.Scalar</c> created on the fly (the implicit
/// conversion of a number, or the <c>alpha = 1</c> that <c>Tensor.add(Tensor)</c> and <c>a + b</c> create inside
/// TorchSharp) is unreachable once its handle has been read, so a garbage collection on another thread while the native
/// op runs can let the finalizer free it mid-call. libtorch then reads a freed <c>c10::Scalar</c> ("Expected false to be
/// true … toFloat", or silently a wrong value). Every Scalar the library passes to TorchSharp must therefore be rooted
/// (a cached static from <c>Jamba.Inference.Modeling.TorchScalars</c>, or a local disposed after the call), and the
/// members that create a Scalar internally must not be called. This test compiles <c>src/Jamba.Inference</c> with
/// Roslyn and lists every violation; <see cref="GcPressureTests"/> checks the runtime behaviour.
/// </summary>
public sealed class ScalarLifetimeTests(ITestOutputHelper output)
{
    // Only the core does tensor arithmetic; the bridges and the CLI call its API.
    private static readonly string[] CheckedProjects = ["Jamba.Inference"];

    private static readonly CSharpParseOptions Options = new(LanguageVersion.Preview);

    [Fact]
    public void No_transient_TorchSharp_scalars_in_library_code()
    {
        var violations = new List<string>();
        foreach (var project in CheckedProjects)
        {
            string folder = RepositoryPaths.Source(project);
            var trees = Directory.EnumerateFiles(folder, "*.cs", SearchOption.AllDirectories)
                .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}"))
                .Select(f => CSharpSyntaxTree.ParseText(File.ReadAllText(f), Options, path: f))
                .ToList();
            Assert.NotEmpty(trees);
            violations.AddRange(Violations(project, trees));
        }
        foreach (var v in violations) output.WriteLine(v);
        Assert.True(violations.Count == 0, $"{violations.Count} transient TorchSharp Scalar(s):\n" + string.Join("\n", violations.Take(60)));
    }

    [Fact]
    public void The_check_finds_each_kind_of_transient_scalar()
    {
        const string code = """
            using TorchSharp;
            using static TorchSharp.torch;
            static class Sample
            {
                static readonly Scalar Rooted = 1.ToScalar();
                static void Bad(Tensor a, Tensor b, Tensor m)
                {
                    var x1 = a + b;                                   // add(b) => add(b, 1)
                    var x2 = a * 0.5;                                 // converts inside the operator
                    var x3 = a.masked_fill(m, float.NegativeInfinity); // implicit conversion at the call
                    var x4 = torch.arange(0, 10);                     // two implicit conversions
                    var x5 = nn.functional.softplus(a);               // Tensor.softplus(double, double) converts inside
                    var x6 = a.add_(b);                               // add_(b) => add_(b, 1)
                    var x7 = a.mul(2.0.ToScalar());                   // ToScalar() not rooted
                    var x8 = a.square();                              // square() => pow(2)
                }
                static void Good(Tensor a, Tensor b, Tensor m)
                {
                    using var half = 0.5.ToScalar();
                    var y1 = a.add(b, Rooted);
                    var y2 = a.mul(half);
                    var y3 = a * b - b / a;
                    var y4 = a.masked_fill(m, Rooted);
                }
            }
            """;
        var found = Violations("Sample", [CSharpSyntaxTree.ParseText(code, Options, path: "Sample.cs")]);
        foreach (var v in found) output.WriteLine(v);
        var lines = found.Select(v => int.Parse(v.Split(':')[1])).ToHashSet();
        Assert.Equal([8, 9, 10, 11, 12, 13, 14, 15], lines.Order());
        Assert.Equal(9, found.Count); // arange has two
    }

    private static List<string> Violations(string name, IReadOnlyList<SyntaxTree> trees)
    {
        var compilation = CSharpCompilation.Create(name + ".ScalarCheck", trees.Concat([CSharpSyntaxTree.ParseText("global using System; global using System.IO; global using System.Linq; global using System.Collections.Generic; global using System.Threading; global using System.Threading.Tasks; global using System.Net.Http;", Options)]),
            References(), new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, allowUnsafe: true, nullableContextOptions: NullableContextOptions.Enable));
        var errors = compilation.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error && d.Id != "CS8795").ToList(); // CS8795: [GeneratedRegex] bodies come from a source generator
        Assert.True(errors.Count == 0, "The check must see fully bound code: " + string.Join("\n", errors.Take(10)));
        var violations = new List<string>();
        foreach (var tree in trees)
        {
            var model = compilation.GetSemanticModel(tree);
            foreach (var node in tree.GetRoot().DescendantNodes())
            {
                string? problem = Check(model, node);
                if (problem is null) continue;
                var line = tree.GetLineSpan(node.Span).StartLinePosition.Line + 1;
                string file = Path.IsPathRooted(tree.FilePath) ? Path.GetRelativePath(RepositoryPaths.Root, tree.FilePath) : tree.FilePath;
                violations.Add($"{file}:{line}: {problem}: {node.ToString().Split('\n')[0].Trim()}");
            }
        }
        return violations;
    }

    /// <summary>The rule set, applied to each syntax node; null when the node is fine.</summary>
    private static string? Check(SemanticModel model, SyntaxNode node)
    {
        if (node is ExpressionSyntax expr && !(node.Parent is MemberAccessExpressionSyntax access && access.Name == node))
        {
            var conversion = model.GetConversion(expr);
            var converted = model.GetTypeInfo(expr).ConvertedType;
            if (conversion.IsUserDefined && IsScalar(converted) && !IsScalar(model.GetTypeInfo(expr).Type))
                return "implicit conversion to a transient Scalar";
            if (expr is InvocationExpressionSyntax { Expression: MemberAccessExpressionSyntax { Name.Identifier.Text: "ToScalar" } } && IsScalar(converted)
                && expr.Parent is ArgumentSyntax or BinaryExpressionSyntax)
                return "ToScalar() passed without being rooted";
        }
        if (node is InvocationExpressionSyntax or BinaryExpressionSyntax or AssignmentExpressionSyntax or PrefixUnaryExpressionSyntax)
        {
            if (model.GetSymbolInfo(node).Symbol is IMethodSymbol method && InTorchSharp(method) && CreatesScalarInside(method))
                return $"{method.ContainingType.Name}.{method.Name}({string.Join(", ", method.Parameters.Select(p => p.Type.Name))}) creates a Scalar internally";
        }
        return null;
    }

    /// <summary>TorchSharp members whose implementation converts a number to a Scalar it does not keep alive.</summary>
    private static bool CreatesScalarInside(IMethodSymbol m)
    {
        bool hasAlpha = m.Parameters.Any(p => p.Name == "alpha" || p.Name == "value");
        if (m.Name is "add" or "add_" or "addcdiv" or "addcdiv_" && !hasAlpha) return true;       // add(t) => add(t, 1)
        if (m.Name is "square" or "square_") return true;                                        // square() => pow(2)
        if (m.MethodKind == MethodKind.UserDefinedOperator)
        {
            if (m.Name == "op_Addition") return true;                                           // a + b => a.add(b) => add(b, 1)
            if (m.Parameters.Any(p => p.Type.SpecialType is SpecialType.System_Int32 or SpecialType.System_Int64 or SpecialType.System_Single or SpecialType.System_Double))
                return true;                                                                    // t * 2.0 converts inside
            if (m.Name is "op_Subtraction" or "op_Division" && IsScalar(m.Parameters[0].Type)) return true; // s - t => t.negative().add(s) => add(s, 1)
        }
        // Members taking a floating-point number may convert it to a Scalar inside (Tensor.softplus(double, double) does);
        // only those verified to pass the number straight to native code are allowed.
        if (m.MethodKind != MethodKind.UserDefinedOperator && m.Parameters.Any(p => p.Type.SpecialType is SpecialType.System_Single or SpecialType.System_Double)
            && !FloatingParametersPassedToNative.Contains(m.ContainingType.Name + "." + m.Name))
            return true;
        return false;
    }

    /// <summary>TorchSharp members with floating-point parameters whose source (0.107) hands the number to native code as a
    /// plain double (no Scalar).</summary>
    private static readonly HashSet<string> FloatingParametersPassedToNative =
    [
        "functional.cross_entropy",   // THSNN_cross_entropy(…, double label_smoothing)
        "functional.scaled_dot_product_attention", // THSNN_scaled_dot_product_attention(…, double p, bool is_casual)
        "utils.clip_grad_norm_",      // THSTensor_clip_grad_norm_(…, double max_norm, double norm_type)
        "optim.AdamW",                // the constructor only stores numbers; its step() does convert, and runs with GC paused (JambaTrainer)
    ];

    private static bool IsScalar(ITypeSymbol? t) => t is { Name: "Scalar", ContainingNamespace.Name: "TorchSharp" };

    private static bool InTorchSharp(ISymbol s) => s.ContainingAssembly?.Name == "TorchSharp";

    private static IEnumerable<MetadataReference> References()
    {
        var paths = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Concat(Directory.EnumerateFiles(AppContext.BaseDirectory, "*.dll"))
            .Where(p => !Path.GetFileName(p).StartsWith("Jamba.Inference", StringComparison.Ordinal))
            .GroupBy(Path.GetFileName).Select(g => g.First());
        foreach (var p in paths)
        {
            MetadataReference? r = null;
            try { r = MetadataReference.CreateFromFile(p); } catch (BadImageFormatException) { }
            if (r is not null) yield return r;
        }
    }
}
