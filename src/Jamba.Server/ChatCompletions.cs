using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Jamba.Inference.Chat;
using Jamba.Inference.Generation;
using Jamba.Inference.Tokenization;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;

namespace Jamba.Server;

/// <summary>
/// <c>POST /v1/chat/completions</c>: the OpenAI request mapped to Microsoft.Extensions.AI messages and
/// <see cref="ChatOptions"/>, run by the <see cref="JambaChatClient"/>, and its updates mapped back to OpenAI's
/// <c>chat.completion</c> or streamed <c>chat.completion.chunk</c>s.
/// </summary>
internal static class ChatCompletions
{
    /// <summary>OpenAI's name of a <see cref="GenerationOptions"/> setting (validation messages name what the client wrote).</summary>
    internal static string? OpenAIName(string property) => property switch
    {
        nameof(GenerationOptions.MaxNewTokens) => "max_tokens",
        nameof(GenerationOptions.Temperature) => "temperature",
        nameof(GenerationOptions.TopP) => "top_p",
        nameof(GenerationOptions.TopK) => "top_k",
        nameof(GenerationOptions.MinP) => "min_p",
        nameof(GenerationOptions.RepetitionPenalty) => "repetition_penalty",
        nameof(GenerationOptions.PresencePenalty) => "presence_penalty",
        nameof(GenerationOptions.FrequencyPenalty) => "frequency_penalty",
        nameof(GenerationOptions.StopSequences) => "stop",
        nameof(GenerationOptions.TopLogProbs) => "top_logprobs",
        nameof(GenerationOptions.Seed) => "seed",
        _ => null,
    };

    /// <summary>A parsed request.</summary>
    internal sealed record Request(List<ChatMessage> Messages, ChatOptions Options, int N, bool Stream, bool IncludeUsage, bool LogProbs, string? Model);

    public static async Task HandleAsync(JambaServer server, HttpContext ctx)
    {
        var arrived = Stopwatch.GetTimestamp();
        var body = await JambaServer.ReadBodyAsync(ctx).ConfigureAwait(false);
        var model = server.RequireModel();
        var request = Parse(body, server.Options.MaxChoices);
        server.CheckModel(request.Model);
        // Validate with OpenAI's names before anything runs.
        GenerationOptions generation;
        try
        {
            generation = model.Client.CreateGenerationOptions(request.Options);
        }
        catch (Exception e) when (e is NotSupportedException or ArgumentException && request.Options.ResponseFormat is ChatResponseFormatJson)
        {
            // The response format's schema cannot be compiled (an unsupported keyword, an invalid or oversized schema).
            throw OpenAIErrorException.BadRequest("'response_format.json_schema.schema': " + e.Message, "response_format");
        }
        if (Json.Has(body, "max_completion_tokens") && !Json.Has(body, "max_tokens"))
            generation.Validate(p => p == nameof(GenerationOptions.MaxNewTokens) ? "max_completion_tokens" : OpenAIName(p));
        else
            generation.Validate(OpenAIName);

        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        if (server.Options.LogPrompts)
            server.Logger.LogInformation("{Id} chat request: {Messages}", id, string.Join(" | ", request.Messages.Select(m => $"{m.Role}: {m.Text}")));

        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
        var events = Channel.CreateUnbounded<(int Index, ChatResponseUpdate? Update, Exception? Error)>(new UnboundedChannelOptions { SingleReader = true });
        var runs = new Task[request.N];
        for (int i = 0; i < request.N; i++)
        {
            int index = i;
            var options = request.Options.Clone();
            if (request.N > 1 && options.Seed is { } seed) options.Seed = seed + index; // n samples, each reproducible
            runs[i] = Task.Run(async () =>
            {
                try
                {
                    await foreach (var update in model.Client.GetStreamingResponseAsync(request.Messages, options, linked.Token).ConfigureAwait(false))
                        events.Writer.TryWrite((index, update, null));
                }
                catch (Exception ex)
                {
                    events.Writer.TryWrite((index, null, ex));
                }
            }, CancellationToken.None);
        }
        _ = Task.WhenAll(runs).ContinueWith(_ => events.Writer.TryComplete(), TaskScheduler.Default);

        var choices = Enumerable.Range(0, request.N).Select(i => new ChoiceState(i, model.Tokenizer, request.LogProbs)).ToArray();
        try
        {
            if (request.Stream) await StreamAsync(server, ctx, request, choices, events.Reader, id, created, arrived).ConfigureAwait(false);
            else await RespondAsync(server, ctx, request, choices, events.Reader, id, created).ConfigureAwait(false);
        }
        finally
        {
            linked.Cancel(); // a failed choice (or the client leaving) ends the others
            await Task.WhenAll(runs).ConfigureAwait(false);
        }
    }

