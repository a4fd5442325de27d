using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Jamba.Inference.Templates;
using Xunit;
using Xunit.Abstractions;

namespace Jamba.Inference.Tests.Templates;

/// <summary>
/// Deterministic mutation fuzzing of the real chat templates (every fixture folder, including
/// <c>JAMBA_EXTRA_FIXTURES</c> roots): seeded random edits (deleted, duplicated, inserted and swapped text,
/// template tokens, huge numbers, deep nesting), each parsed and rendered with a fixture case's inputs.
/// Every case must end as a success or a <see cref="TemplateException"/> without an inner framework exception,
/// within a per-case time limit. Anything else — NullReferenceException, InvalidCastException,
/// IndexOutOfRangeException, KeyNotFoundException, ArgumentException, FormatException, OutOfMemoryException, a
/// "generic framework message" wrapped in a TemplateException, a hang, or a crash of the test process — is a bug
/// in the engine.
/// </summary>
public sealed class TemplateFuzzTests(ITestOutputHelper output)
{
    // JAMBA_FUZZ_CASES / JAMBA_FUZZ_SEED override the count and the seed for longer local runs.
    private static readonly int Seed = int.TryParse(Environment.GetEnvironmentVariable("JAMBA_FUZZ_SEED"), out var s) ? s : 20240615;
    private static readonly int TotalCases = int.TryParse(Environment.GetEnvironmentVariable("JAMBA_FUZZ_CASES"), out var n) ? n : 6000;
    // A mutant normally ends in milliseconds (the fuzz budgets stop runaway ones within about 0.1 s); a case
    // slower than this is reported as a failure (work the budgets do not see), one that never ends as a hang.
    private static readonly TimeSpan PerCaseLimit = TimeSpan.FromSeconds(5);

    // Smaller budgets than the defaults keep thousands of runaway mutants fast; the code paths are the same.
    private static readonly TemplateLimits FuzzLimits = new()
    {
        MaxSteps = 300_000,
        MaxStringLength = 1 << 22,
        MaxOutputLength = 1 << 22,
        MaxAllocatedLength = 1 << 24,
    };

    private static readonly string[] Tokens =
    [
        "{{", "}}", "{%", "%}", "{#", "#}", "{%-", "-%}", "{{-", "-}}", "(", ")", "[", "]", "{", "}", ",", ":", ".", "|", "~",
        "'", "\"", "\\", "-", "+", "*", "/", "//", "%", "**", "=", "==", "!=", "<", ">=", " not ", " and ", " or ", " in ",
        " is ", " if ", " else ", " recursive", "recursive", "* 10**9", "** 10**9", " * 10**10", "10**30", "-1", "0", "1e308",
        "0x", "0b2", "1_000", "1.5", "None", "none", "true", "loop", "loop(messages)", "loop.index", "loop.cycle()",
        "caller()", "varargs", "kwargs", "namespace(a=1)", "range(10**9)", "range(100000)", "messages", "message",
        "message['content']", "messages[0]", "messages[-1]", "tools", "documents", "|tojson", "|tojson(indent=10**9)",
        "|center(10**9)", "|indent(10**9)", "|join", "|list", "|string", "|pprint", "|length", "|first", "|last",
        "|unique", "|sort", "|reverse", "|batch(0)", "|slice(0)", "|batch(10**9, 0)", "|map('upper')", "|select",
        "|selectattr('role')", "|default", "|int", "|float", "|round(10**9)", "|truncate(-1)", "|format(1)",
        "|replace('', 'x' * 10**6)", "|wordcount", "|title", "|trim", "|items", "|dictsort", "|sum", "|max", "|min",
        "|attr('x')", "|abs", "|urlencode", "|striptags", "|escape", "'%1000000000d' % 1", "'%c' % -1",
        "'{:>1000000000}'.format(1)", "'{!}'.format(1)", "'{0[}'.format(1)", "'{:{:{:}}}'.format(1)", "'x'.zfill(10**9)",
        "'x'.ljust(10**10)", ".split()", ".strip()", ".startswith", ".format(", ".items()", ".get('x')", ".append(1)",
        "__class__", "__globals__", "raise_exception('x')", "strftime_now('%Y')", "cycler()", "joiner()",
        "{% for m in messages recursive %}", "{{ loop(messages) }}", "{% endfor %}", "{% endif %}", "{% else %}",
        "{% elif x %}", "{% set ns = namespace(a=1) %}", "{% set ns.a = ns %}{{ ns }}", "{% set x = x ~ x %}",
        "{% macro m(a, b=1) %}{{ m(a) }}{% endmacro %}{{ m(1) }}", "{% call m() %}x{% endcall %}", "{% break %}",
        "{% continue %}", "{% raw %}", "{% endraw %}", "{% filter upper %}", "{% endfilter %}", "{% with a = 1 %}",
        "{% endwith %}", "{% generation %}", "{% endgeneration %}", "{% set x %}", "{% endset %}", "{% include 'x' %}",
        "\u00e9", "\u0000", "\ud83d\ude00", "\ud83d", "\u2028", "\t", "\n", "\r\n", " ",
    ];

