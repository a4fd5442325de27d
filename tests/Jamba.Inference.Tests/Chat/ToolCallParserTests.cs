using System.Text.Json;
using Jamba.Inference.Chat;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Xunit;

namespace Jamba.Inference.Tests.Chat;

/// <summary>The tool-call parser and the streaming buffer on recorded model outputs.</summary>
public sealed class ToolCallParserTests
{
    // Recorded outputs: see RecordedToolOutputs (Jamba.Testing).
    internal const string Jamba17TwoCalls = RecordedToolOutputs.Jamba17TwoCalls;
    internal const string Jamba17TextThenCall = RecordedToolOutputs.Jamba17TextThenCall;
    internal const string Reasoning3BTwoCalls = RecordedToolOutputs.Reasoning3BTwoCalls;
    internal const string Jamba17Malformed = RecordedToolOutputs.Jamba17Malformed;

    [Fact]
    public void ParsesJambaListWithObjectAndStringArguments()
    {
        Assert.True(ToolCallParser.TryParse("[{\"name\": \"a\", \"arguments\": {\"x\": 1, \"y\": [true, null]}}, {\"name\": \"b\", \"arguments\": \"{\\\"q\\\": \\\"z\\\"}\"}, {\"name\": \"c\"}]", out var calls, out var error), error);
        Assert.Equal(["a", "b", "c"], calls.Select(c => c.Name));
        Assert.Equal(1, ((JsonElement)calls[0].Arguments!["x"]!).GetInt32());
        Assert.Equal("[true, null]", ((JsonElement)calls[0].Arguments!["y"]!).GetRawText());
        Assert.Equal("z", ((JsonElement)calls[1].Arguments!["q"]!).GetString());
        Assert.Empty(calls[2].Arguments!);
        Assert.All(calls, c => Assert.StartsWith("call_", c.CallId));
        Assert.Equal(3, calls.Select(c => c.CallId).Distinct().Count());
    }