    private static async Task RespondAsync(JambaServer server, HttpContext ctx, Request request, ChoiceState[] choices,
        ChannelReader<(int Index, ChatResponseUpdate? Update, Exception? Error)> events, string id, long created)
    {
        await foreach (var (index, update, error) in events.ReadAllAsync(ctx.RequestAborted).ConfigureAwait(false))
        {
            if (error is not null) throw error;
            choices[index].Add(update!);
        }
        ctx.RequestAborted.ThrowIfCancellationRequested();
        var response = new JsonObject
        {
            ["id"] = id,
            ["object"] = "chat.completion",
            ["created"] = created,
            ["model"] = server.ModelName,
            ["choices"] = new JsonArray(choices.Select(c => (JsonNode)c.ToChoice()).ToArray()),
            ["usage"] = Usage(choices),
        };
        Log(server, id, choices);
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(Json.Write(response), ctx.RequestAborted).ConfigureAwait(false);
    }

    private static async Task StreamAsync(JambaServer server, HttpContext ctx, Request request, ChoiceState[] choices,
        ChannelReader<(int Index, ChatResponseUpdate? Update, Exception? Error)> events, string id, long created, long arrived)
    {
        bool started = false;
        async Task Send(JsonObject chunk)
        {
            if (!started)
            {
                started = true;
                ctx.Response.StatusCode = StatusCodes.Status200OK;
                ctx.Response.ContentType = "text/event-stream; charset=utf-8";
                ctx.Response.Headers.CacheControl = "no-cache";
                ctx.Response.Headers["X-Accel-Buffering"] = "no";
                JambaServer.FirstChunk.Record(Stopwatch.GetElapsedTime(arrived).TotalSeconds);
            }
            await Sse.WriteAsync(ctx.Response, Json.Write(chunk), ctx.RequestAborted).ConfigureAwait(false);
        }
        JsonObject Chunk(JsonObject choice) => new()
        {
            ["id"] = id,
            ["object"] = "chat.completion.chunk",
            ["created"] = created,
            ["model"] = server.ModelName,
            ["choices"] = new JsonArray(choice),
        };

        try
        {
            await foreach (var (index, update, error) in events.ReadAllAsync(ctx.RequestAborted).ConfigureAwait(false))
            {
                if (error is not null) throw error;
                var choice = choices[index];
                if (!choice.SentRole)
                {
                    choice.SentRole = true;
                    var first = Chunk(new JsonObject { ["index"] = index, ["delta"] = new JsonObject { ["role"] = "assistant", ["content"] = "" }, ["logprobs"] = null, ["finish_reason"] = null });
                    if (request.IncludeUsage) first["usage"] = null;
                    await Send(first).ConfigureAwait(false);
                }
                var delta = choice.Add(update!);
                if (delta is null) continue;
                var chunk = Chunk(delta);
                if (request.IncludeUsage) chunk["usage"] = null;
                await Send(chunk).ConfigureAwait(false);
            }
            ctx.RequestAborted.ThrowIfCancellationRequested();
            if (request.IncludeUsage)
                await Send(new JsonObject { ["id"] = id, ["object"] = "chat.completion.chunk", ["created"] = created, ["model"] = server.ModelName, ["choices"] = new JsonArray(), ["usage"] = Usage(choices) }).ConfigureAwait(false);
            Log(server, id, choices);
        }
        catch (Exception ex) when (started && !(ex is OperationCanceledException && ctx.RequestAborted.IsCancellationRequested))
        {
            // Headers are gone: report the error as an event, as OpenAI-compatible servers do, then end the stream.
            var error = OpenAIErrorException.From(ex, server.Options.RetryAfterSeconds);
            if (error.Status >= 500) server.Logger.LogError(ex, "{Id} failed while streaming", id);
            await Sse.WriteAsync(ctx.Response, Json.Write(error.ToJson()), ctx.RequestAborted).ConfigureAwait(false);
        }
        if (!started) await Send(Chunk(new JsonObject { ["index"] = 0, ["delta"] = new JsonObject(), ["logprobs"] = null, ["finish_reason"] = "stop" })).ConfigureAwait(false);
        await Sse.WriteDoneAsync(ctx.Response, ctx.RequestAborted).ConfigureAwait(false);
    }