    // Expression rewrites: {0} is an expression of the template (the inside of a {{ ... }} tag).
    private static readonly string[] Rewrites =
    [
        "{0}|tojson", "{0}|tojson(indent=2)", "{0}|string", "{0}|pprint", "{0}|list", "{0}|length", "{0}|first", "{0}|last",
        "{0}|join(', ')", "{0}|sort", "{0}|unique|list", "{0}|reverse|list", "{0}|batch(2)|list", "{0}|slice(3)|list",
        "{0}|map('string')|list", "{0}|select|list", "{0}|selectattr('role')|list", "{0}|rejectattr('content')|list",
        "{0}|items|list", "{0}|dictsort", "{0}|sum", "{0}|max", "{0}|min", "{0}|int", "{0}|float", "{0}|abs", "{0}|round",
        "{0}|trim", "{0}|title", "{0}|capitalize", "{0}|upper", "{0}|wordcount", "{0}|truncate(5)", "{0}|center(9)",
        "{0}|indent(2)", "{0}|replace('a', 'b')", "{0}|urlencode", "{0}|escape", "{0}|striptags", "{0}|attr('role')",
        "{0}|format(1)", "{0}|default(1)", "{0}|count", "{0}|e", "({0})[0]", "({0})[-1]", "({0})[1:]", "({0})[::-1]",
        "({0})['content']", "({0}).content", "({0}).items()", "({0}).keys()", "({0}).get('role')", "({0}).split()",
        "({0}).strip()", "({0}).upper()", "({0}).format(1)", "({0}).startswith('a')", "({0}).count('a')",
        "({0}).replace('', '-')", "({0}).center(99)", "({0}).zfill(9)", "({0}).splitlines()", "'%s %d' % ({0})",
        "'%s' % ({0},)", "'{{}}{{0}}'.format({0})", "({0}) ~ ({0})", "({0}) + ({0})", "({0}) * 3", "({0}) * 10**9",
        "({0}) * -1", "({0}) - 1", "({0}) / 0", "({0}) // 0", "({0}) % 0", "({0}) ** 3", "-({0})", "not ({0})",
        "({0}) == ({0})", "({0}) < ({0})", "({0}) in ({0})", "({0}) is defined", "({0}) is string", "({0}) is mapping",
        "({0}) is divisibleby 0", "({0}) if ({0}) else ({0})", "[{0}] * 1000", "[{0}, [{0}]]", "{{'k': {0}}}",
        "({0},)", "dict(a={0})", "namespace(a={0})", "range({0})", "range({0})|list", "cycler({0}).next()",
        "joiner({0})()", "raise_exception({0})", "strftime_now({0})", "loop.cycle({0})", "({0})()", "({0})(1, x=2)",
        "({0})|map(attribute='content')|list", "({0})|groupby('role')", "({0}).__class__", "'%(a)s %%' % ({0})",
        "({0})|batch(-1)|list", "({0})|slice(-1)|list", "({0})|sort(attribute='role')", "({0})|unique(attribute='x')|list",
        "({0})|join(attribute='role')", "({0})|sum(attribute='x')", "({0})|max(attribute='role')", "({0})|int(base=1)",
        "({0})|int(base=99)", "({0})|round(2, 'floor')", "({0})|round(-3)", "({0})|truncate(0)", "({0})|indent('>>')",
        "({0})|tojson(separators=[1, 2])", "({0})|tojson(sort_keys=true)", "({0})|dictsort(by='value')",
        "({0})[10**30]", "({0})[:10**30:10**30]", "({0})[::0]", "({0}).index('zz')", "({0}).partition('')",
        "({0}).rsplit(none, 2)", "({0}).split('', 1)", "({0}).expandtabs(-1)", "({0}).ljust(5, 'ab')", "({0}).center(5, 1)",
        "({0}).encode()", "({0}).translate({{}})", "({0}).format_map({{'a': 1}})", "'{{0.x}}{{0[0]}}{{0!r:>9}}'.format({0})",
        "'{{:+,.3f}}|{{:x}}|{{:%}}|{{:=^9}}'.format({0}, {0}, {0}, {0})", "'%-5.2s|%+05d|%x|%e|%g|%r' % ({0}, {0}, {0}, {0}, {0}, {0})",
        "({0}) is sameas ({0})", "({0}) is in ({0})", "({0}) is test", "({0}) is filter", "({0}) is lower", "({0}) is odd",
    ];

