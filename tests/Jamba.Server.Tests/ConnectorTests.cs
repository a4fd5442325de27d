using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Jamba.Inference.Chat;
using Jamba.Inference.Engine;
using Jamba.Inference.Generation;
using Jamba.Inference.Modeling;
using Jamba.Inference.Templates;
using Jamba.MLNet;
using Jamba.Remote;
using Jamba.SemanticKernel;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.ML;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;
using OpenAI;
using OpenAI.Chat;
using Xunit;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;
using ChatFinishReason = Microsoft.Extensions.AI.ChatFinishReason;
using FunctionCallContent = Microsoft.Extensions.AI.FunctionCallContent;

namespace Jamba.Server.Tests;

/// <summary>The connectors in remote mode against the server: the same application code gives what it gives in-process.</summary>
[Collection(ServerCollection.Name)]
public sealed class ConnectorTests(ServerFixture fx)
{
    [Fact]
    public async Task SemanticKernelRemoteGivesTheInProcessGreedyText()
    {
        async Task<string> Ask(Action<IKernelBuilder> register)
        {
            var builder = Kernel.CreateBuilder();
            register(builder);
            var kernel = builder.Build();
            var chat = kernel.GetRequiredService<IChatCompletionService>();
            var history = new ChatHistory();
            history.AddUserMessage("Call me Ishmael.");
            var settings = new JambaPromptExecutionSettings { Temperature = 0, MaxTokens = 12 };
            var reply = await chat.GetChatMessageContentAsync(history, settings, kernel);
            var streamed = string.Concat(await chat.GetStreamingChatMessageContentsAsync(history, settings, kernel).Select(u => u.Content).ToListAsync());
            Assert.Equal(reply.Content, streamed);
            return reply.Content!;
        }
        string local = await Ask(b => b.AddJambaChatCompletion(fx.Folder, loadOptions: new ModelLoadOptions { Model = new ModelOptions { DType = ComputeDType.Float32 } }));
        string remote = await Ask(b => b.AddJambaChatCompletion(fx.BaseAddress, ServerFixture.ApiKey, ServerFixture.ModelName));
        Assert.NotEmpty(local);
        Assert.Equal(local, remote);
    }

    [Fact]
    public async Task MeaiRemoteGivesTheInProcessGreedyText()
    {
        async Task<(string Text, ChatResponse Response)> Ask(Action<IServiceCollection> register)
        {
            var services = new ServiceCollection();
            register(services);
            await using var provider = services.BuildServiceProvider();
            var client = provider.GetRequiredService<IChatClient>();
            var response = await client.GetResponseAsync([new AIChatMessage(ChatRole.User, "Call me Ishmael.")], new ChatOptions { Temperature = 0, MaxOutputTokens = 12, TopK = 5 });
            var streamed = await client.GetStreamingResponseAsync([new AIChatMessage(ChatRole.User, "Call me Ishmael.")], new ChatOptions { Temperature = 0, MaxOutputTokens = 12 }).ToChatResponseAsync();
            Assert.Equal(response.Text, streamed.Text);
            return (response.Text, response);
        }
        var local = await Ask(s => s.AddJambaChatClient(fx.Folder, loadOptions: new ModelLoadOptions { Model = new ModelOptions { DType = ComputeDType.Float32 } }));
        var remote = await Ask(s => s.AddJambaChatClient(new Uri(fx.BaseAddress, "v1"), ServerFixture.ApiKey, ServerFixture.ModelName));
        Assert.Equal(local.Text, remote.Text);
        Assert.Equal(ChatFinishReason.Length, remote.Response.FinishReason);
        Assert.Equal(local.Response.Usage!.InputTokenCount, remote.Response.Usage!.InputTokenCount);
    }

    [Fact]
    public void MlNetRemoteRowsEqualInProcessRows()
    {
        var ml = new MLContext(seed: 1);
        var rows = new[] { "Call me Ishmael.", "Some years ago", "It is a way I have", "Whenever I find myself" }.Select(p => new PromptRow { Prompt = p }).ToList();
        var data = ml.Data.LoadFromEnumerable(rows);
        List<GenerationOutput> Run(JambaTextGenerationOptions options)
        {
            var model = ml.Transforms.Text.GenerateText(options).Fit(data);
            return ml.Data.CreateEnumerable<GenerationOutput>(model.Transform(data), reuseRowObject: false).ToList();
        }
        var local = Run(new JambaTextGenerationOptions { ModelPath = fx.Folder, DType = ComputeDType.Float32, InputColumnName = "Prompt", MaxTokens = 8, BatchSize = 4 });
        var remote = Run(new JambaTextGenerationOptions { Endpoint = fx.BaseAddress, ApiKey = ServerFixture.ApiKey, ModelId = ServerFixture.ModelName, InputColumnName = "Prompt", MaxTokens = 8, BatchSize = 4 });
        Assert.Equal(local.Select(r => (r.GeneratedText, r.FinishReason, r.PromptTokens, r.CompletionTokens)), remote.Select(r => (r.GeneratedText, r.FinishReason, r.PromptTokens, r.CompletionTokens)));
        Assert.Throws<ArgumentException>(() => new JambaTextGenerationOptions { Endpoint = fx.BaseAddress, InputColumnName = "Prompt" }.Validate()); // ModelId missing
    }