    private static void Log(JambaServer server, string id, ChoiceState[] choices)
    {
        if (!server.Logger.IsEnabled(LogLevel.Information)) return;
        server.Logger.LogInformation("{Id} done: {Choices} choice(s), {Prompt} prompt + {Completion} completion tokens, finish {Finish}",
            id, choices.Length, choices[0].Usage?.InputTokenCount ?? 0, choices.Sum(c => c.Usage?.OutputTokenCount ?? 0), string.Join(",", choices.Select(c => c.FinishReason)));
        if (server.Options.LogPrompts)
            foreach (var c in choices) server.Logger.LogInformation("{Id} choice {Index}: {Text}", id, c.Index, c.Text);
    }

    private static JsonObject Usage(ChoiceState[] choices)
    {
        long prompt = choices[0].Usage?.InputTokenCount ?? 0;
        long completion = choices.Sum(c => c.Usage?.OutputTokenCount ?? 0);
        long cached = choices[0].Usage?.CachedInputTokenCount ?? 0;
        return new JsonObject
        {
            ["prompt_tokens"] = prompt,
            ["completion_tokens"] = completion,
            ["total_tokens"] = prompt + completion,
            ["prompt_tokens_details"] = new JsonObject { ["cached_tokens"] = cached },
        };
    }

    /// <summary>One choice: what has been generated, and the delta of each update.</summary>
    internal sealed class ChoiceState(int index, JambaTokenizer tokenizer, bool logProbs)
    {
        private readonly StringBuilder _text = new();
        private readonly StringBuilder _reasoning = new();
        private readonly List<FunctionCallContent> _calls = [];
        private readonly JsonArray _logProbs = [];
        private IReadOnlyList<JambaCitation>? _citations;

        public int Index { get; } = index;
        public bool SentRole { get; set; }
        public UsageDetails? Usage { get; private set; }
        public string FinishReason { get; private set; } = "stop";
        public string Text => _text.ToString();

        /// <summary>Takes an update in; returns the streamed choice object for it, or null when it adds nothing.</summary>
        public JsonObject? Add(ChatResponseUpdate update)
        {
            var delta = new JsonObject();
            var text = new StringBuilder();
            var reasoning = new StringBuilder();
            var calls = new JsonArray();
            foreach (var content in update.Contents)
            {
                switch (content)
                {
                    case TextContent t: text.Append(t.Text); break;
                    case TextReasoningContent r: reasoning.Append(r.Text); break;
                    case FunctionCallContent c:
                        calls.Add(new JsonObject
                        {
                            ["index"] = _calls.Count,
                            ["id"] = c.CallId,
                            ["type"] = "function",
                            ["function"] = new JsonObject { ["name"] = c.Name, ["arguments"] = ArgumentsJson(c) },
                        });
                        _calls.Add(c);
                        break;
                    case UsageContent u: Usage = u.Details; break;
                }
            }
            if (reasoning.Length > 0)
            {
                _reasoning.Append(reasoning);
                delta["reasoning_content"] = reasoning.ToString();
            }
            if (text.Length > 0)
            {
                _text.Append(text);
                delta["content"] = text.ToString();
            }
            if (calls.Count > 0) delta["tool_calls"] = calls;
            if (update.GetCitations() is { Count: > 0 } citations)
            {
                // Jamba's citation section (citation_mode "fast"), taken out of the text: the cited document numbers.
                _citations = citations;
                delta["citations"] = CitationsJson(citations);
            }
            JsonNode? logprobs = null;
            if (logProbs && update.RawRepresentation is GenerationUpdate { TokenId: { } token, LogProb: { } lp } raw && !tokenizer.IsSpecialToken(token))
            {
                var entry = LogProbEntry(token, lp, raw.TopLogProbs);
                _logProbs.Add(entry.DeepClone());
                logprobs = new JsonObject { ["content"] = new JsonArray(entry) };
            }
            string? finish = null;
            if (update.FinishReason is { } reason)
                finish = FinishReason = reason == ChatFinishReason.ToolCalls ? "tool_calls" : reason == ChatFinishReason.Length ? "length" : "stop";
            if (delta.Count == 0 && logprobs is null && finish is null) return null;
            return new JsonObject { ["index"] = Index, ["delta"] = delta, ["logprobs"] = logprobs, ["finish_reason"] = finish };
        }

