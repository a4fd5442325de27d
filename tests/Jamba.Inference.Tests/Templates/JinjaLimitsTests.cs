using System.Diagnostics;
using System.Text.Json.Nodes;
using Jamba.Inference.Templates;
using Jamba.Inference.Templates.Jinja;
using Xunit;
using Xunit.Abstractions;

namespace Jamba.Inference.Tests.Templates;

/// <summary>
/// Hostile templates (issue 15): each must end as a <see cref="TemplateException"/> with a specific type and
/// message, quickly — never a stack overflow (which would kill the test process), an out-of-memory condition
/// or a hang. Every case runs on a new thread with the default stack size, so a regression really crashes.
/// </summary>
public sealed class JinjaLimitsTests(ITestOutputHelper output)
{
    private static readonly TimeSpan CaseTimeout = TimeSpan.FromSeconds(20);

    private static string Repeat(string s, int n) => string.Concat(Enumerable.Repeat(s, n));

    /// <summary>Parses and renders on a fresh default-stack thread; the outcome, or a failure after <see cref="CaseTimeout"/>.</summary>
    internal static (string? Result, Exception? Error, TimeSpan Elapsed) RunIsolated(
        string template, TemplateLimits? limits = null, IReadOnlyDictionary<string, object?>? vars = null,
        CancellationToken cancellationToken = default, TimeSpan? timeout = null)
    {
        string? result = null;
        Exception? error = null;
        var sw = Stopwatch.StartNew();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var thread = new Thread(() =>
        {
            try
            {
                var t = ChatTemplate.Parse(template, limits);
                result = t.RenderVariables(vars ?? new Dictionary<string, object?>(), cts.Token);
            }
            catch (Exception e)
            {
                error = e;
            }
        })
        { IsBackground = true };
        thread.Start();
        if (!thread.Join(timeout ?? CaseTimeout))
        {
            cts.Cancel(); // let the runaway thread end eventually
            Assert.Fail($"template did not finish within {(timeout ?? CaseTimeout).TotalSeconds} s: {Preview(template)}");
        }
        return (result, error, sw.Elapsed);
    }

    private static string Preview(string template) => template.Length <= 120 ? template : template[..120] + $"… ({template.Length} chars)";

    private TemplateException ExpectError(string template, string errorType, string messagePart, TemplateLimits? limits = null,
        IReadOnlyDictionary<string, object?>? vars = null)
    {
        var (result, error, elapsed) = RunIsolated(template, limits, vars);
        output.WriteLine($"{elapsed.TotalMilliseconds,8:F0} ms  {Preview(template)}\n          -> {error?.GetType().Name}: {error?.Message}");
        Assert.True(error != null, $"expected {errorType}, rendered {result?.Length} chars");
        var ex = Assert.IsType<TemplateException>(error);
        Assert.Equal(errorType, ex.ErrorType);
        Assert.Contains(messagePart, ex.RawMessage, StringComparison.Ordinal);
        Assert.Null(ex.InnerException);
        return ex;
    }

    private string ExpectSuccess(string template, TemplateLimits? limits = null, IReadOnlyDictionary<string, object?>? vars = null)
    {
        var (result, error, elapsed) = RunIsolated(template, limits, vars);
        output.WriteLine($"{elapsed.TotalMilliseconds,8:F0} ms  {Preview(template)} -> {(error == null ? $"{result!.Length} chars" : error.Message)}");
        Assert.Null(error);
        return result!;
    }

    private const string TooDeep = "template nesting too deep: more than 200 levels (TemplateLimits.MaxNestingDepth)";

    // ------------------------------------------------------------------ 1. parser nesting

