using System.ClientModel;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Jamba.Inference.Chat;
using Jamba.Inference.Engine;
using Jamba.Inference.Generation;
using Microsoft.Extensions.AI;
using OpenAI;
using OpenAI.Chat;
using Xunit;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace Jamba.Server.Tests;

/// <summary>Every endpoint and error over real HTTP on loopback, with raw HttpClient and the official OpenAI client.</summary>
[Collection(ServerCollection.Name)]
public sealed class ProtocolTests(ServerFixture fx)
{
    private const string Hello = """{"role":"user","content":"Call me Ishmael."}""";

    private ChatClient OpenAIChat(string? key = ServerFixture.ApiKey) =>
        new(ServerFixture.ModelName, new ApiKeyCredential(key ?? "none"), new OpenAIClientOptions { Endpoint = fx.ApiRoot });

    /// <summary>What the in-process session layer answers, greedy.</summary>
    private async Task<string> InProcessGreedy(string user, int maxTokens)
    {
        using var client = new JambaChatClient(fx.Handle);
        var response = await client.GetResponseAsync([new AIChatMessage(ChatRole.User, user)], new ChatOptions { Temperature = 0, MaxOutputTokens = maxTokens });
        return response.Text;
    }

    [Fact]
    public async Task HealthModelsAndMetricsAnswer()
    {
        using var open = fx.NewHttp(null);
        var health = await open.GetAsync("/health");
        Assert.Equal(200, (int)health.StatusCode);
        Assert.Equal("ok", JsonNode.Parse(await health.Content.ReadAsStringAsync())!["status"]!.GetValue<string>());

        var models = JsonNode.Parse(await fx.Http.GetStringAsync("/v1/models"))!;
        Assert.Equal("list", (string?)models["object"]);
        Assert.Equal(ServerFixture.ModelName, (string?)models["data"]![0]!["id"]);
        Assert.Equal(4096, (int)models["data"]![0]!["max_model_len"]!);

        var (status, _, _) = await ServerFixture.PostAsync(fx.Http, "/v1/chat/completions", $$"""{"model":"{{ServerFixture.ModelName}}","messages":[{{Hello}}],"max_tokens":3}""");
        Assert.Equal(200, status);
        string metrics = await open.GetStringAsync("/metrics");
        AssertPrometheus(metrics);
        foreach (var name in new[] { "jamba_requests_total", "jamba_completion_tokens_total", "jamba_prompt_tokens_total", "jamba_time_to_first_token_seconds_bucket",
                     "jamba_queue_depth", "jamba_sequences_running", "jamba_cache_bytes", "jamba_server_requests_total" })
            Assert.Contains(name, metrics);
    }

    /// <summary>Every line of the scrape is a comment or <c>name{labels} value</c>.</summary>
    internal static void AssertPrometheus(string text)
    {
        var sample = new Regex(@"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*=""([^""\\]|\\.)*"",?)*\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)( [0-9]+)?$");
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.NotEmpty(lines);
        foreach (var line in lines)
        {
            if (line.StartsWith("# TYPE ", StringComparison.Ordinal) || line.StartsWith("# HELP ", StringComparison.Ordinal) || line == "# EOF") continue;
            Assert.True(sample.IsMatch(line), $"not a Prometheus sample line: {line}");
        }
    }

    [Fact]
    public async Task KeysAreCheckedOnTheApiOnly()
    {
        using var none = fx.NewHttp(null);
        using var wrong = fx.NewHttp("wrong-key");
        foreach (var http in new[] { none, wrong })
        {
            var response = await http.GetAsync("/v1/models");
            Assert.Equal(401, (int)response.StatusCode);
            var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;
            Assert.Equal("invalid_api_key", (string?)error["code"]);
            Assert.NotNull(error["message"]);
            Assert.True(error.AsObject().ContainsKey("param") && error.AsObject().ContainsKey("type"));
        }
        Assert.Equal(200, (int)(await none.GetAsync("/health")).StatusCode);
        var ex = await Assert.ThrowsAsync<ClientResultException>(() => OpenAIChat("wrong-key").CompleteChatAsync("hi"));
        Assert.Equal(401, ex.Status);
    }