    // Whole statements inserted between two tags.
    private static readonly string[] Statements =
    [
        "{% set ns9 = namespace(a=messages) %}{% set ns9.a = ns9 %}{{ ns9 }}{{ ns9|string|length }}",
        "{% set ns9 = namespace(l=[]) %}{% set ns9.l = [ns9] %}{{ ns9.l }}{{ ns9.l|tojson }}",
        "{% for x in messages recursive %}{{ loop(messages) }}{% endfor %}",
        "{% for x in messages recursive %}{{ x.role }}{% if x.content is iterable %}{{ loop(x.content) }}{% endif %}{% endfor %}",
        "{% macro rr(n) %}{{ rr(n) }}{% endmacro %}{{ rr(1) }}",
        "{% macro rr(n) %}{% if n %}{{ rr(n - 1) }}{% endif %}{% endmacro %}{{ rr(50) }}",
        "{% set ns9 = namespace(s='ab') %}{% for i in range(100) %}{% set ns9.s = ns9.s ~ ns9.s %}{% endfor %}",
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "{{ messages|tojson(indent=10**9) }}", "{{ messages * 10**9 }}", "{{ (messages|string) * 10**6 }}",
        "{{ messages|map(attribute='content')|join * 10**7 }}", "{{ messages|batch(10**9, 0)|list }}",
        "{{ '%1000000000d' % 1 }}", "{{ '{:>1000000000}'.format(1) }}", "{{ 10**5000 }}", "{{ 2 ** (10**10) }}",
        "{% set x = messages %}{% for i in range(30) %}{% set x = [x, x] %}{% endfor %}{{ x|length }}{{ x|tojson|length }}",
        "{% set ns9 = namespace(x=[]) %}{% for i in range(3000) %}{% set ns9.x = [ns9.x] %}{% endfor %}{{ ns9.x }}",
        "{% set ns9 = namespace(x=()) %}{% for i in range(3000) %}{% set ns9.x = (ns9.x,) %}{% endfor %}{{ {ns9.x: 1} }}",
        "{% macro mm() %}{{ caller(1) }}{{ varargs }}{% endmacro %}{% call(a) mm(1, 2) %}{{ a }}{% endcall %}",
        "{% macro mm(a, b=messages) %}{{ b|length }}{{ kwargs }}{% endmacro %}{{ mm(1, 2, 3) }}{{ mm(b=1, c=2) }}{{ mm(*messages, **{'x': 1}) }}", "{% filter tojson %}{{ messages }}{% endfilter %}",
        "{% with m = messages %}{{ m[0] }}{% endwith %}", "{% set c = cycler(1, 2) %}{{ c.next() }}{{ c.current }}",
    ];