    public static TheoryData<string, string> DeepTemplates()
    {
        const int n = 100_000;
        return new TheoryData<string, string>
        {
            { "parentheses", "{{ " + new string('(', n) + "1" + new string(')', n) + " }}" },
            { "lists", "{{ " + new string('[', n) + "1" + new string(']', n) + " }}" },
            { "dicts", "{{ " + Repeat("{'a': ", n) + "1" + new string('}', n) + " }}" },
            { "if blocks", Repeat("{% if true %}", n) + "x" + Repeat("{% endif %}", n) },
            { "for blocks", Repeat("{% for i in [1] %}", n) + "x" + Repeat("{% endfor %}", n) },
            { "macro blocks", Repeat("{% macro m() %}", n) + Repeat("{% endmacro %}", n) },
            { "plus chain", "{{ 1" + Repeat("+1", n) + " }}" },
            { "and chain", "{{ 1" + Repeat(" and 1", n) + " }}" },
            { "power chain", "{{ 1" + Repeat("**1", n) + " }}" },
            { "attribute chain", "{{ a" + Repeat(".b", n) + " }}" },
            { "subscript chain", "{{ a" + Repeat("[0]", n) + " }}" },
            { "call chain", "{{ a" + Repeat("()", n) + " }}" },
            { "nested subscripts", "{{ " + Repeat("a[", n) + "0" + new string(']', n) + " }}" },
            { "nested calls", "{{ " + Repeat("f(", n) + "1" + new string(')', n) + " }}" },
            { "nested keyword arguments", "{{ " + Repeat("f(x=", n) + "1" + new string(')', n) + " }}" },
            { "unary minus", "{{ " + Repeat("- ", n) + "1 }}" },
            { "unary plus", "{{ " + Repeat("+", n) + "1 }}" },
            { "not chain", "{{ " + Repeat("not ", n) + "1 }}" },
            { "filter chain", "{{ 1" + Repeat("|string", n) + " }}" },
            { "filter arguments", "{{ " + Repeat("1|default(", n) + "1" + new string(')', n) + " }}" },
            { "ternary else chain", "{{ " + Repeat("1 if x else ", n) + "1 }}" },
            { "ternary if chain", "{{ 1" + Repeat(" if x", n) + " }}" },
            { "filter block chain", "{% filter upper" + Repeat("|upper", n) + " %}x{% endfilter %}" },
            { "set block filter chain", "{% set x | upper" + Repeat("|upper", n) + " %}x{% endset %}" },
            { "tuple nesting", "{% for " + new string('(', n) + "a" + new string(')', n) + " in [1] %}{% endfor %}" },
            { "slice arguments", "{{ x[" + Repeat("x[1:", n) + "1" + new string(']', n) + ":] }}" },
        };
    }

    [Theory]
    [MemberData(nameof(DeepTemplates))]
    public void DeepNestingIsASyntaxError(string name, string template)
    {
        var ex = ExpectError(template, "TemplateSyntaxError", "template nesting too deep");
        Assert.Equal(TooDeep, ex.RawMessage);
        Assert.Equal(1, ex.Line);
        output.WriteLine(name);
    }

    [Fact]
    public void NestingErrorsReportTheLine()
    {
        var ex = ExpectError("a\nb\n{{ " + new string('(', 1000) + "1" + new string(')', 1000) + " }}", "TemplateSyntaxError", "nesting too deep");
        Assert.Equal(3, ex.Line);
        ex = ExpectError("a\n\n\n{{ x" + Repeat("\n+ 1", 1000) + " }}", "TemplateSyntaxError", "nesting too deep");
        Assert.Equal(4, ex.Line);
    }

    public static TheoryData<string, string, string> NestingJustUnderTheLimit()
    {
        const int n = 190;
        return new TheoryData<string, string, string>
        {
            { "parentheses", "{{ " + new string('(', n) + "1" + new string(')', n) + " }}", "1" },
            { "lists", "{{ " + new string('[', n) + "1" + new string(']', n) + "|length }}", "1" },
            { "if blocks", Repeat("{% if true %}", n) + "x" + Repeat("{% endif %}", n), "x" },
            { "for blocks", Repeat("{% for i in [1] %}", n) + "x" + Repeat("{% endfor %}", n), "x" },
            { "plus chain", "{{ 1" + Repeat("+1", n) + " }}", (n + 1).ToString(System.Globalization.CultureInfo.InvariantCulture) },
            { "filter chain", "{{ 1" + Repeat("|string", n) + " }}", "1" },
            { "unary minus", "{{ " + Repeat("- ", n) + "1 }}", "1" },
            { "ternary else chain", "{{ " + Repeat("0 if false else ", n) + "1 }}", "1" },
        };
    }

