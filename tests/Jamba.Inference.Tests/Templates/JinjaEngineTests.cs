using System.Text.Json;
using System.Text.Json.Nodes;
using Jamba.Inference.Templates;
using Xunit;

namespace Jamba.Inference.Tests.Templates;

/// <summary>
/// Engine tests. <see cref="MatchesJinja2"/> replays a corpus of small templates whose expected output (or
/// error) was produced by Python jinja2 in transformers' environment (see <c>tools/gen.py</c>).
/// </summary>
public sealed class JinjaEngineTests
{
    private static readonly JsonArray Corpus = JsonNode.Parse(JinjaEngineCases.Json)!.AsArray();

    public static TheoryData<string> CorpusNames()
    {
        var data = new TheoryData<string>();
        foreach (var c in Corpus) data.Add(c!["name"]!.GetValue<string>());
        return data;
    }

    private static string Render(string template, object? vars = null)
    {
        var t = ChatTemplate.Parse(template);
        var dict = new Dictionary<string, object?>();
        if (vars is JsonObject obj)
            foreach (var kv in obj) dict[kv.Key] = kv.Value;
        return t.RenderVariables(dict);
    }

    [Theory]
    [Trait("Category", "ChatTemplate")]
    [MemberData(nameof(CorpusNames))]
    public void MatchesJinja2(string name)
    {
        var c = Corpus.Single(x => x!["name"]!.GetValue<string>() == name)!;
        string template = c["template"]!.GetValue<string>();
        var vars = c["vars"];
        if (c["error_type"] is JsonNode errType)
        {
            var ex = Assert.Throws<TemplateException>(() => Render(template, vars));
            Assert.Equal(errType.GetValue<string>(), ex.ErrorType);
            Assert.Equal(c["error"]!.GetValue<string>(), ex.RawMessage);
            if (c["line"] is JsonNode line) Assert.Equal(line.GetValue<int>(), ex.Line);
            return;
        }
        ChatTemplateFixtureTests.AssertSameText(c["expected"]!.GetValue<string>(), Render(template, vars));
    }

    [Fact]
    public void RuntimeErrorsReportTheTemplateLine()
    {
        var ex = Assert.Throws<TemplateException>(() =>
            Render("a\nb\n{% if true %}\n  {{ raise_exception('boom') }}\n{% endif %}"));
        Assert.Equal("TemplateError", ex.ErrorType);
        Assert.Equal("boom", ex.RawMessage);
        Assert.Equal(4, ex.Line);
        Assert.Contains("line 4", ex.Message, StringComparison.Ordinal);

        var inMacro = Assert.Throws<TemplateException>(() =>
            Render("{% macro m(x) %}\n\n{{ x.y.z }}\n{% endmacro %}\n{{ m(none) }}"));
        Assert.Equal("UndefinedError", inMacro.ErrorType);
        Assert.Equal("'None' has no attribute 'y'", inMacro.RawMessage);
        Assert.Equal(3, inMacro.Line);
    }