    private sealed record Fixture(string Name, string Template, JsonArray Cases);

    private static List<Fixture> LoadFixtures() =>
        ChatTemplateFixtureTests.FixtureFolders()
            .Select(f => new Fixture(Path.GetFileName(f), File.ReadAllText(Path.Combine(f, "template.jinja"), Encoding.UTF8),
                JsonNode.Parse(File.ReadAllText(Path.Combine(f, "cases.json")))!.AsArray()))
            .ToList();

    /// <summary>
    /// Applies one to three seeded random mutations; <paramref name="log"/> describes them. Half of the cases
    /// use only the mutations that tend to keep the template parseable (expression rewrites, inserted
    /// statements), so that the evaluator is exercised as much as the parser.
    /// </summary>
    internal static string Mutate(string src, Random rng, StringBuilder log)
    {
        int count = 1 + rng.Next(3);
        bool semantic = rng.Next(2) == 0;
        log.Append(semantic ? "[semantic] " : "[raw] ");
        for (int m = 0; m < count && src.Length > 0; m++)
        {
            int pos = rng.Next(src.Length + 1);
            int len = Math.Min(src.Length - Math.Min(pos, src.Length), 1 + rng.Next(rng.Next(4) == 0 ? 200 : 12));
            int kind = semantic ? 10 + rng.Next(3) : rng.Next(15);
            switch (kind)
            {
                case 10:
                case 11: // rewrite the expression of a print tag
                    {
                        var tags = System.Text.RegularExpressions.Regex.Matches(src, @"\{\{-?(.*?)-?\}\}", System.Text.RegularExpressions.RegexOptions.Singleline);
                        if (tags.Count == 0) break;
                        var g = tags[rng.Next(tags.Count)].Groups[1];
                        string expr = string.Format(System.Globalization.CultureInfo.InvariantCulture, Rewrites[rng.Next(Rewrites.Length)], g.Value.Trim());
                        src = src[..g.Index] + " " + expr + " " + src[(g.Index + g.Length)..];
                        log.Append($"rewrite@{g.Index} {Json(expr.Length > 80 ? expr[..80] : expr)}; ");
                        break;
                    }
                case 12: // insert a statement after a tag
                    {
                        int end = src.IndexOf("}}", Math.Min(pos, src.Length), StringComparison.Ordinal);
                        int endBlock = src.IndexOf("%}", Math.Min(pos, src.Length), StringComparison.Ordinal);
                        if (end < 0 || (endBlock >= 0 && endBlock < end)) end = endBlock;
                        if (end < 0) break;
                        string stmt = Statements[rng.Next(Statements.Length)];
                        src = src.Insert(end + 2, stmt);
                        log.Append($"statement@{end + 2} {Json(stmt.Length > 60 ? stmt[..60] : stmt)}; ");
                        break;
                    }
                case 13:
                case 14: // insert a token inside a tag
                    {
                        var tags = System.Text.RegularExpressions.Regex.Matches(src, @"\{[{%](.*?)[}%]\}", System.Text.RegularExpressions.RegexOptions.Singleline);
                        if (tags.Count == 0) break;
                        var g = tags[rng.Next(tags.Count)].Groups[1];
                        int at = g.Index + rng.Next(g.Length + 1);
                        string tok = Tokens[rng.Next(Tokens.Length)];
                        src = src.Insert(at, tok);
                        log.Append($"in-tag {Json(tok)}@{at}; ");
                        break;
                    }
                case 0: // delete
                    src = src.Remove(Math.Min(pos, src.Length - len), len);
                    log.Append($"delete {len}@{pos}; ");
                    break;
                case 1: // duplicate
                    {
                        int at = Math.Min(pos, src.Length - len);
                        src = src.Insert(at, src.Substring(at, len));
                        log.Append($"duplicate {len}@{at}; ");
                        break;
                    }
                case 2:
                case 3:
                case 4: // insert a token
                    {
                        string tok = Tokens[rng.Next(Tokens.Length)];
                        src = src.Insert(pos, tok);
                        log.Append($"insert {Json(tok)}@{pos}; ");
                        break;
                    }
                case 5: // swap two chunks
                    {
                        int a = rng.Next(src.Length), b = rng.Next(src.Length);
                        if (a > b) (a, b) = (b, a);
                        int la = Math.Min(1 + rng.Next(40), b - a), lb = Math.Min(1 + rng.Next(40), src.Length - b);
                        if (la <= 0 || lb <= 0) break;
                        string ca = src.Substring(a, la), cb = src.Substring(b, lb);
                        src = src[..a] + cb + src[(a + la)..b] + ca + src[(b + lb)..];
                        log.Append($"swap {la}@{a} {lb}@{b}; ");
                        break;
                    }
                case 6: // repeat a substring many times
                    {
                        int at = Math.Min(pos, src.Length - len);
                        int times = rng.Next(2) == 0 ? 1000 : 2 + rng.Next(50);
                        string piece = src.Substring(at, Math.Min(len, 8));
                        src = src.Insert(at, string.Concat(Enumerable.Repeat(piece, times)));
                        log.Append($"repeat {Json(piece)}x{times}@{at}; ");
                        break;
                    }
                case 7: // nest a piece inside many brackets
                    {
                        string[] open = ["(", "[", "{{ (", "{% if x %}", "- ", "not ", "[1, "];
                        string[] close = [")", "]", ") }}", "{% endif %}", "", "", "]"];
                        int k = rng.Next(open.Length);
                        int times = rng.Next(2) == 0 ? 1000 : 1 + rng.Next(300);
                        src = src.Insert(pos, string.Concat(Enumerable.Repeat(open[k], times)) + "1" + string.Concat(Enumerable.Repeat(close[k], times)));
                        log.Append($"nest {Json(open[k])}x{times}@{pos}; ");
                        break;
                    }
                case 8: // a number becomes huge, negative or zero
                    {
                        int d = src.IndexOfAny("0123456789".ToCharArray(), Math.Min(pos, src.Length - 1));
                        if (d < 0) break;
                        string[] numbers = ["10**9", "-1", "0", "99999999999999999999", "2**63", "1e309", "(10**9)"];
                        string n = numbers[rng.Next(numbers.Length)];
                        src = src[..d] + n + src[(d + 1)..];
                        log.Append($"number {n}@{d}; ");
                        break;
                    }
                default: // truncate or replace one char with a random char
                    if (rng.Next(4) == 0)
                    {
                        src = src[..pos];
                        log.Append($"truncate@{pos}; ");
                    }
                    else if (pos < src.Length)
                    {
                        char c = (char)rng.Next(32, 127);
                        src = src[..pos] + c + src[(pos + 1)..];
                        log.Append($"char {Json(c.ToString())}@{pos}; ");
                    }
                    break;
            }
        }
        return src;
    }