        private JsonObject LogProbEntry(int token, float logProb, IReadOnlyList<TokenLogProb>? top)
        {
            var entry = TokenEntry(token, logProb);
            var alternatives = new JsonArray();
            foreach (var t in top ?? []) alternatives.Add(TokenEntry(t.TokenId, t.LogProb));
            entry["top_logprobs"] = alternatives;
            return entry;
        }

        private JsonObject TokenEntry(int token, float logProb)
        {
            string text = TokenText.Of(tokenizer, token);
            return new JsonObject
            {
                ["token"] = text,
                ["logprob"] = float.IsNegativeInfinity(logProb) ? -9999f : logProb,
                ["bytes"] = new JsonArray(Encoding.UTF8.GetBytes(text).Select(b => (JsonNode)(int)b).ToArray()),
            };
        }

        /// <summary>The non-streaming choice.</summary>
        public JsonObject ToChoice()
        {
            var message = new JsonObject { ["role"] = "assistant", ["content"] = _text.Length == 0 && _calls.Count > 0 ? null : _text.ToString() };
            if (_reasoning.Length > 0) message["reasoning_content"] = _reasoning.ToString();
            if (_citations is { Count: > 0 } citations) message["citations"] = CitationsJson(citations);
            if (_calls.Count > 0)
                message["tool_calls"] = new JsonArray(_calls.Select(c => (JsonNode)new JsonObject
                {
                    ["id"] = c.CallId,
                    ["type"] = "function",
                    ["function"] = new JsonObject { ["name"] = c.Name, ["arguments"] = ArgumentsJson(c) },
                }).ToArray());
            return new JsonObject
            {
                ["index"] = Index,
                ["message"] = message,
                ["logprobs"] = logProbs ? new JsonObject { ["content"] = _logProbs.DeepClone() } : null,
                ["finish_reason"] = FinishReason,
            };
        }

        private static JsonArray CitationsJson(IReadOnlyList<JambaCitation> citations) =>
            new(citations.Select(c => (JsonNode)c.DocumentIndex).ToArray());

        private static string ArgumentsJson(FunctionCallContent call) =>
            JsonSerializer.Serialize(call.Arguments ?? new Dictionary<string, object?>(), AIJsonUtilities.DefaultOptions);
    }

    // ---------------------------------------------------------------- request mapping