    [Fact]
    public void AcceptsSingleObjectOpenAiWrapperAndParameters()
    {
        Assert.True(ToolCallParser.TryParse("{\"name\": \"a\", \"parameters\": {\"x\": 2}}", out var one, out _));
        Assert.Equal(2, ((JsonElement)one.Single().Arguments!["x"]!).GetInt32());
        Assert.True(ToolCallParser.TryParse("[{\"id\": \"call_9\", \"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": {}}}]", out var wrapped, out _));
        Assert.Equal(("call_9", "f"), (wrapped[0].CallId, wrapped[0].Name));
    }

    [Theory]
    [InlineData("[{\"name\": \"a\", \"arguments\": {\"x\": 1}")]
    [InlineData("[{\"arguments\": {}}]")]
    [InlineData("[{\"name\": \"\", \"arguments\": {}}]")]
    [InlineData("[{\"name\": \"a\", \"arguments\": [1, 2]}]")]
    [InlineData("[{\"name\": \"a\", \"arguments\": \"not json\"}]")]
    [InlineData("[\"a\"]")]
    [InlineData("42")]
    [InlineData("")]
    public void RejectsMalformedWithoutThrowing(string body)
    {
        Assert.False(ToolCallParser.TryParse(body, out var calls, out var error));
        Assert.Null(calls);
        Assert.False(string.IsNullOrEmpty(error));
    }

    [Fact]
    public void DetectsFormatFromTemplates()
    {
        Assert.Equal(ToolCallFormat.JambaToolCalls, ToolCallParser.DetectFormat(LoadTemplate("jamba-mini-1.7")));
        Assert.Equal(ToolCallFormat.JambaToolCalls, ToolCallParser.DetectFormat(LoadTemplate("jamba-1.5")));
        Assert.Equal(ToolCallFormat.HermesToolCall, ToolCallParser.DetectFormat(LoadTemplate("jamba-reasoning-3b")));
        Assert.Equal(ToolCallFormat.None, ToolCallParser.DetectFormat(Jamba.Inference.Templates.ChatTemplate.PlainFallback));
    }

    public static TheoryData<int> PieceLengths() => new() { 1, 2, 3, 5, 7, 11, 1000 };

    [Theory]
    [MemberData(nameof(PieceLengths))]
    public void StreamedJambaCallsNeverLeakMarkup(int piece)
    {
        var contents = Stream(ToolCallFormat.JambaToolCalls, Jamba17TwoCalls, piece);
        Assert.DoesNotContain(contents, c => c is TextContent);
        var calls = contents.OfType<FunctionCallContent>().ToList();
        Assert.Equal(["get_weather", "search_documents"], calls.Select(c => c.Name));
        Assert.Equal("{\"city\": \"Zürich\", \"country_code\": \"CH\"}", ((JsonElement)calls[0].Arguments!["location"]!).GetRawText());
        Assert.Equal(3, ((JsonElement)calls[1].Arguments!["top_k"]!).GetInt32());
    }

    [Theory]
    [MemberData(nameof(PieceLengths))]
    public void StreamedTextBeforeCallIsKeptWithoutTrailingWhitespace(int piece)
    {
        var contents = Stream(ToolCallFormat.JambaToolCalls, Jamba17TextThenCall, piece);
        Assert.Equal("Let me check that.", string.Concat(contents.OfType<TextContent>().Select(t => t.Text)));
        var call = Assert.Single(contents.OfType<FunctionCallContent>());
        Assert.Equal("Oslo", ((JsonElement)call.Arguments!["location"]!).GetProperty("city").GetString());
    }

    [Theory]
    [MemberData(nameof(PieceLengths))]
    public void StreamedReasoningAndHermesCalls(int piece)
    {
        var contents = Stream(ToolCallFormat.HermesToolCall, Reasoning3BTwoCalls, piece, startInReasoning: true);
        Assert.Equal("The user wants the weather and documents.\nI will call both tools.", string.Concat(contents.OfType<TextReasoningContent>().Select(t => t.Text)));
        Assert.DoesNotContain(contents, c => c is TextContent);
        Assert.Equal(["get_weather", "search_documents"], contents.OfType<FunctionCallContent>().Select(c => c.Name));
    }

    [Theory]
    [MemberData(nameof(PieceLengths))]
    public void MalformedCallBecomesTextAndWarning(int piece)
    {
        var logger = new ListLogger();
        var parser = new ChatOutputParser(ToolCallFormat.JambaToolCalls, logger: logger);
        var contents = Feed(parser, Jamba17Malformed, piece);
        Assert.Empty(contents.OfType<FunctionCallContent>());
        Assert.Equal(Jamba17Malformed.TrimStart(), string.Concat(contents.OfType<TextContent>().Select(t => t.Text)));
        Assert.Equal(1, parser.MalformedToolCallCount);
        Assert.Contains(logger.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("malformed tool call"));
    }

    [Theory]
    [InlineData(" <tool_calls>[{\"name\": \"f\", \"arguments\": {\"a\": 1}}]", true)]
    [InlineData(" <tool_calls>[{\"name\": \"f\", \"argu", false)]
    public void UnterminatedCallIsParsedWhenCompleteElseText(string output, bool parsed)
    {
        var logger = new ListLogger();
        var parser = new ChatOutputParser(ToolCallFormat.JambaToolCalls, logger: logger);
        var contents = Feed(parser, output, 4);
        if (parsed)
        {
            Assert.Equal("f", Assert.Single(contents.OfType<FunctionCallContent>()).Name);
            Assert.Empty(contents.OfType<TextContent>());
        }
        else
        {
            Assert.Equal(output.TrimStart(), string.Concat(contents.OfType<TextContent>().Select(t => t.Text)));
            Assert.Contains(logger.Entries, e => e.Level == LogLevel.Warning);
        }
    }

    [Theory]
    [MemberData(nameof(PieceLengths))]
    public void PlainTextWithAngleBracketsPassesThrough(int piece)
    {
        const string output = " if a < b and <tool or <tool_call then x <tool_calls";
        var contents = Stream(ToolCallFormat.JambaToolCalls, output, piece);
        Assert.Equal(output.TrimStart(), string.Concat(contents.OfType<TextContent>().Select(t => t.Text)));
    }

    [Fact]
    public void HeldBackPrefixIsReleasedOnlyWhenDecided()
    {
        var parser = new ChatOutputParser(ToolCallFormat.JambaToolCalls);
        Assert.Equal("Hi", Text(parser.Push("Hi <tool_")));
        Assert.Equal(" <tool_x", Text(parser.Push("x")));
        Assert.Equal("", Text(parser.Push(" <tool_calls>[{\"name\": \"f\"")));
        var tail = parser.Push("}]</tool_calls>");
        Assert.Equal("f", Assert.Single(tail.OfType<FunctionCallContent>()).Name);
        Assert.Empty(parser.Complete());
    }

    [Fact]
    public void NoneFormatKeepsMarkupAsText()
    {
        var contents = Stream(ToolCallFormat.None, Jamba17TwoCalls, 3);
        Assert.Equal(Jamba17TwoCalls.TrimStart(), string.Concat(contents.OfType<TextContent>().Select(t => t.Text)));
    }

    private static string Text(IEnumerable<AIContent> contents) => string.Concat(contents.OfType<TextContent>().Select(t => t.Text));

    internal static List<AIContent> Stream(ToolCallFormat format, string output, int piece, bool startInReasoning = false) =>
        Feed(new ChatOutputParser(format, startInReasoning), output, piece);

    private static List<AIContent> Feed(ChatOutputParser parser, string output, int piece)
    {
        var all = new List<AIContent>();
        for (int i = 0; i < output.Length; i += piece)
        {
            var got = parser.Push(output.Substring(i, Math.Min(piece, output.Length - i)));
            foreach (var c in got)
                if (c is TextContent t) Assert.DoesNotContain("<tool_calls>[", t.Text.Replace(Jamba17Malformed.TrimStart(), ""));
            all.AddRange(got);
        }
        all.AddRange(parser.Complete());
        return all;
    }

    internal static Jamba.Inference.Templates.ChatTemplate LoadTemplate(string folder) =>
        Jamba.Inference.Templates.ChatTemplate.Parse(File.ReadAllText(Path.Combine(RepositoryPaths.ChatTemplates, folder, "template.jinja")));
}
