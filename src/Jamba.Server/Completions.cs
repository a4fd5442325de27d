using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Jamba.Inference.Chat;
using Jamba.Inference.Engine;
using Jamba.Inference.Generation;
using Jamba.Inference.Tokenization;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Jamba.Server;

/// <summary><c>POST /v1/completions</c>: a prompt (text or token ids) continued by the engine, no chat template.</summary>
internal static class Completions
{
    public static async Task HandleAsync(JambaServer server, HttpContext ctx)
    {
        var arrived = Stopwatch.GetTimestamp();
        var body = await JambaServer.ReadBodyAsync(ctx).ConfigureAwait(false);
        var model = server.RequireModel();
        server.CheckModel(Json.String(body, "model"));
        var prompts = ReadPrompts(body, model.Tokenizer);
        var options = ReadOptions(body);
        options.Validate(ChatCompletions.OpenAIName);
        int n = Json.Int32(body, "n") ?? 1;
        if (n < 1 || n > server.Options.MaxChoices) throw OpenAIErrorException.BadRequest($"'n' must be between 1 and {server.Options.MaxChoices}; found {n}.", "n");
        bool stream = Json.Bool(body, "stream") ?? false;
        bool includeUsage = Json.Object(body, "stream_options") is { } so && (Json.Bool(so, "include_usage", "stream_options.include_usage") ?? false);
        string id = "cmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        if (server.Options.LogPrompts) server.Logger.LogInformation("{Id} completion request: {Prompt}", id, string.Join(" | ", prompts.Select(p => p.Text)));

        var engine = model.Handle.Engine;
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
        var choices = new List<Choice>();
        for (int p = 0; p < prompts.Count; p++)
            for (int i = 0; i < n; i++)
                choices.Add(new Choice(choices.Count, prompts[p].Tokens.Count, model.Tokenizer, options.LogProbs));
        // Start every choice now, so that a full queue is answered (429) before any byte is sent.
        var streams = new List<IAsyncEnumerable<GenerationUpdate>>();
        foreach (var choice in choices)
        {
            var g = options.Clone();
            if (n > 1 && g.Seed is { } seed) g.Seed = seed + choice.Index % n;
            streams.Add(engine.GenerateAsync(new GenerationRequest(prompts[choice.Index / n].Tokens, g), linked.Token));
        }
        var events = Channel.CreateUnbounded<(int Index, GenerationUpdate? Update, Exception? Error)>(new UnboundedChannelOptions { SingleReader = true });
        var runs = choices.Select(c => Task.Run(async () =>
        {
            try
            {
                await foreach (var u in streams[c.Index].ConfigureAwait(false)) events.Writer.TryWrite((c.Index, u, null));
            }
            catch (Exception ex)
            {
                events.Writer.TryWrite((c.Index, null, ex));
            }
        }, CancellationToken.None)).ToArray();
        _ = Task.WhenAll(runs).ContinueWith(_ => events.Writer.TryComplete(), TaskScheduler.Default);

        JsonObject Envelope(JsonArray choiceArray) => new()
        {
            ["id"] = id,
            ["object"] = "text_completion",
            ["created"] = created,
            ["model"] = server.ModelName,
            ["choices"] = choiceArray,
        };
        JsonObject Usage()
        {
            long prompt = prompts.Sum(p => (long)p.Tokens.Count);
            long completion = choices.Sum(c => (long)c.CompletionTokens);
            return new JsonObject { ["prompt_tokens"] = prompt, ["completion_tokens"] = completion, ["total_tokens"] = prompt + completion };
        }

        try
        {
            if (!stream)
            {
                await foreach (var (index, update, error) in events.Reader.ReadAllAsync(ctx.RequestAborted).ConfigureAwait(false))
                {
                    if (error is not null) throw error;
                    choices[index].Add(update!);
                }
                ctx.RequestAborted.ThrowIfCancellationRequested();
                var response = Envelope(new JsonArray(choices.Select(c => (JsonNode)c.ToChoice()).ToArray()));
                response["usage"] = Usage();
                if (server.Options.LogPrompts) foreach (var c in choices) server.Logger.LogInformation("{Id} choice {Index}: {Text}", id, c.Index, c.Text);
                ctx.Response.ContentType = "application/json";
                await ctx.Response.WriteAsync(Json.Write(response), ctx.RequestAborted).ConfigureAwait(false);
                return;
            }
            bool started = false;
            try
            {
                await foreach (var (index, update, error) in events.Reader.ReadAllAsync(ctx.RequestAborted).ConfigureAwait(false))
                {
                    if (error is not null) throw error;
                    var delta = choices[index].Add(update!);
                    if (delta is null) continue;
                    if (!started)
                    {
                        started = true;
                        ctx.Response.ContentType = "text/event-stream; charset=utf-8";
                        ctx.Response.Headers.CacheControl = "no-cache";
                        JambaServer.FirstChunk.Record(Stopwatch.GetElapsedTime(arrived).TotalSeconds);
                    }
                    var chunk = Envelope(new JsonArray(delta));
                    if (includeUsage) chunk["usage"] = null;
                    await Sse.WriteAsync(ctx.Response, Json.Write(chunk), ctx.RequestAborted).ConfigureAwait(false);
                }
                ctx.RequestAborted.ThrowIfCancellationRequested();
                if (!started) ctx.Response.ContentType = "text/event-stream; charset=utf-8";
                if (includeUsage)
                {
                    var last = Envelope([]);
                    last["usage"] = Usage();
                    await Sse.WriteAsync(ctx.Response, Json.Write(last), ctx.RequestAborted).ConfigureAwait(false);
                }
            }
            catch (Exception ex) when (started && !(ex is OperationCanceledException && ctx.RequestAborted.IsCancellationRequested))
            {
                await Sse.WriteAsync(ctx.Response, Json.Write(OpenAIErrorException.From(ex, server.Options.RetryAfterSeconds).ToJson()), ctx.RequestAborted).ConfigureAwait(false);
            }
            await Sse.WriteDoneAsync(ctx.Response, ctx.RequestAborted).ConfigureAwait(false);
        }
        finally
        {
            linked.Cancel();
            await Task.WhenAll(runs).ConfigureAwait(false);
        }
    }