    [Theory]
    [InlineData("""{"messages":[{{H}}],"top_p":3}""", 400, "top_p")]
    [InlineData("""{"messages":[{{H}}],"temperature":-1}""", 400, "temperature")]
    [InlineData("""{"messages":[{{H}}],"max_tokens":0}""", 400, "max_tokens")]
    [InlineData("""{"messages":[{{H}}],"max_completion_tokens":0}""", 400, "max_completion_tokens")]
    [InlineData("""{"messages":[{{H}}],"presence_penalty":5}""", 400, "presence_penalty")]
    [InlineData("""{"messages":[{{H}}],"min_p":2}""", 400, "min_p")]
    [InlineData("""{"messages":[{{H}}],"repetition_penalty":0}""", 400, "repetition_penalty")]
    [InlineData("""{"messages":[{{H}}],"top_logprobs":3}""", 400, "top_logprobs")]
    [InlineData("""{"messages":[{{H}}],"n":0}""", 400, "n")]
    [InlineData("""{"messages":[{{H}}],"stop":[1]}""", 400, "stop[0]")]
    [InlineData("""{"messages":[{{H}}],"temperature":"hot"}""", 400, "temperature")]
    [InlineData("""{"messages":[]}""", 400, "messages")]
    [InlineData("""{"model":"x"}""", 400, "messages")]
    [InlineData("""{"messages":[{"role":"wizard","content":"x"}]}""", 400, "messages[0].role")]
    [InlineData("""{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}""", 400, "messages[0].content[0].type")]
    [InlineData("""{"messages":[{"role":"tool","content":"x"}]}""", 400, "messages[0].tool_call_id")]
    [InlineData("""{"messages":[{{H}}],"tools":[{"type":"function"}]}""", 400, "tools[0].function")]
    [InlineData("""{"messages":[{{H}}],"tool_choice":"always"}""", 400, "tool_choice")]
    [InlineData("""{"messages":[{{H}}],"response_format":{"type":"yaml"}}""", 400, "response_format.type")]
    [InlineData("""{"messages":[{{H}}],"documents":["text"]}""", 400, "documents[0]")]
    [InlineData("""{"model":"gpt-4o","messages":[{{H}}]}""", 404, "model")]
    public async Task BadChatRequestsNameTheParameter(string json, int status, string param)
    {
        var (code, body, _) = await ServerFixture.PostAsync(fx.Http, "/v1/chat/completions", json.Replace("{{H}}", Hello));
        Assert.Equal(status, code);
        Assert.Equal(param, (string?)body!["error"]!["param"]);
        Assert.False(string.IsNullOrEmpty((string?)body["error"]!["message"]));
    }

    [Theory]
    [InlineData("""{"prompt":"x","top_p":0}""", "top_p")]
    [InlineData("""{"prompt":"x","echo":true}""", "echo")]
    [InlineData("""{"prompt":"x","logprobs":50}""", "logprobs")]
    [InlineData("""{"prompt":[5,99999]}""", "prompt")]
    [InlineData("""{"max_tokens":3}""", "prompt")]
    public async Task BadCompletionRequestsNameTheParameter(string json, string param)
    {
        var (code, body, _) = await ServerFixture.PostAsync(fx.Http, "/v1/completions", json);
        Assert.Equal(400, code);
        Assert.Equal(param, (string?)body!["error"]!["param"]);
    }

    [Fact]
    public async Task BadJsonOversizedBodiesAndLongPromptsAreRefused()
    {
        var (code, body, _) = await ServerFixture.PostAsync(fx.Http, "/v1/chat/completions", "{\"messages\": [");
        Assert.Equal(400, code);
        Assert.Equal("invalid_json", (string?)body!["error"]!["code"]);

        string huge = "{\"messages\":[{\"role\":\"user\",\"content\":\"" + new string('a', (int)ServerFixture.MaxBody) + "\"}]}";
        (code, body, _) = await ServerFixture.PostAsync(fx.Http, "/v1/chat/completions", huge);
        Assert.Equal(413, code);
        Assert.Equal("request_too_large", (string?)body!["error"]!["code"]);

        string longPrompt = string.Join(' ', Enumerable.Repeat("whale", 5000));
        (code, body, _) = await ServerFixture.PostAsync(fx.Http, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"" + longPrompt + "\"}]}");
        Assert.Equal(400, code);
        Assert.Equal("context_length_exceeded", (string?)body!["error"]!["code"]);
        (code, body, _) = await ServerFixture.PostAsync(fx.Http, "/v1/completions", $$"""{"prompt":"{{longPrompt}}"}""");
        Assert.Equal(400, code);
        Assert.Equal("context_length_exceeded", (string?)body!["error"]!["code"]);
    }