    [Fact]
    public void SyntaxErrorsReportTheTemplateLine()
    {
        var ex = Assert.Throws<TemplateException>(() => ChatTemplate.Parse("ok\n\n{% for x in y %}\n{{ x }"));
        Assert.Equal("TemplateSyntaxError", ex.ErrorType);
        Assert.True(ex.Line >= 3, $"line {ex.Line}");
        Assert.Contains("line", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SandboxBlocksPrivateAttributesAndMutation()
    {
        // Printing an unsafe attribute gives "" (it is an Undefined); using it raises SecurityError.
        Assert.Equal("[]", Render("[{{ 'x'.__class__ }}]"));
        Assert.Equal("SecurityError", Assert.Throws<TemplateException>(() => Render("{{ 'x'.__class__.__subclasses__() }}")).ErrorType);
        Assert.Equal("SecurityError", Assert.Throws<TemplateException>(() => Render("{{ [].append(1) }}")).ErrorType);
        Assert.Equal("SecurityError", Assert.Throws<TemplateException>(() => Render("{{ {}.pop('a') }}")).ErrorType);
        Assert.Equal("SecurityError", Assert.Throws<TemplateException>(() => Render("{{ raise_exception.__globals__.x }}")).ErrorType);
    }

    [Fact]
    public void LoopControlsAndNamespaces()
    {
        Assert.Equal("0,1,3",
            Render("{% set ns = namespace(out=[]) %}{% for i in range(9) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{% set ns.out = ns.out + [i|string] %}{% endfor %}{{ ns.out|join(',') }}"));
    }

    [Fact]
    public void FloatsAndIntsFromJsonKeepTheirType()
    {
        var t = ChatTemplate.Parse("{{ a }} {{ b }} {{ c }} {{ [a, b, c]|tojson }} {{ a is float }}{{ b is integer }}");
        var node = JsonNode.Parse("""{"a": 1.0, "b": 2, "c": 1e-07}""")!.AsObject();
        var vars = node.ToDictionary(kv => kv.Key, kv => (object?)kv.Value);
        Assert.Equal("1.0 2 1e-07 [1.0, 2, 1e-07] TrueTrue", t.RenderVariables(vars));

        using var doc = JsonDocument.Parse("""{"a": 1.0, "b": 2, "c": 1E-7}""");
        var fromElement = doc.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value);
        Assert.Equal("1.0 2 1e-07 [1.0, 2, 1e-07] TrueTrue", t.RenderVariables(fromElement));

        var clr = new Dictionary<string, object?> { ["a"] = 1.0, ["b"] = 2, ["c"] = 1e-7 };
        Assert.Equal("1.0 2 1e-07 [1.0, 2, 1e-07] TrueTrue", t.RenderVariables(clr));
    }

    [Fact]
    public void ToJsonMatchesPythonJsonDumps()
    {
        var vars = new Dictionary<string, object?>
        {
            ["x"] = JsonNode.Parse("""{"s": "é😀<>&'/\u2028\u0001\"\\", "f": [0.875, 1e16, 100.0, -0.5], "e": {}, "l": []}"""),
        };
        var t = ChatTemplate.Parse("{{ x|tojson }}\n{{ x|tojson(indent=2) }}");
        Assert.Equal(
            "{\"s\": \"é😀<>&'/\u2028\\u0001\\\"\\\\\", \"f\": [0.875, 1e+16, 100.0, -0.5], \"e\": {}, \"l\": []}\n" +
            "{\n  \"s\": \"é😀<>&'/\u2028\\u0001\\\"\\\\\",\n  \"f\": [\n    0.875,\n    1e+16,\n    100.0,\n    -0.5\n  ],\n  \"e\": {},\n  \"l\": []\n}",
            t.RenderVariables(vars));
    }

    [Fact]
    public void RenderPassesToolsAndDocumentsAsNoneAndOmitsNullTokens()
    {
        var t = ChatTemplate.Parse("{{ tools is defined }}{{ tools is none }}{{ documents is none }}{{ bos_token is defined }}{{ eos_token }}{{ add_generation_prompt }}{{ extra }}");
        var msgs = JsonNode.Parse("[]");
        Assert.Equal("TrueTrueTrueFalse</s>True7", t.Render(msgs, addGenerationPrompt: true, eosToken: "</s>",
            kwargs: new Dictionary<string, JsonNode?> { ["extra"] = 7 }));
        // kwargs win over named parameters
        Assert.Equal("X", ChatTemplate.Parse("{{ bos_token }}").Render(msgs, bosToken: "<s>",
            kwargs: new Dictionary<string, JsonNode?> { ["bos_token"] = "X" }));
    }

    [Fact]
    public void PlainFallbackConcatenatesContents()
    {
        var msgs = JsonNode.Parse("""[{"role": "system", "content": "S"}, {"role": "user", "content": "Hello"}, {"role": "assistant", "content": null}, {"role": "user", "content": [1, 2]}]""");
        Assert.Equal("<s>S\n\nHello\n\n\n\n[1, 2]", ChatTemplate.PlainFallback.Render(msgs, bosToken: "<s>", addGenerationPrompt: true));
        Assert.Equal("Once upon a time", ChatTemplate.PlainFallback.Render(JsonNode.Parse("""[{"role": "user", "content": "Once upon a time"}]""")));
    }

    [Fact]
    public void LoadsTemplatesFromCheckpointFolders()
    {
        var root = Path.Combine(Path.GetTempPath(), "jamba-tpl-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(root);
        try
        {
            var msgs = JsonNode.Parse("""[{"role": "user", "content": "hi"}]""");
            Assert.False(ChatTemplate.TryFromCheckpoint(root, out _));
            Assert.Throws<FileNotFoundException>(() => ChatTemplate.FromCheckpoint(root));
            Assert.Same(ChatTemplate.PlainFallback, ChatTemplate.FromCheckpointOrFallback(root));

            File.WriteAllText(Path.Combine(root, "tokenizer_config.json"),
                """{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D{{ messages[0].content }}"}]}""");
            Assert.Equal("Dhi", ChatTemplate.FromCheckpoint(root).Render(msgs));
            Assert.Equal("T", ChatTemplate.FromCheckpoint(root, "tool_use").Render(msgs));

            File.WriteAllText(Path.Combine(root, "tokenizer_config.json"), """{"chat_template": "S{{ messages|length }}"}""");
            Assert.Equal("S1", ChatTemplate.FromCheckpoint(root).Render(msgs));

            File.WriteAllText(Path.Combine(root, "chat_template.jinja"), "J{{ messages[0]['role'] }}\n");
            Assert.Equal("Juser", ChatTemplate.FromCheckpoint(root).Render(msgs));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void StrftimeNowUsesTheClock()
    {
        var t = ChatTemplate.Parse("{{ strftime_now('%d %b %Y %H:%M') }}|{{ strftime_now('%-d %B %A') }}")
            .WithClock(() => new DateTime(2024, 7, 5, 9, 3, 0));
        Assert.Equal("05 Jul 2024 09:03|5 July Friday", t.RenderVariables([]));
    }
}