    private sealed record Prompt(string Text, IReadOnlyList<int> Tokens);

    private static List<Prompt> ReadPrompts(JsonObject body, JambaTokenizer tokenizer)
    {
        if (!body.TryGetPropertyValue("prompt", out var node) || node is null)
            throw OpenAIErrorException.BadRequest("'prompt' is required: a string, a list of strings, or a list of token ids.", "prompt");
        Prompt FromText(string text)
        {
            var tokens = tokenizer.Encode(text, addSpecialTokens: true);
            if (tokens.Count == 0) throw OpenAIErrorException.BadRequest("'prompt' encodes to no tokens.", "prompt");
            return new Prompt(text, tokens);
        }
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.String) return [FromText(v.GetValue<string>())];
        if (node is JsonArray a && a.Count > 0)
        {
            if (a.All(x => x is JsonValue s && s.GetValueKind() == JsonValueKind.String)) return a.Select(x => FromText(x!.GetValue<string>())).ToList();
            if (a.All(x => x is JsonValue t && t.GetValueKind() == JsonValueKind.Number))
            {
                var ids = new List<int>();
                foreach (var x in a)
                {
                    double d = x!.GetValue<double>();
                    if (d != Math.Floor(d) || d < 0 || d >= tokenizer.VocabSize)
                        throw OpenAIErrorException.BadRequest($"'prompt' token id {d} is not in the vocabulary [0, {tokenizer.VocabSize}).", "prompt");
                    ids.Add((int)d);
                }
                return [new Prompt($"<{ids.Count} token ids>", ids)];
            }
        }
        throw OpenAIErrorException.BadRequest("'prompt' must be a string, a non-empty list of strings, or a non-empty list of token ids.", "prompt");
    }

    private static GenerationOptions ReadOptions(JsonObject body)
    {
        if (Json.Bool(body, "echo") == true) throw OpenAIErrorException.BadRequest("'echo' is not supported by this server.", "echo");
        if (Json.String(body, "suffix") is { Length: > 0 }) throw OpenAIErrorException.BadRequest("'suffix' is not supported by this server.", "suffix");
        var g = new GenerationOptions { MaxNewTokens = Json.Int32(body, "max_tokens") ?? 16, Temperature = 1f, IncludeSpecialTokensInText = !(Json.Bool(body, "skip_special_tokens") ?? true) };
        if (Json.Number(body, "temperature") is { } t) g.Temperature = (float)t;
        if (Json.Number(body, "top_p") is { } p) g.TopP = (float)p;
        if (Json.Int32(body, "top_k") is { } k) g.TopK = k == -1 ? 0 : k;
        if (Json.Number(body, "min_p") is { } minP) g.MinP = (float)minP;
        if (Json.Number(body, "repetition_penalty") is { } rep) g.RepetitionPenalty = (float)rep;
        if (Json.Number(body, "presence_penalty") is { } pp) g.PresencePenalty = (float)pp;
        if (Json.Number(body, "frequency_penalty") is { } fp) g.FrequencyPenalty = (float)fp;
        if (Json.Integer(body, "seed") is { } seed) g.Seed = seed;
        if (Json.Bool(body, "ignore_eos") is { } ignore) g.IgnoreEos = ignore;
        foreach (var s in Json.Stop(body)) g.StopSequences.Add(s);
        if (Json.Array(body, "stop_token_ids") is { } stopIds)
            for (int i = 0; i < stopIds.Count; i++)
                g.StopTokenIds.Add(stopIds[i] is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.GetValue<double>() is var d && d == Math.Floor(d) && d >= 0 && d < int.MaxValue
                    ? (int)d : throw OpenAIErrorException.BadRequest($"'stop_token_ids[{i}]' must be a token id.", $"stop_token_ids[{i}]"));
        try
        {
            // OpenAI's response_format (json_object / json_schema) or vLLM's guided_json constrain the completion.
            if (Json.Has(body, "guided_json") && body["guided_json"] is JsonNode guided)
                g.Constraint = guided is JsonValue gv && gv.GetValueKind() == JsonValueKind.String
                    ? JsonConstraint.FromSchema(gv.GetValue<string>())
                    : JsonConstraint.FromSchema(JsonSerializer.Deserialize<JsonElement>(guided.ToJsonString()));
            else g.Constraint = ChatGenerationSettings.ResponseConstraint(ChatCompletions.ReadResponseFormat(body));
        }
        catch (Exception e) when (e is NotSupportedException or ArgumentException)
        {
            string param = Json.Has(body, "guided_json") ? "guided_json" : "response_format";
            throw OpenAIErrorException.BadRequest($"'{param}': " + e.Message, param);
        }
        if (Json.Int32(body, "logprobs") is { } lp)
        {
            if (lp is < 0 or > 20) throw OpenAIErrorException.BadRequest($"'logprobs' must be between 0 and 20; found {lp}.", "logprobs");
            g.LogProbs = true;
            g.TopLogProbs = lp;
        }
        return g;
    }

    private sealed class Choice(int index, int promptTokens, JambaTokenizer tokenizer, bool logProbs)
    {
        private readonly StringBuilder _text = new();
        private readonly List<(string Token, float LogProb, JsonObject Top, int Offset)> _logProbs = [];
        private string _finish = "stop";

        public int Index { get; } = index;
        public int PromptTokens { get; } = promptTokens;
        public int CompletionTokens { get; private set; }
        public string Text => _text.ToString();

        public JsonObject? Add(GenerationUpdate update)
        {
            int offset = _text.Length;
            _text.Append(update.Text);
            JsonNode? logprobs = null;
            if (logProbs && update.TokenId is { } token && update.LogProb is { } lp)
            {
                var top = new JsonObject();
                foreach (var t in update.TopLogProbs ?? []) top[TokenText.Of(tokenizer, t.TokenId)] = t.LogProb;
                var entry = (TokenText.Of(tokenizer, token), float.IsNegativeInfinity(lp) ? -9999f : lp, top, offset);
                _logProbs.Add(entry);
                logprobs = LogProbs([entry]);
            }
            string? finish = null;
            if (update.FinishReason is { } reason)
            {
                if (reason == FinishReason.Cancelled) throw new OperationCanceledException();
                finish = _finish = reason == FinishReason.Length ? "length" : "stop";
                CompletionTokens = update.Usage?.CompletionTokens ?? CompletionTokens;
            }
            if (update.Text.Length == 0 && logprobs is null && finish is null) return null;
            return new JsonObject { ["index"] = Index, ["text"] = update.Text, ["logprobs"] = logprobs, ["finish_reason"] = finish };
        }

        private static JsonObject LogProbs(IEnumerable<(string Token, float LogProb, JsonObject Top, int Offset)> entries)
        {
            var list = entries.ToList();
            return new JsonObject
            {
                ["tokens"] = new JsonArray(list.Select(e => (JsonNode)e.Token).ToArray()),
                ["token_logprobs"] = new JsonArray(list.Select(e => (JsonNode)e.LogProb).ToArray()),
                ["top_logprobs"] = new JsonArray(list.Select(e => (JsonNode)e.Top.DeepClone()).ToArray()),
                ["text_offset"] = new JsonArray(list.Select(e => (JsonNode)e.Offset).ToArray()),
            };
        }

        public JsonObject ToChoice() => new()
        {
            ["index"] = Index,
            ["text"] = _text.ToString(),
            ["logprobs"] = logProbs ? LogProbs(_logProbs) : null,
            ["finish_reason"] = _finish,
        };
    }
}
