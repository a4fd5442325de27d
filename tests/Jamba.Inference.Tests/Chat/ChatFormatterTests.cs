using System.Text.Json;
using System.Text.Json.Nodes;
using Jamba.Inference.Chat;
using Microsoft.Extensions.AI;
using Xunit;

namespace Jamba.Inference.Tests.Chat;

/// <summary>MEAI conversations → template variables, checked against the recorded jinja2 renderings.</summary>
public sealed class ChatFormatterTests
{
    private static JsonObject Case(string folder, string name)
    {
        var cases = JsonNode.Parse(File.ReadAllText(Path.Combine(RepositoryPaths.ChatTemplates, folder, "cases.json")))!.AsArray();
        return cases.Single(c => (string)c!["name"]! == name)!.AsObject();
    }

    private static List<AITool> ToolsOf(JsonObject c) =>
        c["tools"]!.AsArray().Select(t =>
        {
            var f = t!["function"]!;
            using var doc = JsonDocument.Parse(f["parameters"]!.ToJsonString());
            return (AITool)AIFunctionFactory.CreateDeclaration((string)f["name"]!, (string?)f["description"], doc.RootElement.Clone());
        }).ToList();

    private static Dictionary<string, object?> Args(string json) =>
        JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(json)!.ToDictionary(kv => kv.Key, kv => (object?)kv.Value);

    /// <summary>The tool_call_roundtrip conversation as an MEAI app holds it after a function-invocation round.</summary>
    private static List<ChatMessage> RoundTrip(string system, string user, string finalAnswer, string? reasoning, string lastUser) =>
    [
        new(ChatRole.System, system),
        new(ChatRole.User, user),
        new(ChatRole.Assistant,
        [
            new FunctionCallContent("call_1", "get_weather", Args("{\"location\": {\"city\": \"Zürich\", \"country_code\": \"CH\"}, \"unit\": \"celsius\", \"days\": 1}")),
            new FunctionCallContent("call_2", "search_documents", Args("{\"query\": \"Zürich Wetter\", \"top_k\": 3}")),
        ]),
        new(ChatRole.Tool, [new FunctionResultContent("call_1", "{\"temperature\": 21.5, \"condition\": \"sunny ☀️\"}"), new FunctionResultContent("call_2", "3 results found")]),
        new(ChatRole.Assistant, reasoning is null ? [new TextContent(finalAnswer)] : [new TextReasoningContent(reasoning), new TextContent(finalAnswer)]),
        new(ChatRole.User, lastUser),
    ];

    [Fact]
    public void Jamba17RoundTripMatchesHuggingFaceRendering()
    {
        var c = Case("jamba-mini-1.7", "tool_call_roundtrip");
        var template = ToolCallParserTests.LoadTemplate("jamba-mini-1.7");
        var formatter = new JambaChatFormatter(template, "<|startoftext|>", "<|endoftext|>");
        var messages = RoundTrip("You are a helpful assistant with tools.", "How is the weather in Zürich, and find docs about it.",
            "It is 21.5 °C and sunny in Zürich; I found 3 documents.", null, "Thanks! And tomorrow?");
        var prompt = formatter.Format(messages, new ChatOptions { Tools = ToolsOf(c) });

        // An OpenAI-style client sends the function name with every tool result; the recorded case omits it on the
        // second one, so the expectation is the same case rendered with that name added.
        var caseMessages = c["messages"]!.DeepClone().AsArray();
        caseMessages[4]!["name"] = "search_documents";
        string expected = template.Render(caseMessages, c["tools"], null, true, "<|startoftext|>", "<|endoftext|>");
        Assert.Equal(expected, prompt.Text);
        Assert.Contains("<|tool|> (get_weather){\"temperature\": 21.5", prompt.Text);
        Assert.Contains("<|bom|><|assistant|> <tool_calls>[\n    {\"name\": \"get_weather\", \"arguments\": {\"location\": {\"city\": \"Zürich\", \"country_code\": \"CH\"}, \"unit\": \"celsius\", \"days\": 1}},", prompt.Text);
        Assert.False(prompt.StartsInReasoning);
    }