    internal static Request Parse(JsonObject body, int maxChoices)
    {
        var messagesNode = Json.Array(body, "messages") ?? throw OpenAIErrorException.BadRequest("'messages' is required: a non-empty array of messages.", "messages");
        if (messagesNode.Count == 0) throw OpenAIErrorException.BadRequest("'messages' must have at least one message.", "messages");
        var messages = new List<ChatMessage>();
        for (int i = 0; i < messagesNode.Count; i++) messages.Add(ReadMessage(messagesNode[i], $"messages[{i}]"));

        var options = new ChatOptions();
        options.ModelId = Json.String(body, "model");
        int? maxTokens = Json.Int32(body, "max_tokens") ?? Json.Int32(body, "max_completion_tokens");
        if (maxTokens is { } max) options.MaxOutputTokens = max;
        if (Json.Number(body, "temperature") is { } temperature) options.Temperature = (float)temperature;
        if (Json.Number(body, "top_p") is { } topP) options.TopP = (float)topP;
        if (Json.Int32(body, "top_k") is { } topK) options.TopK = topK == -1 ? 0 : topK; // vLLM: -1 = off
        if (Json.Integer(body, "seed") is { } seed) options.Seed = seed;
        if (Json.Number(body, "presence_penalty") is { } presence) options.PresencePenalty = (float)presence;
        if (Json.Number(body, "frequency_penalty") is { } frequency) options.FrequencyPenalty = (float)frequency;
        var stops = Json.Stop(body);
        if (stops.Count > 0) options.StopSequences = stops;
        var extra = new AdditionalPropertiesDictionary();
        if (Json.Number(body, "min_p") is { } minP) extra[ChatGenerationSettings.MinPKey] = minP;
        if (Json.Number(body, "repetition_penalty") is { } rep) extra[ChatGenerationSettings.RepetitionPenaltyKey] = rep;
        bool logProbs = Json.Bool(body, "logprobs") ?? false;
        int topLogProbs = Json.Int32(body, "top_logprobs") ?? 0;
        if (topLogProbs is < 0 or > 20) throw OpenAIErrorException.BadRequest($"'top_logprobs' must be between 0 and 20; found {topLogProbs}.", "top_logprobs");
        if (topLogProbs > 0 && !logProbs) throw OpenAIErrorException.BadRequest("'top_logprobs' needs 'logprobs' set to true.", "top_logprobs");
        if (logProbs)
        {
            extra[ChatGenerationSettings.LogProbsKey] = true;
            extra[ChatGenerationSettings.TopLogProbsKey] = topLogProbs;
        }
        if (Json.Array(body, "documents") is { } documents)
        {
            for (int i = 0; i < documents.Count; i++)
                if (documents[i] is not JsonObject) throw OpenAIErrorException.BadRequest($"'documents[{i}]' must be an object (e.g. {{\"title\": …, \"text\": …}}).", $"documents[{i}]");
            extra[JambaChatFormatter.DocumentsKey] = documents.DeepClone();
        }
        if (Json.Object(body, "chat_template_kwargs") is { } kwargs) extra[JambaChatFormatter.ChatTemplateKwargsKey] = kwargs.DeepClone();
        if (extra.Count > 0) options.AdditionalProperties = extra;

        options.Tools = ReadTools(body);
        options.ToolMode = ReadToolChoice(body);
        options.ResponseFormat = ReadResponseFormat(body);

        int n = Json.Int32(body, "n") ?? 1;
        if (n < 1 || n > maxChoices) throw OpenAIErrorException.BadRequest($"'n' must be between 1 and {maxChoices}; found {n}.", "n");
        bool stream = Json.Bool(body, "stream") ?? false;
        bool includeUsage = false;
        if (Json.Object(body, "stream_options") is { } streamOptions)
            includeUsage = Json.Bool(streamOptions, "include_usage", "stream_options.include_usage") ?? false;
        return new Request(messages, options, n, stream, includeUsage, logProbs, options.ModelId);
    }

