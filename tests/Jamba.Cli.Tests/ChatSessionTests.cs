using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Jamba.Cli.Commands;
using Jamba.Cli.Infrastructure;
using Jamba.Inference.Tokenization;
using Microsoft.Extensions.AI;
using Xunit;

namespace Jamba.Cli.Tests;

/// <summary><c>jamba chat</c> on <c>JambaChatClient</c>: end-of-turn stops, tools and documents, tool calls and reasoning shown, flag errors.</summary>
public sealed class ChatSessionTests : IClassFixture<TextModelFixture>
{
    private readonly TextModelFixture _text;

    public ChatSessionTests(TextModelFixture text) => _text = text;

    /// <summary>A copy of the text fixture with another chat template.</summary>
    private string CopyWithTemplate(TempDir dir, string template)
    {
        string folder = Path.Combine(dir.Path, "model");
        Directory.CreateDirectory(folder);
        foreach (var file in Directory.GetFiles(_text.Folder))
            if (Path.GetFileName(file) != "chat_template.jinja") File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        File.WriteAllText(Path.Combine(folder, "chat_template.jinja"), template);
        return folder;
    }

    private static int[] Ints(JsonNode? node) => node!.AsArray().Select(n => n!.GetValue<int>()).ToArray();

    private static (int Prompt, int New, string Finish) Stats(CliResult r)
    {
        var line = r.Error.Split('\n').Single(l => l.Contains("prompt tokens"));
        var m = Regex.Match(line, @"^\[(\d+) prompt tokens.*; (\d+) new tokens.*; finish: (\w+)\]");
        Assert.True(m.Success, line);
        return (int.Parse(m.Groups[1].Value), int.Parse(m.Groups[2].Value), m.Groups[3].Value);
    }