    /// <summary>A server whose chat client plays back <paramref name="outputs"/> as the model's text (the protocol, the session
    /// layer's parsing and the HTTP are real; only the model's words are chosen).</summary>
    private async Task<(JambaServer Server, Script Script)> ScriptedServer(ToolCallFormat? format, params string[] outputs)
    {
        var script = new Script(outputs);
        var template = ChatTemplate.Parse(File.ReadAllText(Path.Combine(ServerFixture.TemplatesRoot, "jamba-mini-1.7", "template.jinja")));
        var server = await JambaServer.StartAsync(new JambaServerOptions
        {
            ModelPath = fx.Folder,
            ServedModelName = "scripted",
            Port = 0,
            Load = new ModelLoadOptions { Model = new ModelOptions { DType = ComputeDType.Float32 } },
            ChatClientFactory = _ => new JambaChatClient(script.Generate, new JambaChatFormatter(template, "<|startoftext|>", "<|endoftext|>"), "scripted",
                new JambaChatClientOptions { ToolCallFormat = format }),
        });
        await server.ModelReady;
        return (server, script);
    }

    private const string WeatherCall = """<tool_calls>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</tool_calls>""";

    [Fact]
    public async Task ToolCallsRoundTripThroughTheOpenAIClient()
    {
        var (server, script) = await ScriptedServer(null, WeatherCall, WeatherCall, "It is sunny in Paris.");
        await using var _ = server;
        var chat = new ChatClient("scripted", new System.ClientModel.ApiKeyCredential("none"), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "v1") });
        var tool = ChatTool.CreateFunctionTool("get_weather", "The weather in a city.", BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"""));
        var options = new ChatCompletionOptions { Tools = { tool }, ToolChoice = ChatToolChoice.CreateAutoChoice() };
        var first = (await chat.CompleteChatAsync([new UserChatMessage("Weather in Paris?")], options)).Value;
        Assert.Equal(OpenAI.Chat.ChatFinishReason.ToolCalls, first.FinishReason);
        var call = Assert.Single(first.ToolCalls);
        Assert.Equal("get_weather", call.FunctionName);
        Assert.Equal("Paris", JsonNode.Parse(call.FunctionArguments.ToString())!["city"]!.GetValue<string>());
        Assert.Contains("get_weather", script.Prompts[0]); // the tool definition reached the template

        // Streamed: the call arrives as a tool_calls delta with finish_reason tool_calls.
        string? name = null;
        var arguments = new System.Text.StringBuilder();
        OpenAI.Chat.ChatFinishReason? finish = null;
        await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage("Weather in Paris?")], options))
        {
            foreach (var part in update.ToolCallUpdates)
            {
                name ??= part.FunctionName;
                arguments.Append(part.FunctionArgumentsUpdate?.ToString());
            }
            finish ??= update.FinishReason;
        }
        Assert.Equal("get_weather", name);
        Assert.Equal("Paris", JsonNode.Parse(arguments.ToString())!["city"]!.GetValue<string>());
        Assert.Equal(OpenAI.Chat.ChatFinishReason.ToolCalls, finish);

        // The result goes back as a tool message and is rendered into the next prompt.
        var answer = (await chat.CompleteChatAsync([new UserChatMessage("Weather in Paris?"), new AssistantChatMessage(first.ToolCalls), new ToolChatMessage(call.Id, "sunny, 24 C")], options)).Value;
        Assert.Equal("It is sunny in Paris.", answer.Content[0].Text);
        Assert.Contains("sunny, 24 C", script.Prompts[2]);
    }

    [Fact]
    public async Task RemoteClientParsesRawToolCallsAndSendsDocumentsAndKwargs()
    {
        // The server returns the model's tool-call markup as text (like vLLM without a tool-call parser).
        var (server, script) = await ScriptedServer(ToolCallFormat.None, WeatherCall, "<think>Whales.</think>Call me Ishmael.", WeatherCall);
        await using var _ = server;
        using var client = RemoteJambaChatClient.Create(server.BaseAddress, null, "scripted", new RemoteJambaChatClientOptions { ToolCallFormat = ToolCallFormat.JambaToolCalls });
        var options = new ChatOptions { Tools = [AIFunctionFactory.CreateDeclaration("get_weather", "The weather.", JsonSerializer.Deserialize<JsonElement>("""{"type":"object","properties":{"city":{"type":"string"}}}"""))] };
        options.WithDocuments([new JambaDocument("The white whale is called Moby Dick.", "Moby")]);
        (options.AdditionalProperties ??= [])[JambaChatFormatter.ChatTemplateKwargsKey] = new JsonObject { ["thinking_prefix"] = "PREFIX-MARK" };
        options.AdditionalProperties[ChatGenerationSettings.MinPKey] = 0.05;
        var response = await client.GetResponseAsync([new AIChatMessage(ChatRole.User, "Weather?")], options);
        Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
        var call = Assert.Single(response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        Assert.Equal("get_weather", call.Name);
        Assert.Equal("Paris", call.Arguments!["city"]!.ToString());
        Assert.Contains("The white whale is called Moby Dick.", script.Prompts[0]); // documents went in the body as vLLM reads them
        Assert.Equal(0.05f, script.Options[0].MinP, 3);

        // Reasoning split in the streamed path.
        var updates = await client.GetStreamingResponseAsync([new AIChatMessage(ChatRole.User, "Who?")], new ChatOptions { MaxOutputTokens = 20 }).ToListAsync();
        var contents = updates.SelectMany(u => u.Contents).ToList();
        Assert.Equal("Call me Ishmael.", string.Concat(contents.OfType<Microsoft.Extensions.AI.TextContent>().Select(t => t.Text)));
        Assert.Equal("Whales.", string.Concat(contents.OfType<TextReasoningContent>().Select(t => t.Text)));

        // Streamed tool calls from raw text.
        var streamedCall = (await client.GetStreamingResponseAsync([new AIChatMessage(ChatRole.User, "Weather?")], options).ToListAsync())
            .SelectMany(u => u.Contents).OfType<FunctionCallContent>().Single();
        Assert.Equal("get_weather", streamedCall.Name);
    }

    [Fact]
    public async Task CitationsTravelFromTheServerToTheRemoteClient()
    {
        var (server, script) = await ScriptedServer(null, "Moby Dick is the whale.<citations>[0]</citations>", "Moby Dick is the whale.<citations>[0]</citations>");
        await using var _ = server;
        using var client = RemoteJambaChatClient.Create(server.BaseAddress, null, "scripted");
        var options = new ChatOptions().WithDocuments([new JambaDocument("The white whale is called Moby Dick.", "Moby")]).WithCitations();
        var response = await client.GetResponseAsync([new AIChatMessage(ChatRole.User, "Which whale?")], options);
        Assert.Equal("Moby Dick is the whale.", response.Text);
        var cited = Assert.Single(response.GetCitations());
        Assert.Equal(0, cited.DocumentIndex);
        Assert.Equal("Moby", cited.Title);
        Assert.Contains("citation", script.Prompts[0]); // the knobs reached the template

        var updates = await client.GetStreamingResponseAsync([new AIChatMessage(ChatRole.User, "Which whale?")], options).ToListAsync();
        Assert.Equal("Moby Dick is the whale.", string.Concat(updates.Select(u => u.Text)));
        Assert.Equal(0, Assert.Single(updates.SelectMany(u => u.GetCitations())).DocumentIndex);
    }

    /// <summary>Plays back outputs in order as the model's text, in small pieces, and records prompts and options.</summary>
    internal sealed class Script(IEnumerable<string> outputs)
    {
        private readonly Queue<string> _outputs = new(outputs);
        public List<string> Prompts { get; } = [];
        public List<GenerationOptions> Options { get; } = [];

        internal async IAsyncEnumerable<GenerationUpdate> Generate(string prompt, GenerationOptions options, [EnumeratorCancellation] CancellationToken cancellationToken)
        {
            string output;
            lock (_outputs)
            {
                Prompts.Add(prompt);
                Options.Add(options.Clone());
                output = _outputs.Dequeue();
            }
            int pieces = 0;
            for (int i = 0; i < output.Length; i += 3)
            {
                cancellationToken.ThrowIfCancellationRequested();
                await Task.Yield();
                pieces++;
                yield return new GenerationUpdate { TokenId = 100 + pieces, Text = output.Substring(i, Math.Min(3, output.Length - i)) };
            }
            yield return new GenerationUpdate { TokenId = 2, FinishReason = FinishReason.Stop, Usage = new GenerationUsage(prompt.Length / 4, pieces + 1) };
        }
    }
}

public sealed class PromptRow
{
    public string Prompt { get; set; } = "";
}

public sealed class GenerationOutput
{
    public string Prompt { get; set; } = "";
    public string GeneratedText { get; set; } = "";
    public string FinishReason { get; set; } = "";
    public int PromptTokens { get; set; }
    public int CompletionTokens { get; set; }
}