    [Theory]
    [MemberData(nameof(NestingJustUnderTheLimit))]
    public void NestingUnderTheLimitRendersOnADefaultStack(string name, string template, string expected)
    {
        Assert.Equal(expected, ExpectSuccess(template));
        output.WriteLine(name);
    }

    [Fact]
    public void NestingLimitCanBeRaised()
    {
        string template = "{{ " + new string('(', 300) + "1" + new string(')', 300) + " }}";
        ExpectError(template, "TemplateSyntaxError", "more than 200 levels");
        Assert.Equal("1", ExpectSuccess(template, new TemplateLimits { MaxNestingDepth = 400 }));
        var raised = ChatTemplate.Parse("{{ 1 }}").WithLimits(new TemplateLimits { MaxNestingDepth = 400 });
        Assert.Equal(400, raised.Limits.MaxNestingDepth);
        Assert.Throws<ArgumentOutOfRangeException>(() => ChatTemplate.Parse("x", new TemplateLimits { MaxSteps = 0 }));
    }

    [Fact]
    public void ASmallStackFailsCleanly()
    {
        // Whatever the limits, the engine stops before the thread's stack runs out.
        var limits = new TemplateLimits { MaxNestingDepth = 1_000_000, MaxRecursionDepth = 1_000_000 };
        string[] templates =
        [
            "{{ " + new string('(', 50_000) + "1" + new string(')', 50_000) + " }}",
            "{{ 1" + Repeat("+1", 50_000) + " }}",
            Repeat("{% if true %}", 20_000) + "x" + Repeat("{% endif %}", 20_000),
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
            "{% for m in [1] recursive %}{{ loop([1]) }}{% endfor %}",
        ];
        foreach (var template in templates)
        {
            Exception? error = null;
            var thread = new Thread(() =>
            {
                try
                {
                    ChatTemplate.Parse(template, limits).RenderVariables([]);
                }
                catch (Exception e)
                {
                    error = e;
                }
            }, 256 * 1024);
            thread.Start();
            Assert.True(thread.Join(CaseTimeout));
            var ex = Assert.IsType<TemplateException>(error);
            output.WriteLine($"{Preview(template)} -> {ex.Message}");
            Assert.True(ex.ErrorType is "RecursionError" or "TemplateSyntaxError", ex.Message);
            Assert.Contains("thread's stack", ex.RawMessage, StringComparison.Ordinal);
        }
    }

    // ------------------------------------------------------------------ 2. recursion and self-reference

    [Fact]
    public void InfiniteRecursiveLoopIsARecursionError()
    {
        var ex = ExpectError("{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}", "RecursionError",
            "maximum recursion depth exceeded (more than 100 nested macro, caller or recursive loop calls; TemplateLimits.MaxRecursionDepth)",
            vars: new Dictionary<string, object?> { ["messages"] = JsonNode.Parse("""[{"role": "user"}]""") });
        Assert.Equal(1, ex.Line);
    }

    [Theory]
    [InlineData("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")]
    [InlineData("{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}")]
    [InlineData("{% macro m() %}{{ caller() }}{% endmacro %}{% macro r() %}{% call m() %}{{ r() }}{% endcall %}{% endmacro %}{{ r() }}")]
    [InlineData("{% macro f(n) %}{{ f(n + 1)|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string|string }}{% endmacro %}{{ f(0) }}")]
    public void InfiniteMacroRecursionIsARecursionError(string template) =>
        ExpectError(template, "RecursionError", "maximum recursion depth exceeded");

    [Fact]
    public void DeepRecursionWithDeepExpressionsStopsBeforeTheStackEnds()
    {
        // 100 macro levels of a 190-deep expression each: the stack guard answers, not a crash.
        string deep = "f(n - 1)" + Repeat("|string", 190);
        var (_, error, _) = RunIsolated("{% macro f(n) %}{% if n > 0 %}{{ " + deep + " }}{% endif %}{% endmacro %}{{ f(99) }}");
        if (error != null)
        {
            var ex = Assert.IsType<TemplateException>(error);
            Assert.Equal("RecursionError", ex.ErrorType);
        }
    }