    private static string Json(string s) => System.Text.Json.JsonSerializer.Serialize(s);

    private static string Render(ChatTemplate template, JsonNode c, CancellationToken token)
    {
        var kwargs = new Dictionary<string, JsonNode?>();
        if (c["kwargs"] is JsonObject kw)
            foreach (var kv in kw) kwargs[kv.Key] = kv.Value?.DeepClone();
        return template.Render(c["messages"]?.DeepClone(), c["tools"]?.DeepClone(), c["documents"]?.DeepClone(),
            c["add_generation_prompt"]?.GetValue<bool>() ?? false, c["bos_token"]?.GetValue<string>(), c["eos_token"]?.GetValue<string>(),
            kwargs, token);
    }

    [Fact]
    [Trait("Category", "ChatTemplate")]
    public void MutatedRealTemplatesFailOnlyWithTemplateExceptions()
    {
        var fixtures = LoadFixtures();
        Assert.NotEmpty(fixtures);
        int perFixture = Math.Max(200, TotalCases / fixtures.Count);

        var outcomes = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var failures = new List<string>();
        int done = 0, total = perFixture * fixtures.Count;
        string current = "";
        Exception? workerError = null;
        var slowest = (Ms: 0.0, What: "");
        var sw = Stopwatch.StartNew();

        // All cases run on one thread with the default stack size (a stack overflow would end the test run).
        var worker = new Thread(() =>
        {
            try
            {
                for (int f = 0; f < fixtures.Count; f++)
                {
                    var fx = fixtures[f];
                    var rng = new Random(Seed + f);
                    for (int i = 0; i < perFixture; i++)
                    {
                        var log = new StringBuilder();
                        string mutant = Mutate(fx.Template, rng, log);
                        var c = fx.Cases[rng.Next(fx.Cases.Count)]!;
                        string what = $"{fx.Name} #{i} (seed {Seed + f}): {log}";
                        Volatile.Write(ref current, what);
                        var caseWatch = Stopwatch.StartNew();
                        string outcome;
                        using var cts = new CancellationTokenSource(PerCaseLimit);
                        try
                        {
                            var template = ChatTemplate.Parse(mutant, FuzzLimits);
                            Render(template, c, cts.Token);
                            outcome = "success";
                        }
                        catch (TemplateException e) when (e.InnerException == null && (e.RawMessage.Length > 0 || e.ErrorType == "TemplateError"))
                        {
                            outcome = e.ErrorType;
                            if (Environment.GetEnvironmentVariable("JAMBA_FUZZ_VERBOSE") == "1")
                                lock (failures) Console.Error.WriteLine($"{what} -> {e.Message}");
                        }
                        catch (Exception e)
                        {
                            outcome = "FAILURE " + e.GetType().Name;
                            lock (failures)
                                failures.Add($"{what}\n    {e.GetType().FullName}: {e.Message}\n    inner: {e.InnerException?.GetType().FullName}: {e.InnerException?.Message}\n" +
                                             $"    at {(e.InnerException ?? e).StackTrace?.Split('\n').FirstOrDefault()?.Trim()}\n    case: {c["name"]}");
                        }
                        double ms = caseWatch.Elapsed.TotalMilliseconds;
                        if (ms > slowest.Ms) slowest = (ms, what + " -> " + outcome);
                        if (caseWatch.Elapsed > PerCaseLimit)
                            lock (failures) failures.Add($"{what}\n    too slow: {ms:F0} ms ({outcome})\n    case: {c["name"]}");
                        lock (outcomes) outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
                        Interlocked.Increment(ref done);
                    }
                }
            }
            catch (Exception e)
            {
                workerError = e;
            }
        })
        { IsBackground = true };
        worker.Start();

        // Watchdog: every case must finish within PerCaseLimit (plus slack for a loaded machine).
        int lastDone = -1;
        var lastProgress = Stopwatch.StartNew();
        while (!worker.Join(200))
        {
            int now = Volatile.Read(ref done);
            if (now != lastDone)
            {
                lastDone = now;
                lastProgress.Restart();
            }
            else if (lastProgress.Elapsed > PerCaseLimit + TimeSpan.FromSeconds(10))
                Assert.Fail($"case hung for {lastProgress.Elapsed.TotalSeconds:F0} s: {Volatile.Read(ref current)}");
        }
        Assert.Null(workerError);

        output.WriteLine($"{total} cases over {fixtures.Count} templates ({string.Join(", ", fixtures.Select(x => x.Name))}) in {sw.Elapsed.TotalSeconds:F1} s");
        foreach (var (k, v) in outcomes.OrderByDescending(kv => kv.Value)) output.WriteLine($"  {k,-24} {v,6}");
        output.WriteLine($"slowest case: {slowest.Ms:F0} ms: {slowest.What}");
        foreach (var (k, v) in failures.GroupBy(f => f.Split('\n')[1].Trim()).Select(g => (g.Key, g.Count())).OrderByDescending(x => x.Item2))
            output.WriteLine($"  failure x{v}: {k}");
        foreach (var f in failures.Take(20)) output.WriteLine(f);
        Assert.Equal(total, done);
        Assert.True(failures.Count == 0, $"{failures.Count} cases ended with a non-template exception; first: {failures.FirstOrDefault()}");
        Assert.True(outcomes.GetValueOrDefault("success") > 0, "no mutant rendered at all");
    }