    private static ChatMessage ReadMessage(JsonNode? node, string path)
    {
        if (node is not JsonObject m) throw OpenAIErrorException.BadRequest($"'{path}' must be an object with a 'role'.", path);
        string role = Json.String(m, "role", path + ".role") ?? throw OpenAIErrorException.BadRequest($"'{path}.role' is required.", path + ".role");
        var contents = new List<AIContent>();
        if (Json.String(m, "reasoning_content", path + ".reasoning_content") is { Length: > 0 } reasoning) contents.Add(new TextReasoningContent(reasoning));
        string? text = ReadText(m, path);
        ChatRole chatRole;
        switch (role)
        {
            case "system" or "developer":
                chatRole = ChatRole.System;
                break;
            case "user":
                chatRole = ChatRole.User;
                break;
            case "assistant":
                chatRole = ChatRole.Assistant;
                break;
            case "tool":
                {
                    string callId = Json.String(m, "tool_call_id", path + ".tool_call_id")
                        ?? throw OpenAIErrorException.BadRequest($"'{path}.tool_call_id' is required for a tool message.", path + ".tool_call_id");
                    return new ChatMessage(ChatRole.Tool, [new FunctionResultContent(callId, text ?? "")]) { AuthorName = Json.String(m, "name", path + ".name") };
                }
            default:
                throw OpenAIErrorException.BadRequest($"'{path}.role' must be system, developer, user, assistant or tool; found '{role}'.", path + ".role");
        }
        if (!string.IsNullOrEmpty(text)) contents.Add(new TextContent(text));
        if (chatRole == ChatRole.Assistant && Json.Array(m, "tool_calls", path + ".tool_calls") is { } calls)
        {
            for (int j = 0; j < calls.Count; j++)
            {
                string at = $"{path}.tool_calls[{j}]";
                if (calls[j] is not JsonObject call) throw OpenAIErrorException.BadRequest($"'{at}' must be an object.", at);
                var function = Json.Object(call, "function", at + ".function") ?? throw OpenAIErrorException.BadRequest($"'{at}.function' is required.", at + ".function");
                string name = Json.String(function, "name", at + ".function.name") ?? throw OpenAIErrorException.BadRequest($"'{at}.function.name' is required.", at + ".function.name");
                string id = Json.String(call, "id", at + ".id") ?? ToolCallParser.NewCallId();
                contents.Add(new FunctionCallContent(id, name, ReadArguments(function, at + ".function.arguments")));
            }
        }
        return new ChatMessage(chatRole, contents) { AuthorName = Json.String(m, "name", path + ".name") };
    }

    private static string? ReadText(JsonObject m, string path)
    {
        if (!m.TryGetPropertyValue("content", out var content) || content is null) return null;
        if (content is JsonValue v && v.GetValueKind() == JsonValueKind.String) return v.GetValue<string>();
        if (content is not JsonArray parts) throw OpenAIErrorException.BadRequest($"'{path}.content' must be a string or an array of content parts.", path + ".content");
        var text = new StringBuilder();
        for (int k = 0; k < parts.Count; k++)
        {
            string at = $"{path}.content[{k}]";
            if (parts[k] is not JsonObject part) throw OpenAIErrorException.BadRequest($"'{at}' must be a content part object.", at);
            string type = Json.String(part, "type", at + ".type") ?? "text";
            if (type != "text")
                throw OpenAIErrorException.BadRequest($"'{at}.type' '{type}' is not supported: this model takes text only.", at + ".type");
            text.Append(Json.String(part, "text", at + ".text") ?? "");
        }
        return text.ToString();
    }

    private static Dictionary<string, object?>? ReadArguments(JsonObject function, string path)
    {
        if (!function.TryGetPropertyValue("arguments", out var raw) || raw is null) return null;
        JsonNode? parsed = raw;
        if (raw is JsonValue v && v.GetValueKind() == JsonValueKind.String)
        {
            string s = v.GetValue<string>();
            if (s.Trim().Length == 0) return null;
            try { parsed = JsonNode.Parse(s); }
            catch (JsonException ex) { throw OpenAIErrorException.BadRequest($"'{path}' is not valid JSON: {ex.Message}", path); }
        }
        if (parsed is not JsonObject obj) throw OpenAIErrorException.BadRequest($"'{path}' must be a JSON object (as a string).", path);
        return obj.ToDictionary(kv => kv.Key, kv => (object?)(kv.Value is null ? null : JsonSerializer.Deserialize<JsonElement>(kv.Value.ToJsonString())));
    }