    [Fact]
    public void RecursiveLoopsAndMacrosWithinTheLimitStillWork()
    {
        var tree = JsonNode.Parse("""[{"n": "a", "c": [{"n": "b", "c": [{"n": "c", "c": []}]}]}]""");
        Assert.Equal("a(b(c()))", ExpectSuccess("{% for x in tree recursive %}{{ x.n }}({{ loop(x.c) }}){% endfor %}",
            vars: new Dictionary<string, object?> { ["tree"] = tree }));
        Assert.Equal("99", ExpectSuccess("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% else %}99{% endif %}{% endmacro %}{{ f(99) }}"));
        ExpectError("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(100) }}", "RecursionError", "more than 100");
        Assert.Equal("", ExpectSuccess("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(150) }}",
            new TemplateLimits { MaxRecursionDepth = 200 }));
    }

    [Theory]
    [InlineData("{% set ns = namespace(a=1) %}{% set ns.a = ns %}{{ ns }}", "<Namespace {'a': <Namespace {...}>}>")]
    [InlineData("{% set ns = namespace(a=1) %}{% set ns.a = ns %}{{ ns|string }}|{{ ns|pprint }}", "<Namespace {'a': <Namespace {...}>}>|<Namespace {'a': <Namespace {...}>}>")]
    [InlineData("{% set ns = namespace(a=1) %}{% set ns.l = [ns] %}{{ ns.l }}", "[<Namespace {'a': 1, 'l': [...]}>]")]
    [InlineData("{% set ns = namespace() %}{% set d = {'n': ns} %}{% set ns.d = d %}{{ d }}", "{'n': <Namespace {'d': {...}}>}")]
    [InlineData("{% set ns = namespace() %}{% set ns.t = (ns, ns) %}{{ ns }}", "<Namespace {'t': (<Namespace {...}>, <Namespace {...}>)}>")]
    [InlineData("{% set ns = namespace() %}{% set ns.a = ns %}{{ ns == ns.a }}{{ ns in [ns.a] }}", "TrueTrue")]
    public void SelfReferencingValuesPrintLikePython(string template, string expected) =>
        Assert.Equal(expected, ExpectSuccess(template));

    [Theory]
    [InlineData("{% set ns = namespace() %}{% set ns.a = ns %}{{ ns|tojson }}", "TypeError", "Object of type Namespace is not JSON serializable")]
    [InlineData("{% set ns = namespace() %}{% set ns.l = [ns] %}{{ ns.l|tojson }}", "TypeError", "Object of type Namespace is not JSON serializable")]
    public void SelfReferencingValuesInToJson(string template, string type, string message) =>
        ExpectError(template, type, message);

    private const string DeepList = "{% set ns = namespace(x=[], y=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% set ns.y = [ns.y] %}{% endfor %}";

    [Theory]
    [InlineData(DeepList + "{{ ns.x }}", "maximum recursion depth exceeded while getting the repr of an object")]
    [InlineData(DeepList + "{{ ns.x|string }}", "maximum recursion depth exceeded while getting the repr of an object")]
    [InlineData(DeepList + "{{ ns.x|pprint }}", "maximum recursion depth exceeded while getting the repr of an object")]
    [InlineData(DeepList + "{{ ns.x|tojson }}", "maximum recursion depth exceeded while encoding a JSON object")]
    [InlineData(DeepList + "{{ ns.x == ns.y }}", "maximum recursion depth exceeded in comparison")]
    [InlineData(DeepList + "{{ [ns.x, 1] < [ns.y, 2] }}", "maximum recursion depth exceeded in comparison")]
    [InlineData(DeepList + "{{ ns.x in [ns.y] }}", "maximum recursion depth exceeded in comparison")]
    public void DeeplyNestedValuesAreRecursionErrors(string template, string message) =>
        ExpectError(template, "RecursionError", message);