    [Fact]
    public void Reasoning3BRoundTripIsByteIdenticalToRecordedCase()
    {
        var c = Case("jamba-reasoning-3b", "tool_call_roundtrip");
        var formatter = new JambaChatFormatter(ToolCallParserTests.LoadTemplate("jamba-reasoning-3b"), "<|startoftext|>", "<|endoftext|>");
        var messages = RoundTrip("You can call tools.", "Weather in Zürich and docs about it?", "It is 21.5 °C and sunny.", "Combine both tool results.", "Thanks! Tomorrow?");
        var prompt = formatter.Format(messages, new ChatOptions { Tools = ToolsOf(c) });
        Assert.Equal((string)c["expected"]!, prompt.Text);
        Assert.True(prompt.StartsInReasoning);
    }

    [Fact]
    public void ToolsWithoutSystemMatchRecordedCase()
    {
        var c = Case("jamba-mini-1.7", "tools_without_system");
        var formatter = new JambaChatFormatter(ToolCallParserTests.LoadTemplate("jamba-mini-1.7"), "<|startoftext|>", "<|endoftext|>");
        var prompt = formatter.Format([new ChatMessage(ChatRole.User, "What's the weather in São Paulo?")], new ChatOptions { Tools = ToolsOf(c), ToolMode = ChatToolMode.Auto });
        Assert.Equal((string)c["expected"]!, prompt.Text);
        Assert.NotNull(prompt.Tools);

        // ToolMode None: the tools are still described (Semantic Kernel's FunctionChoiceBehavior.None); the client parses no calls.
        var none = formatter.Format([new ChatMessage(ChatRole.User, "What's the weather in São Paulo?")], new ChatOptions { Tools = ToolsOf(c), ToolMode = ChatToolMode.None });
        Assert.Equal(prompt.Text, none.Text);
        Assert.NotNull(none.Tools);
    }

    [Fact]
    public void InstructionsDocumentsAndKwargsReachTheTemplate()
    {
        var formatter = new JambaChatFormatter(ToolCallParserTests.LoadTemplate("jamba-mini-1.7"), "<|startoftext|>");
        var options = new ChatOptions
        {
            Instructions = "Be brief.",
            ResponseFormat = ChatResponseFormat.Json,
            AdditionalProperties = new()
            {
                ["documents"] = new[] { new Dictionary<string, object?> { ["title"] = "Doc A", ["text"] = "Alpha.", ["source"] = "wiki" } },
                ["chat_template_kwargs"] = new Dictionary<string, object?> { ["bom_str"] = "<|bom|>" },
            },
        };
        var snapshot = JsonSerializer.Serialize(options, AIJsonUtilities.DefaultOptions);
        var prompt = formatter.Format([new ChatMessage(ChatRole.System, "You are kind."), new ChatMessage(ChatRole.User, "Hi")], options);
        Assert.StartsWith("<|startoftext|><|bom|><|system|> Be brief.\n\nYou are kind.<|eom|>", prompt.Text);
        Assert.Contains("## Document ID: 0\nTitle: Doc A\nSource: wiki\nText: Alpha.", prompt.Text);
        Assert.Contains("## JSON Mode", prompt.Text);
        Assert.EndsWith("<|bom|><|user|> Hi<|eom|><|bom|><|assistant|>", prompt.Text);
        Assert.Equal(snapshot, JsonSerializer.Serialize(options, AIJsonUtilities.DefaultOptions));
    }

    [Fact]
    public void ResultsAreRenderedAsText()
    {
        Assert.Equal("plain", JambaChatFormatter.ResultToString(new FunctionResultContent("c", "plain")));
        Assert.Equal("quoted", JambaChatFormatter.ResultToString(new FunctionResultContent("c", JsonDocument.Parse("\"quoted\"").RootElement)));
        Assert.Equal("{\"a\": 1}", JambaChatFormatter.ResultToString(new FunctionResultContent("c", JsonDocument.Parse("{\"a\": 1}").RootElement)));
        Assert.Equal("42", JambaChatFormatter.ResultToString(new FunctionResultContent("c", 42)));
        Assert.Equal("Error: boom", JambaChatFormatter.ResultToString(new FunctionResultContent("c", null) { Exception = new InvalidOperationException("boom") }));
    }

    [Fact]
    public void AuthorNameBecomesName()
    {
        var messages = JambaChatFormatter.ToTemplateMessages([new ChatMessage(ChatRole.User, "hello") { AuthorName = "bob" }]);
        Assert.Equal("{\"role\":\"user\",\"content\":\"hello\",\"name\":\"bob\"}", messages[0]!.ToJsonString());
    }
}