    private static IList<AITool>? ReadTools(JsonObject body)
    {
        if (Json.Array(body, "tools") is not { } tools) return null;
        var list = new List<AITool>();
        for (int i = 0; i < tools.Count; i++)
        {
            string at = $"tools[{i}]";
            if (tools[i] is not JsonObject tool) throw OpenAIErrorException.BadRequest($"'{at}' must be an object.", at);
            string type = Json.String(tool, "type", at + ".type") ?? "function";
            if (type != "function") throw OpenAIErrorException.BadRequest($"'{at}.type' must be 'function'; found '{type}'.", at + ".type");
            var function = Json.Object(tool, "function", at + ".function") ?? throw OpenAIErrorException.BadRequest($"'{at}.function' is required.", at + ".function");
            string name = Json.String(function, "name", at + ".function.name") ?? throw OpenAIErrorException.BadRequest($"'{at}.function.name' is required.", at + ".function.name");
            string? description = Json.String(function, "description", at + ".function.description");
            var parameters = Json.Object(function, "parameters", at + ".function.parameters") ?? new JsonObject { ["type"] = "object", ["properties"] = new JsonObject() };
            var schema = JsonSerializer.Deserialize<JsonElement>(parameters.ToJsonString());
            list.Add(AIFunctionFactory.CreateDeclaration(name, description, schema));
        }
        return list;
    }

    private static ChatToolMode? ReadToolChoice(JsonObject body)
    {
        if (!body.TryGetPropertyValue("tool_choice", out var choice) || choice is null) return null;
        if (choice is JsonValue v && v.GetValueKind() == JsonValueKind.String)
        {
            return v.GetValue<string>() switch
            {
                "none" => ChatToolMode.None,
                "auto" => ChatToolMode.Auto,
                "required" => ChatToolMode.RequireAny,
                var other => throw OpenAIErrorException.BadRequest($"'tool_choice' must be none, auto, required or a function object; found '{other}'.", "tool_choice"),
            };
        }
        if (choice is JsonObject o && Json.Object(o, "function", "tool_choice.function") is { } f && Json.String(f, "name", "tool_choice.function.name") is { } name)
            return ChatToolMode.RequireSpecific(name);
        throw OpenAIErrorException.BadRequest("'tool_choice' must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": …}}.", "tool_choice");
    }

    internal static ChatResponseFormat? ReadResponseFormat(JsonObject body)
    {
        if (Json.Object(body, "response_format") is not { } format) return null;
        string type = Json.String(format, "type", "response_format.type") ?? throw OpenAIErrorException.BadRequest("'response_format.type' is required.", "response_format.type");
        switch (type)
        {
            case "text": return ChatResponseFormat.Text;
            case "json_object": return ChatResponseFormat.Json;
            case "json_schema":
                {
                    var spec = Json.Object(format, "json_schema", "response_format.json_schema")
                        ?? throw OpenAIErrorException.BadRequest("'response_format.json_schema' is required for type json_schema.", "response_format.json_schema");
                    var schema = Json.Object(spec, "schema", "response_format.json_schema.schema") ?? new JsonObject();
                    return ChatResponseFormat.ForJsonSchema(JsonSerializer.Deserialize<JsonElement>(schema.ToJsonString()),
                        Json.String(spec, "name", "response_format.json_schema.name"), Json.String(spec, "description", "response_format.json_schema.description"));
                }
            default:
                throw OpenAIErrorException.BadRequest($"'response_format.type' must be text, json_object or json_schema; found '{type}'.", "response_format.type");
        }
    }
}

/// <summary>Server-sent events: <c>data: {json}\n\n</c>, each flushed, ending with <c>data: [DONE]\n\n</c>.</summary>
internal static class Sse
{
    private static readonly byte[] Prefix = "data: "u8.ToArray();
    private static readonly byte[] End = "\n\n"u8.ToArray();
    private static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();

    public static async Task WriteAsync(HttpResponse response, string json, CancellationToken cancellationToken)
    {
        var bytes = new byte[Prefix.Length + Encoding.UTF8.GetByteCount(json) + End.Length];
        Prefix.CopyTo(bytes, 0);
        int n = Encoding.UTF8.GetBytes(json, 0, json.Length, bytes, Prefix.Length);
        End.CopyTo(bytes, Prefix.Length + n);
        await response.Body.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
        await response.Body.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    public static async Task WriteDoneAsync(HttpResponse response, CancellationToken cancellationToken)
    {
        await response.Body.WriteAsync(Done, cancellationToken).ConfigureAwait(false);
        await response.Body.FlushAsync(cancellationToken).ConfigureAwait(false);
    }
}