    [Fact]
    public void DeeplyNestedTupleKeysDoNotOverflowTheStack()
    {
        // Python: deep tuples hash recursively (RecursionError); here hashing stops after a few levels and
        // equality is guarded. Either way: no crash.
        var (_, error, _) = RunIsolated("{% set ns = namespace(x=()) %}{% for i in range(5000) %}{% set ns.x = (ns.x,) %}{% endfor %}{{ {ns.x: 1, (ns.x,): 2}|length }}");
        Assert.True(error == null || error is TemplateException { ErrorType: "RecursionError" }, error?.ToString());
    }

    [Fact]
    public void CyclicOrDeepInputValuesAreArgumentErrors()
    {
        var cyclic = new List<object?>();
        cyclic.Add(cyclic);
        var ex = Assert.Throws<ArgumentException>(() => ChatTemplate.Parse("{{ x }}").RenderVariables(new Dictionary<string, object?> { ["x"] = cyclic }));
        Assert.Contains("'x' contains itself", ex.Message, StringComparison.Ordinal);

        var deep = new JsonArray();
        var cur = deep;
        for (int i = 0; i < 2000; i++)
        {
            var next = new JsonArray();
            cur.Add(next);
            cur = next;
        }
        ex = Assert.Throws<ArgumentException>(() => ChatTemplate.Parse("{{ messages }}").Render(deep));
        Assert.Contains("'messages' is nested deeper than 1000 levels", ex.Message, StringComparison.Ordinal);
    }

    // ------------------------------------------------------------------ 3. memory