    private static void AssertOneLineError(CliResult r, int code, params string[] mentions)
    {
        Assert.True(r.ExitCode == code, r.ToString());
        var lines = r.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, r.ToString());
        Assert.StartsWith("error: ", lines[0]);
        Assert.Equal("", r.Out);
        foreach (var mention in mentions) Assert.Contains(mention, lines[0]);
    }

    [Fact]
    public void Chat_and_generate_chat_stop_at_the_templates_end_of_turn_token()
    {
        const string prompt = "Hello there";
        // What the model writes after the first user turn, with no end-of-turn marker in the template.
        var free = CliRunner.Run("generate", "--model", _text.Folder, "--prompt", prompt, "--chat", "--max-new-tokens", "16", "--temperature", "0", "--json");
        Assert.True(free.ExitCode == 0, free.ToString());
        var freeJson = JsonNode.Parse(free.Out)!;
        var tokens = Ints(freeJson["tokens"]);
        var tokenizer = JambaTokenizer.Load(_text.Folder);

        // A template whose assistant turns end with a token the model writes (first at position i > 0): the marker follows
        // assistant messages only, so the first turn's prompt is the same as under the fixture's template.
        int i = Enumerable.Range(1, tokens.Length - 1).First(k =>
            Array.IndexOf(tokens, tokens[k]) == k && Regex.IsMatch(tokenizer.IdToToken(tokens[k]) ?? "", @"^\u2581?[A-Za-z]{2,}$"));
        string marker = tokenizer.IdToToken(tokens[i])!;
        using var dir = new TempDir();
        string folder = CopyWithTemplate(dir,
            "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% if m['role'] == 'assistant' %}" + marker + "{% endif %}{{ '\\n' }}{% endfor %}" +
            "{% if add_generation_prompt %}<assistant>{% endif %}");
        string expected = tokenizer.Decode(tokens.Take(i).ToArray()).Trim();
        var setup = Inference.Chat.ChatSetup.Create(Inference.Templates.ChatTemplate.FromCheckpoint(folder), tokenizer);
        Assert.True(setup.EndOfTurnTokenIds.SequenceEqual([tokens[i]]),
            $"marker '{marker}' ({tokens[i]}): found [{string.Join(",", setup.EndOfTurnTokenIds)}] / [{string.Join(",", setup.EndOfTurnStrings)}]; tokens {string.Join(",", tokens)}");

        var chat = CliRunner.RunWithInput(prompt + "\n", "chat", "--model", folder, "--max-new-tokens", "16", "--temperature", "0", "--stats");
        Assert.True(chat.ExitCode == 0, chat.ToString());
        var stats = Stats(chat);
        Assert.Equal("stop", stats.Finish);
        Assert.Equal(i + 1, stats.New); // the end-of-turn token is generated, not shown
        Assert.Equal(freeJson["prompt_tokens"]!.GetValue<int>(), stats.Prompt);
        Assert.Equal(expected, chat.Out.Trim());

        var generate = CliRunner.Run("generate", "--model", folder, "--prompt", prompt, "--chat", "--max-new-tokens", "16", "--temperature", "0", "--json");
        Assert.True(generate.ExitCode == 0, generate.ToString());
        var json = JsonNode.Parse(generate.Out)!;
        Assert.Equal("stop", json["finish_reason"]!.GetValue<string>());
        Assert.Equal(tokens.Take(i + 1), Ints(json["tokens"]));

        // Under the fixture's template (no end-of-turn marker) the same chat runs on, as generate did.
        var plain = CliRunner.RunWithInput(prompt + "\n", "chat", "--model", _text.Folder, "--max-new-tokens", "16", "--temperature", "0", "--stats");
        Assert.True(plain.ExitCode == 0, plain.ToString());
        Assert.Equal(freeJson["completion_tokens"]!.GetValue<int>(), Stats(plain).New);
    }

    public static TheoryData<string?, string> BadToolFiles() => new()
    {
        { null, "does not exist" },
        { "{ not json", "not valid JSON" },
        { """{"name": "f"}""", "an object" },
        { """[{"description": "no name"}]""", "\"name\"" },
        { """[{"name": "f", "parameters": "x"}]""", "\"parameters\"" },
        { """[{"name": "f"}, {"type": "function", "function": {"name": "f"}}]""", "twice" },
    };

    [Theory]
    [MemberData(nameof(BadToolFiles))]
    public void A_bad_tools_file_is_a_one_line_error_naming_the_file(string? content, string mention)
    {
        using var dir = new TempDir();
        string file = Path.Combine(dir.Path, "my-tools.json");
        if (content is not null) File.WriteAllText(file, content);
        var r = CliRunner.RunWithInput("hi\n", "chat", "--model", _text.Folder, "--tools", file);
        AssertOneLineError(r, 1, "--tools", file, mention);
    }

    [Fact]
    public void A_bad_documents_file_is_a_one_line_error_naming_the_file()
    {
        using var dir = new TempDir();
        string file = Path.Combine(dir.Path, "docs.json");
        File.WriteAllText(file, """[{"title": "no text"}]""");
        AssertOneLineError(CliRunner.RunWithInput("hi\n", "chat", "--model", _text.Folder, "--documents", file), 1, "--documents", file, "\"text\"");
        File.WriteAllText(file, "42");
        AssertOneLineError(CliRunner.RunWithInput("hi\n", "chat", "--model", _text.Folder, "--documents", file), 1, "--documents", file, "a number");
    }

    [Theory]
    [InlineData("--top-p", "2")]
    [InlineData("--max-new-tokens", "0")]
    [InlineData("--repetition-penalty", "0")]
    public void An_invalid_sampling_flag_is_named(string flag, string value) =>
        AssertOneLineError(CliRunner.RunWithInput("hi\n", "chat", "--model", _text.Folder, flag, value), 2, flag);

    [Fact]
    public void Tools_and_documents_reach_the_prompt()
    {
        using var dir = new TempDir();
        string folder = CopyWithTemplate(dir,
            "{{ bos_token }}{% if tools %}<tools>{{ tools | tojson }}\n{% endif %}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}" +
            "{% if add_generation_prompt %}<assistant>{% endif %}");
        string tools = Path.Combine(dir.Path, "tools.json");
        File.WriteAllText(tools, """
            [{"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
             {"type": "function", "function": {"name": "now"}}]
            """);
        string documents = Path.Combine(dir.Path, "docs.json");
        File.WriteAllText(documents, """["The whale is white.", {"title": "Ship", "text": "The Pequod sails from Nantucket."}]""");
        string[] common = ["--max-new-tokens", "2", "--temperature", "0", "--ignore-eos", "--stats"];

        var bare = CliRunner.RunWithInput("Hi\n", ["chat", "--model", folder, .. common]);
        var withTools = CliRunner.RunWithInput("Hi\n", ["chat", "--model", folder, "--tools", tools, .. common]);
        var withDocuments = CliRunner.RunWithInput("Hi\n", ["chat", "--model", folder, "--documents", documents, .. common]);
        foreach (var r in new[] { bare, withTools, withDocuments }) Assert.True(r.ExitCode == 0, r.ToString());
        Assert.True(Stats(withTools).Prompt > Stats(bare).Prompt + 10, withTools.ToString());
        // The template takes no documents: they are rendered in the plain format as a system message.
        Assert.True(Stats(withDocuments).Prompt > Stats(bare).Prompt + 10, withDocuments.ToString());
    }

    [Fact]
    public void Tool_calls_are_printed_on_stdout_and_reasoning_on_stderr()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var writer = new ChatReplyWriter(CliIO.Capture(output, error));
        writer.Write(new ChatResponseUpdate(ChatRole.Assistant, [new TextReasoningContent("The user wants "), new TextReasoningContent("the weather.")]));
        writer.Write(new ChatResponseUpdate(ChatRole.Assistant, "Let me check."));
        writer.Write(new ChatResponseUpdate(ChatRole.Assistant,
        [
            new FunctionCallContent("call_0", "get_weather", new Dictionary<string, object?> { ["city"] = "Paris", ["days"] = 2 }),
            new FunctionCallContent("call_1", "now"),
        ]) { FinishReason = ChatFinishReason.ToolCalls });
        writer.Complete();

        string nl = Environment.NewLine;
        Assert.Equal($"Let me check.{nl}[tool call] get_weather({{\"city\":\"Paris\",\"days\":2}}){nl}[tool call] now({{}}){nl}", output.ToString());
        Assert.Equal($"[reasoning] The user wants the weather.{nl}", error.ToString());
    }

    [Fact]
    public async Task A_tool_call_stays_in_the_conversation_and_the_next_line_continues_it()
    {
        var client = new ScriptedClient(
        [
            [
                new ChatResponseUpdate(ChatRole.Assistant, "Checking."),
                new ChatResponseUpdate(ChatRole.Assistant, [new FunctionCallContent("call_0", "get_weather", new Dictionary<string, object?> { ["city"] = "Oslo" }),
                    new UsageContent(new UsageDetails { InputTokenCount = 7, OutputTokenCount = 12 })])
                {
                    FinishReason = ChatFinishReason.ToolCalls,
                    AdditionalProperties = new() { ["prefill_seconds"] = 0.5, ["decode_seconds"] = 1.0 },
                },
            ],
            [
                new ChatResponseUpdate(ChatRole.Assistant, "It is sunny."),
                new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(new UsageDetails { InputTokenCount = 30, OutputTokenCount = 4, CachedInputTokenCount = 20 })])
                {
                    FinishReason = ChatFinishReason.Stop,
                },
            ],
        ]);
        var output = new StringWriter();
        var error = new StringWriter();
        var io = CliIO.Capture(output, error, new StringReader("Weather in Oslo?\nAnd tomorrow?\n"));
        var session = new ChatSession(io, client, null, "be brief", stats: true);
        Assert.Equal(0, await session.RunAsync(CancellationToken.None));

        string nl = Environment.NewLine;
        Assert.Equal($"Checking.{nl}[tool call] get_weather({{\"city\":\"Oslo\"}}){nl}It is sunny.{nl}", output.ToString());
        var stats = error.ToString().Split(nl, StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, stats.Length);
        Assert.StartsWith("[7 prompt tokens, prefill 14 tok/s; 12 new tokens, decode 11 tok/s; finish: tool_calls]", stats[0]);
        Assert.StartsWith("[30 prompt tokens (20 reused); 4 new tokens; finish: stop]", stats[1]);

        // The second request carries the first reply, tool call included, then the new line.
        var second = client.Requests[1];
        Assert.Equal([ChatRole.System, ChatRole.User, ChatRole.Assistant, ChatRole.User], second.Select(m => m.Role));
        var call = Assert.Single(second[2].Contents.OfType<FunctionCallContent>());
        Assert.Equal("get_weather", call.Name);
        Assert.Equal("Checking.", second[2].Text);
        Assert.Equal("And tomorrow?", second[3].Text);
        Assert.Equal(5, session.Messages.Count); // and the second reply
    }

    /// <summary>An <see cref="IChatClient"/> that answers with prepared updates and records what it was sent.</summary>
    private sealed class ScriptedClient(List<List<ChatResponseUpdate>> replies) : IChatClient
    {
        public List<List<ChatMessage>> Requests { get; } = [];

        public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
            GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken);

        public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
            [EnumeratorCancellation] CancellationToken cancellationToken = default)
        {
            Requests.Add(messages.ToList());
            foreach (var update in replies[Requests.Count - 1])
            {
                await Task.Yield();
                yield return update;
            }
        }

        public object? GetService(Type serviceType, object? serviceKey = null) => null;

        public void Dispose() { }
    }
}