    [Fact]
    public async Task OpenAIClientGetsTheInProcessGreedyText()
    {
        string expected = await InProcessGreedy("Call me Ishmael.", 12);
        Assert.NotEmpty(expected);
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 };
        var completion = (await OpenAIChat().CompleteChatAsync([new UserChatMessage("Call me Ishmael.")], options)).Value;
        Assert.Equal(expected, completion.Content[0].Text);
        Assert.Equal(OpenAI.Chat.ChatFinishReason.Length, completion.FinishReason);
        Assert.Equal(12, completion.Usage.OutputTokenCount);
        Assert.True(completion.Usage.InputTokenCount > 5);

        var streamed = new StringBuilder();
        OpenAI.Chat.ChatFinishReason? finish = null;
        await foreach (var update in OpenAIChat().CompleteChatStreamingAsync([new UserChatMessage("Call me Ishmael.")], options))
        {
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
            finish ??= update.FinishReason;
        }
        Assert.Equal(expected, streamed.ToString());
        Assert.Equal(OpenAI.Chat.ChatFinishReason.Length, finish);
    }

    [Fact]
    public async Task StreamIsServerSentEventsEndingWithDone()
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent($$$"""{"messages":[{{{Hello}}}],"max_tokens":6,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}""", Encoding.UTF8, "application/json"),
        };
        using var response = await fx.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)response.StatusCode);
        Assert.StartsWith("text/event-stream", response.Content.Headers.ContentType!.ToString());
        string raw = await response.Content.ReadAsStringAsync();
        Assert.EndsWith("data: [DONE]\n\n", raw);
        var events = raw.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e["data: ".Length..])!).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", (string?)c["object"]));
        Assert.Single(chunks.Select(c => (string?)c["id"]).Distinct());
        Assert.Equal("assistant", (string?)chunks[0]["choices"]![0]!["delta"]!["role"]);
        var usage = chunks[^1];
        Assert.Empty(usage["choices"]!.AsArray());
        Assert.Equal(6, (int)usage["usage"]!["completion_tokens"]!);
        var withChoices = chunks[..^1];
        Assert.All(withChoices, c => Assert.True(c.AsObject().ContainsKey("usage") && c["usage"] is null));
        Assert.Equal("length", (string?)withChoices[^1]["choices"]![0]!["finish_reason"]);
        string text = string.Concat(withChoices.Select(c => (string?)c["choices"]![0]!["delta"]!["content"] ?? ""));
        Assert.Equal(await InProcessGreedy("Call me Ishmael.", 6), text);
    }

    [Fact]
    public async Task SeededSamplingIsReproducibleAndNGivesChoices()
    {
        string body = $$"""{"messages":[{{Hello}}],"max_tokens":10,"temperature":0.9,"top_k":50,"seed":42,"n":2}""";
        var (_, first, _) = await ServerFixture.PostAsync(fx.Http, "/v1/chat/completions", body);
        var (_, second, _) = await ServerFixture.PostAsync(fx.Http, "/v1/chat/completions", body);
        Assert.Equal(2, first!["choices"]!.AsArray().Count);
        Assert.Equal(first["choices"]!.ToJsonString(), second!["choices"]!.ToJsonString());
        Assert.Equal(20, (int)first["usage"]!["completion_tokens"]!);

        string completion = """{"prompt":"Call me Ishmael.","max_tokens":10,"temperature":0.8,"seed":7}""";
        var (_, a, _) = await ServerFixture.PostAsync(fx.Http, "/v1/completions", completion);
        var (_, b, _) = await ServerFixture.PostAsync(fx.Http, "/v1/completions", completion);
        Assert.Equal((string?)a!["choices"]![0]!["text"], (string?)b!["choices"]![0]!["text"]);
    }

    [Fact]
    public async Task CompletionsAreTheEngineGeneration()
    {
        var expected = await fx.Handle.Engine.GenerateTextAsync(new GenerationRequest(fx.Handle.Encode("Call me Ishmael."),
            new GenerationOptions { Temperature = 0, MaxNewTokens = 10, IncludeSpecialTokensInText = false }));
        var (status, body, _) = await ServerFixture.PostAsync(fx.Http, "/v1/completions", $$"""{"model":"{{ServerFixture.ModelName}}","prompt":"Call me Ishmael.","max_tokens":10,"temperature":0,"logprobs":2}""");
        Assert.Equal(200, status);
        Assert.Equal("text_completion", (string?)body!["object"]);
        var choice = body["choices"]![0]!;
        Assert.Equal(expected.Text, (string?)choice["text"]);
        Assert.Equal(10, choice["logprobs"]!["tokens"]!.AsArray().Count);
        Assert.All(choice["logprobs"]!["top_logprobs"]!.AsArray(), t => Assert.Equal(2, t!.AsObject().Count));
        Assert.Equal(expected.Usage.PromptTokens, (int)body["usage"]!["prompt_tokens"]!);

        // Streamed: the same text in text_completion chunks.
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent("""{"prompt":"Call me Ishmael.","max_tokens":10,"temperature":0,"stream":true}""", Encoding.UTF8, "application/json"),
        };
        using var response = await fx.Http.SendAsync(request);
        var events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", events[^1]);
        Assert.Equal(expected.Text, string.Concat(events[..^1].Select(e => (string?)JsonNode.Parse(e[6..])!["choices"]![0]!["text"])));
    }

    [Fact]
    public async Task ChatLogprobsComeFromTheEngineUpdates()
    {
        var (status, body, _) = await ServerFixture.PostAsync(fx.Http, "/v1/chat/completions", $$"""{"messages":[{{Hello}}],"max_tokens":8,"temperature":0,"logprobs":true,"top_logprobs":3}""");
        Assert.Equal(200, status);
        var content = body!["choices"]![0]!["logprobs"]!["content"]!.AsArray();
        Assert.Equal(8, content.Count);
        foreach (var entry in content)
        {
            Assert.True((double)entry!["logprob"]! <= 0);
            var top = entry["top_logprobs"]!.AsArray();
            Assert.Equal(3, top.Count);
            Assert.Equal((string?)entry["token"], (string?)top[0]!["token"]); // greedy: the chosen token is the most likely
        }
        var option = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 5, IncludeLogProbabilities = true, TopLogProbabilityCount = 2 };
        var completion = (await OpenAIChat().CompleteChatAsync([new UserChatMessage("Call me Ishmael.")], option)).Value;
        Assert.Equal(5, completion.ContentTokenLogProbabilities.Count);
        Assert.All(completion.ContentTokenLogProbabilities, t => Assert.Equal(2, t.TopLogProbabilities.Count));
    }

    [Fact]
    public async Task StopSequencesResponseFormatAndTemplateKnobsAreAccepted()
    {
        string free = await InProcessGreedy("Call me Ishmael.", 20);
        Assert.True(free.Length > 4);
        string stop = free.Substring(2, 2);
        var (status, body, _) = await ServerFixture.PostAsync(fx.Http, "/v1/chat/completions",
            $$"""{"messages":[{{Hello}}],"max_tokens":20,"temperature":0,"stop":{{System.Text.Json.JsonSerializer.Serialize(stop)}}}""");
        Assert.Equal(200, status);
        Assert.Equal(free[..free.IndexOf(stop, StringComparison.Ordinal)], (string?)body!["choices"]![0]!["message"]!["content"]);
        Assert.Equal("stop", (string?)body["choices"]![0]!["finish_reason"]);

        foreach (var extra in new[]
                 {
                     """ "response_format":{"type":"json_object"} """,
                     """ "response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object"}}} """,
                     """ "chat_template_kwargs":{"knobs":{"is_set":true,"citation_mode":"fast"}},"documents":[{"title":"Moby","text":"A whale."}] """,
                     """ "top_k":-1,"min_p":0.1,"repetition_penalty":1.1,"frequency_penalty":0.5,"presence_penalty":0.5,"seed":3 """,
                 })
        {
            (status, body, _) = await ServerFixture.PostAsync(fx.Http, "/v1/chat/completions", $$"""{"messages":[{{Hello}}],"max_tokens":4,{{extra}}}""");
            Assert.True(status == 200, body?.ToJsonString());
        }
    }
}