    public static TheoryData<string, string, string> HugeValues() => new()
    {
        { "{{ 'a' * 10**10 }}", "OverflowError", "repeated string too long: 10000000000 characters, more than TemplateLimits.MaxStringLength (16777216)" },
        { "{{ 'a' * 10**30 }}", "OverflowError", "cannot fit 'int' into an index-sized integer" },
        { "{{ [1] * 10**9 }}", "OverflowError", "repeated list too long: 1000000000 items" },
        { "{{ (1, 2) * 10**9 }}", "OverflowError", "repeated tuple too long: 2000000000 items" },
        { "{{ 'x'|center(2147483647) }}", "OverflowError", "centered string too long: 2147483647 characters" },
        { "{{ 'x'|center(10**30) }}", "OverflowError", "Python int too large to convert to C ssize_t" },
        { "{{ 'x'.center(10**10) }}", "OverflowError", "padded string too long" },
        { "{{ 'x'.ljust(10**10) }}", "OverflowError", "padded string too long: 10000000000 characters" },
        { "{{ 'x'.rjust(10**10) }}", "OverflowError", "padded string too long" },
        { "{{ 'x'.zfill(10**9) }}", "OverflowError", "zero-filled string too long: 1000000000 characters" },
        { "{{ 'a\tb'.expandtabs(10**9) }}", "OverflowError", "expanded string too long" },
        { "{{ '{:>1000000000}'.format(1) }}", "OverflowError", "format width too large: 1000000000, more than TemplateLimits.MaxStringLength" },
        { "{{ '{:.1000000000f}'.format(1.5) }}", "OverflowError", "format precision too large" },
        { "{{ '{:>99999999999999999999}'.format(1) }}", "ValueError", "Too many decimal digits in format string" },
        { "{{ '%1000000000d' % 1 }}", "OverflowError", "format width too large: 1000000000" },
        { "{{ '%.1000000000f' % 1.5 }}", "OverflowError", "format precision too large" },
        { "{{ '%99999999999999999999d' % 1 }}", "ValueError", "width too big" },
        { "{{ '%*d' % (10**9, 1) }}", "OverflowError", "format width too large" },
        { "{{ '%s'|format('x' * 10**7) * 2 }}", "OverflowError", "repeated string too long: 20000000 characters" },
        { "{{ 'x'|indent(10**9) }}", "OverflowError", "format indent width too large: 1000000000" },
        { "{{ ('x\n' * 1000000)|indent(100) }}", "OverflowError", "indented string too long" },
        { "{{ [1]|tojson(indent=10**9) }}", "OverflowError", "format indent too large" },
        { "{{ [[[[[[[[[[1]]]]]]]]]]|tojson(indent=1000000) }}", "OverflowError", "JSON text too long" },
        { "{{ ([1] * 100000)|tojson(separators=('x' * 1000, ':')) }}", "OverflowError", "JSON text too long" },
        { "{{ range(10**9) }}", "OverflowError", "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000)." },
        { "{{ range(10**30) }}", "OverflowError", "Python int too large to convert to C ssize_t" },
        { "{{ range(-2**63, 2**63-1) }}", "OverflowError", "Range too big" },
        { "{{ ('ab' * 1000).replace('', 'x' * 10**6) }}", "OverflowError", "replaced string too long: 2001002000 characters" },
        { "{{ ('ab' * 10**6)|replace('a', 'x' * 1000) }}", "OverflowError", "replaced string too long" },
        { "{% set ns = namespace(s='ab') %}{% for i in range(100000) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "OverflowError", "concatenated string too long" },
        { "{% set ns = namespace(s='ab') %}{% for i in range(100000) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "OverflowError", "concatenated string too long" },
        { "{% set ns = namespace(l=[1]) %}{% for i in range(100000) %}{% set ns.l = ns.l + ns.l %}{% endfor %}", "OverflowError", "concatenated list too long" },
        { "{{ (['x' * 1000000] * 100)|join }}", "OverflowError", "joined string too long: 100000000 characters" },
        { "{{ ''.join(['x' * 1000000] * 100) }}", "OverflowError", "joined string too long" },
        { "{{ (['x' * 1000000] * 100)|string }}", "OverflowError", "repr of a value too long" },
        { "{{ (['x' * 1000000] * 100)|sum(start='') }}", "TypeError", "sum() can't sum strings [use ''.join(seq) instead]" },
        { "{% for i in range(100) %}{{ 'x' * 1000000 }}{% endfor %}", "OverflowError", "rendered output too long: 17000000 characters, more than TemplateLimits.MaxOutputLength (16777216)" },
        { "{% set x %}{% for i in range(100) %}{{ 'x' * 1000000 }}{% endfor %}{% endset %}", "OverflowError", "captured output (macro, call, filter or set block) too long" },
        { "{% macro m() %}{% for i in range(100) %}{{ 'x' * 1000000 }}{% endfor %}{% endmacro %}{{ m()|length }}", "OverflowError", "captured output" },
        { "{% for i in range(1000) %}{% set x = 'x' * 10000000 %}{% endfor %}", "OverflowError", "template built more than 268435456 characters and items of strings and sequences in total (TemplateLimits.MaxAllocatedLength)" },
        { "{% set big = 'x' * 10000000 %}{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = ns.l + [big ~ i] %}{% endfor %}", "OverflowError", "TemplateLimits.MaxAllocatedLength" },
        { "{{ (1,)|batch(10**9, 0) }}", "OverflowError", "batch too long: 1000000000 items" },
        { "{{ [1]|slice(10**9) }}", "OverflowError", "list of slices too long" },
        { "{{ 10**5000 }}", "ValueError", "Exceeds the limit (4300 digits) for integer string conversion; use sys.set_int_max_str_digits() to increase the limit" },
        { "{{ 1" + new string('0', 5000) + " }}", "ValueError", "Exceeds the limit (4300 digits) for integer string conversion: value has 5001 digits" },
        { "{{ 2 ** (10**10) }}", "OverflowError", "integer too large" },
        { "{{ 2 ** 10 ** 10000 }}", "OverflowError", "integer too large" },
        { "{{ 3 ** 100000 }}", "OverflowError", "integer too large" },
        { "{% set ns = namespace(x=3) %}{% for i in range(100) %}{% set ns.x = ns.x * ns.x %}{% endfor %}", "OverflowError", "integer too large" },
        { "{{ '%c' % 10**30 }}", "OverflowError", "%c arg not in range(0x110000)" },
        { "{{ '%c' % -1 }}", "OverflowError", "%c arg not in range(0x110000)" },
    };

    [Theory]
    [MemberData(nameof(HugeValues))]
    public void HugeValuesAreBounded(string template, string type, string message) => ExpectError(template, type, message);

    [Fact]
    public void OrdinaryValuesNearTheOldLimitsStillWork()
    {
        Assert.Equal("1000000", ExpectSuccess("{{ ('x' * 1000000)|length }}"));
        Assert.Equal("3", ExpectSuccess("{{ 'ab'.replace('', 'x' * 10**6)|length // 1000000 }}"));
        Assert.Equal("100000", ExpectSuccess("{{ range(100000)|list|unique|list|length }}"));
        Assert.Equal("  x  |x    |    x|0000x", ExpectSuccess("{{ 'x'.center(5) }}|{{ 'x'.ljust(5) }}|{{ 'x'.rjust(5) }}|{{ 'x'.zfill(5) }}"));
        Assert.Equal("   42|1.50|1    ", ExpectSuccess("{{ '{:>5}'.format(42) }}|{{ '%.*f' % (2, 1.5) }}|{{ '%*d' % (-5, 1) }}"));
        Assert.Equal("340282366920938463463374607431768211456", ExpectSuccess("{{ 2 ** 128 }}"));
        Assert.Equal("16777216", ExpectSuccess("{{ ('x' * 16777216)|length }}"));
        Assert.Equal("[]|()|", ExpectSuccess("{{ [] * 10**18 }}|{{ () * 10**18 }}|{{ '' * 10**18 }}"));
    }

    [Fact]
    public void StringLimitsCanBeChanged()
    {
        ExpectError("{{ 'x' * 1001 }}", "OverflowError", "more than TemplateLimits.MaxStringLength (1000)", new TemplateLimits { MaxStringLength = 1000 });
        ExpectError("{% for i in range(11) %}{{ 'x' * 100 }}{% endfor %}", "OverflowError", "TemplateLimits.MaxOutputLength (1000)", new TemplateLimits { MaxOutputLength = 1000 });
        Assert.Equal(20_000_000, ExpectSuccess("{{ 'x' * 20000000 }}", new TemplateLimits { MaxStringLength = 30_000_000, MaxOutputLength = 30_000_000 }).Length);
    }

    // ------------------------------------------------------------------ 4. time

    [Fact]
    public void RunawayLoopsEndWithinSeconds()
    {
        var sw = Stopwatch.StartNew();
        ExpectError("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", "TimeoutError",
            "template render exceeded 10000000 steps (TemplateLimits.MaxSteps)");
        output.WriteLine($"nested loops stopped after {sw.Elapsed.TotalSeconds:F2} s");
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(15), sw.Elapsed.ToString());
    }

    [Theory]
    [InlineData("{% set big = range(100000)|list %}{% for i in range(100000) %}{% if -1 in big %}{% endif %}{% endfor %}")]
    [InlineData("{% set big = range(100000)|list %}{% for i in range(100000) %}{{ big|sum }}{% endfor %}")]
    [InlineData("{% set big = range(100000)|list %}{% for i in range(100000) %}{{ big.count(-1) }}{% endfor %}")]
    [InlineData("{% set s = 'x' * 10000000 %}{% for i in range(100000) %}{{ s.find('y') }}{% endfor %}")]
    [InlineData("{% set big = range(100000)|list %}{% for i in range(100000) %}{{ big == big[:] }}{% endfor %}")]
    [InlineData("{% set big = range(100000)|map('string')|list %}{% for i in range(100000) %}{{ big|length }}{{ big|first }}{{ big|max }}{% endfor %}")]
    [InlineData("{% set ns = namespace(x=7 ** 4000) %}{% for i in range(100000) %}{% set y = ns.x * ns.x %}{% endfor %}")]
    public void HiddenQuadraticWorkIsCounted(string template) =>
        ExpectError(template, "TimeoutError", "TemplateLimits.MaxSteps");

    [Fact]
    public void StepBudgetCanBeChanged()
    {
        ExpectError("{% for i in range(1000) %}{% endfor %}", "TimeoutError", "exceeded 100 steps", new TemplateLimits { MaxSteps = 100 });
        ExpectSuccess("{% for a in range(2000) %}{% for b in range(6000) %}{% endfor %}{% endfor %}", new TemplateLimits { MaxSteps = 100_000_000 });
    }

    [Fact]
    public void RenderObservesCancellation()
    {
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var t = ChatTemplate.Parse("{% for a in range(100000) %}{% endfor %}");
        Assert.ThrowsAny<OperationCanceledException>(() => t.RenderVariables([], cts.Token));
        Assert.ThrowsAny<OperationCanceledException>(() => t.Render(JsonNode.Parse("[]"), cancellationToken: cts.Token));

        using var later = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        var endless = ChatTemplate.Parse("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
            new TemplateLimits { MaxSteps = long.MaxValue });
        var sw = Stopwatch.StartNew();
        Assert.ThrowsAny<OperationCanceledException>(() => endless.RenderVariables([], later.Token));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10), sw.Elapsed.ToString());
    }

    [Fact]
    public void RealTemplatesRenderALongConversationWellInsideTheBudgets()
    {
        var messages = new JsonArray { new JsonObject { ["role"] = "system", ["content"] = "You are a helpful assistant." } };
        for (int i = 0; i < 1000; i++)
        {
            messages.Add(new JsonObject { ["role"] = "user", ["content"] = $"Question {i}: " + new string('q', 200) });
            messages.Add(new JsonObject { ["role"] = "assistant", ["content"] = $"Answer {i}: " + new string('a', 400) });
        }
        messages.Add(new JsonObject { ["role"] = "user", ["content"] = "Last question" });
        int rendered = 0;
        foreach (var folder in ChatTemplateFixtureTests.FixtureFolders())
        {
            var source = File.ReadAllText(Path.Combine(folder, "template.jinja"));
            var template = JinjaTemplate.Parse(source);
            var ctx = new RenderContext(TemplateLimits.Default, CancellationToken.None);
            var vars = new List<KeyValuePair<string, object?>>
            {
                new("messages", TemplateValues.FromNode(messages)),
                new("tools", null),
                new("documents", null),
                new("add_generation_prompt", true),
                new("bos_token", "<|startoftext|>"),
                new("eos_token", "<|endoftext|>"),
            };
            var sw = Stopwatch.StartNew();
            string text = template.Render(vars, () => new DateTime(2024, 1, 1), ctx);
            output.WriteLine($"{Path.GetFileName(folder)}: 2001 messages -> {text.Length} chars in {sw.ElapsedMilliseconds} ms, " +
                $"{ctx.Steps} steps ({100.0 * ctx.Steps / TemplateLimits.DefaultMaxSteps:F2}% of MaxSteps), " +
                $"{ctx.Allocated} chars built ({100.0 * ctx.Allocated / TemplateLimits.DefaultMaxAllocatedLength:F2}% of MaxAllocatedLength)");
            Assert.True(ctx.Steps < TemplateLimits.DefaultMaxSteps / 10, $"{ctx.Steps} steps");
            Assert.True(ctx.Allocated < TemplateLimits.DefaultMaxAllocatedLength / 10, $"{ctx.Allocated} chars");
            rendered++;
        }
        Assert.True(rendered > 0);
    }

    [Fact]
    public void DefaultsAreDocumentedConstants()
    {
        var d = TemplateLimits.Default;
        Assert.Equal(TemplateLimits.DefaultMaxNestingDepth, d.MaxNestingDepth);
        Assert.Equal(TemplateLimits.DefaultMaxRecursionDepth, d.MaxRecursionDepth);
        Assert.Equal(TemplateLimits.DefaultMaxOutputLength, d.MaxOutputLength);
        Assert.Equal(TemplateLimits.DefaultMaxStringLength, d.MaxStringLength);
        Assert.Equal(TemplateLimits.DefaultMaxAllocatedLength, d.MaxAllocatedLength);
        Assert.Equal(TemplateLimits.DefaultMaxSteps, d.MaxSteps);
        Assert.Same(TemplateLimits.Default, ChatTemplate.Parse("x").Limits);
    }
}
