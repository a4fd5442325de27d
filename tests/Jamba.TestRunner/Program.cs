using System.Diagnostics;
using System.Reflection;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace Jamba.TestRunner;

/// <summary>
/// Runs the tests of one xunit v2 assembly in this process and prints one line per test (PASS/FAIL/SKIP, time, output), then a
/// total. Start it with the test assembly's dependency manifest and runtime configuration, where no SDK is installed:
/// <code>dotnet exec --depsfile T.deps.json --runtimeconfig T.runtimeconfig.json Jamba.TestRunner.dll T.dll [filters]</code>
/// Filters (each kind ORs its values, kinds AND): <c>--trait Name=Value</c>, <c>--class Substring</c>, <c>--method Substring</c>
/// (of the full display name). <c>--list</c> prints the selected test cases without running them. Exit code: 0 when every selected
/// test passed (and at least one ran), 1 on any failure, 2 on a usage error or when nothing matched.
/// </summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        string? assemblyPath = null;
        var traits = new List<(string Name, string Value)>();
        var classes = new List<string>();
        var methods = new List<string>();
        bool list = false;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.");
            try
            {
                switch (args[i])
                {
                    case "--trait":
                        string t = Next();
                        int eq = t.IndexOf('=');
                        if (eq <= 0) throw new ArgumentException($"--trait must be Name=Value; found '{t}'.");
                        traits.Add((t[..eq], t[(eq + 1)..]));
                        break;
                    case "--class": classes.Add(Next()); break;
                    case "--method": methods.Add(Next()); break;
                    case "--list": list = true; break;
                    default:
                        if (args[i].StartsWith("--", StringComparison.Ordinal) || assemblyPath is not null)
                            throw new ArgumentException($"unexpected argument '{args[i]}'; usage: TEST.dll [--trait N=V] [--class S] [--method S] [--list].");
                        assemblyPath = args[i];
                        break;
                }
            }
            catch (ArgumentException ex)
            {
                Console.Error.WriteLine($"Jamba.TestRunner: {ex.Message}");
                return 2;
            }
        }
        if (assemblyPath is null || !File.Exists(assemblyPath))
        {
            Console.Error.WriteLine($"Jamba.TestRunner: expected the path of a test assembly; found '{assemblyPath ?? "(none)"}'.");
            return 2;
        }

        var assembly = Assembly.LoadFrom(Path.GetFullPath(assemblyPath));
        var options = new RunnerOptions();
        options.SetValue("xunit.discovery.PreEnumerateTheories", true); // one case per theory row: rows are filtered and reported alone
        options.SetValue("xunit.discovery.IncludeSourceInformation", false);
        var diagnostics = new DiagnosticSink();
        using var framework = new XunitTestFramework(diagnostics);
        var cases = new List<ITestCase>();
        using (var discoverer = framework.GetDiscoverer(Reflector.Wrap(assembly)))
        {
            using var sink = new DiscoverySink(cases);
            discoverer.Find(includeSourceInformation: false, sink, options);
            sink.Done.WaitOne();
        }
        var selected = cases.Where(c =>
                (traits.Count == 0 || traits.Any(t => c.Traits.TryGetValue(t.Name, out var values) && values.Contains(t.Value, StringComparer.OrdinalIgnoreCase)))
                && (classes.Count == 0 || classes.Any(s => (c.TestMethod.TestClass.Class.Name ?? "").Contains(s, StringComparison.OrdinalIgnoreCase)))
                && (methods.Count == 0 || methods.Any(s => c.DisplayName.Contains(s, StringComparison.OrdinalIgnoreCase))))
            .ToList();
        Console.WriteLine($"Jamba.TestRunner: {selected.Count} of {cases.Count} test cases selected in {Path.GetFileName(assemblyPath)}.");
        if (list)
        {
            foreach (var c in selected) Console.WriteLine($"  {c.DisplayName}");
            return selected.Count > 0 ? 0 : 2;
        }
        if (selected.Count == 0) return 2;

        var clock = Stopwatch.StartNew();
        using var execution = new ExecutionSink();
        using (var executor = framework.GetExecutor(assembly.GetName()))
        {
            executor.RunTests(selected, execution, options);
            execution.Done.WaitOne();
        }
        Console.WriteLine($"Jamba.TestRunner: {execution.Passed} passed, {execution.Failed} failed, {execution.Skipped} skipped, {execution.Errors} errors in {clock.Elapsed.TotalSeconds:F1} s.");
        return execution.Failed == 0 && execution.Errors == 0 && execution.Passed > 0 ? 0 : 1;
    }

    /// <summary>Discovery and execution options: a plain key-value store (xunit reads its keys with defaults).</summary>
    private sealed class RunnerOptions : ITestFrameworkDiscoveryOptions, ITestFrameworkExecutionOptions
    {
        private readonly Dictionary<string, object?> _values = new(StringComparer.Ordinal);

        public TValue GetValue<TValue>(string name) => _values.TryGetValue(name, out var v) && v is TValue t ? t : default!;

        public void SetValue<TValue>(string name, TValue value) => _values[name] = value;
    }

    private sealed class DiagnosticSink : IMessageSink
    {
        public bool OnMessage(IMessageSinkMessage message)
        {
            if (message is IDiagnosticMessage d) Console.Error.WriteLine($"[xunit] {d.Message}");
            return true;
        }
    }

    private sealed class DiscoverySink(List<ITestCase> cases) : IMessageSink, IDisposable
    {
        public ManualResetEvent Done { get; } = new(false);

        public bool OnMessage(IMessageSinkMessage message)
        {
            if (message is ITestCaseDiscoveryMessage found) cases.Add(found.TestCase);
            else if (message is IDiscoveryCompleteMessage) Done.Set();
            return true;
        }

        public void Dispose() => Done.Dispose();
    }

    private sealed class ExecutionSink : IMessageSink, IDisposable
    {
        public ManualResetEvent Done { get; } = new(false);
        public int Passed, Failed, Skipped, Errors;

        public bool OnMessage(IMessageSinkMessage message)
        {
            switch (message)
            {
                case ITestPassed p:
                    Passed++;
                    Console.WriteLine($"PASS {p.Test.DisplayName} ({p.ExecutionTime:F2} s)");
                    WriteOutput(p.Output);
                    break;
                case ITestFailed f:
                    Failed++;
                    Console.WriteLine($"FAIL {f.Test.DisplayName} ({f.ExecutionTime:F2} s)");
                    for (int i = 0; i < f.Messages.Length; i++)
                    {
                        Console.WriteLine($"     {f.ExceptionTypes[i]}: {f.Messages[i]}");
                        if (f.StackTraces[i] is { Length: > 0 } st) Console.WriteLine(Indent(st));
                    }
                    WriteOutput(f.Output);
                    break;
                case ITestSkipped s:
                    Skipped++;
                    Console.WriteLine($"SKIP {s.Test.DisplayName}: {s.Reason}");
                    break;
                case IErrorMessage e:
                    Errors++;
                    Console.WriteLine($"ERROR {string.Join(" | ", e.ExceptionTypes.Zip(e.Messages, (t, m) => $"{t}: {m}"))}");
                    break;
                case ITestAssemblyCleanupFailure or ITestCollectionCleanupFailure or ITestClassCleanupFailure or ITestCaseCleanupFailure or ITestMethodCleanupFailure or ITestCleanupFailure:
                    Errors++;
                    var failure = (IFailureInformation)message;
                    Console.WriteLine($"ERROR (cleanup) {string.Join(" | ", failure.ExceptionTypes.Zip(failure.Messages, (t, m) => $"{t}: {m}"))}");
                    break;
                case ITestAssemblyFinished:
                    Done.Set();
                    break;
            }
            return true;
        }

        private static void WriteOutput(string? output)
        {
            if (!string.IsNullOrWhiteSpace(output)) Console.WriteLine(Indent(output.TrimEnd()));
        }

        private static string Indent(string text) => string.Join(Environment.NewLine, text.Split('\n').Select(l => "     " + l.TrimEnd('\r')));

        public void Dispose() => Done.Dispose();
    }
}