    // Values of every kind a template can hold, as template expressions.
    private static readonly string[] SampleValues =
    [
        "'abc'", "''", "'\ud83d'", "'😀é'", "'a b\tc\n'", "'%s'", "'{}'", "0", "-7", "2**70", "-(2**70)", "1.5", "-0.0",
        "(1e308 * 10)", "(1e308 * 10 - 1e308 * 10)", "true", "none", "undefined_name", "[]", "[1, 'a', none]", "[[1, 2], [3]]",
        "()", "(1,)", "{}", "{'a': 1, 'role': 'x'}", "{1: 2, 'b': [1]}", "messages", "messages[0]", "namespace(a=1)", "range(3)",
        "range", "dict", "raise_exception", "'x'.upper", "cycler(1, 2)", "joiner()", "loop", "m", "caller",
    ];

    /// <summary>Every expression rewrite applied to every kind of value: all end in a result or a TemplateException.</summary>
    [Fact]
    [Trait("Category", "ChatTemplate")]
    public void RewritesOfEveryValueKind()
    {
        var messages = JsonNode.Parse("""[{"role": "user", "content": "hi"}, {"role": "assistant", "content": null}]""");
        var outcomes = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var failures = new List<string>();
        var worker = new Thread(() =>
        {
            foreach (var rewrite in Rewrites)
                foreach (var value in SampleValues)
                {
                    string expr = string.Format(System.Globalization.CultureInfo.InvariantCulture, rewrite, value);
                    string template = "{% macro m(x=1) %}[{{ x }}]{% endmacro %}{% for _ in [1] %}{{ " + expr + " }}{% endfor %}";
                    string outcome;
                    try
                    {
                        using var cts = new CancellationTokenSource(PerCaseLimit);
                        ChatTemplate.Parse(template, FuzzLimits).Render(messages, cancellationToken: cts.Token);
                        outcome = "success";
                    }
                    catch (TemplateException e) when (e.InnerException == null && (e.RawMessage.Length > 0 || e.ErrorType == "TemplateError"))
                    {
                        outcome = e.ErrorType;
                    }
                    catch (Exception e)
                    {
                        outcome = "FAILURE";
                        failures.Add($"{{{{ {expr} }}}}\n    {e.GetType().FullName}: {e.Message}\n    inner: {e.InnerException?.GetType().FullName}: {e.InnerException?.Message}\n" +
                                     $"    at {(e.InnerException ?? e).StackTrace?.Split('\n').FirstOrDefault()?.Trim()}");
                    }
                    outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
                }
        })
        { IsBackground = true };
        worker.Start();
        Assert.True(worker.Join(TimeSpan.FromSeconds(120)), "rewrites did not finish within 120 s");
        output.WriteLine($"{Rewrites.Length} rewrites x {SampleValues.Length} values = {Rewrites.Length * SampleValues.Length} cases");
        foreach (var (k, v) in outcomes.OrderByDescending(kv => kv.Value)) output.WriteLine($"  {k,-24} {v,6}");
        foreach (var f in failures) output.WriteLine(f);
        Assert.True(failures.Count == 0, $"{failures.Count} cases ended with a non-template exception; first: {failures.FirstOrDefault()}");
    }

    [Fact]
    public void MutationsAreDeterministic()
    {
        string src = "{% for m in messages %}{{ m.content }}{% endfor %}";
        var a = Mutate(src, new Random(7), new StringBuilder());
        var b = Mutate(src, new Random(7), new StringBuilder());
        Assert.Equal(a, b);
    }
}
