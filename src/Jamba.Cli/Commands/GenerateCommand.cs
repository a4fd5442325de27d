using System.ComponentModel;
using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Jamba.Cli.Infrastructure;
using Jamba.Inference.Caching;
using Jamba.Inference.Engine;
using Jamba.Inference.Generation;
using Jamba.Inference.Templates;
using Jamba.Inference.Tokenization;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Jamba.Cli.Commands;

internal sealed class GenerateSettings : SamplingSettings
{
    [CommandOption("-p|--prompt <TEXT>")]
    [Description("The prompt text (needs a checkpoint with tokenizer files).")]
    public string? Prompt { get; set; }

    [CommandOption("--prompt-ids <IDS>")]
    [Description("The prompt as comma-separated token ids, e.g. 1,2,3 (works without a tokenizer).")]
    public string? PromptIds { get; set; }

    [CommandOption("--chat")]
    [Description("Wrap --prompt as a user message in the checkpoint's chat template.")]
    public bool Chat { get; set; }

    [CommandOption("--system <TEXT>")]
    [Description("With --chat: a system message before the user message.")]
    public string? System { get; set; }

    [CommandOption("--json")]
    [Description("Print one JSON object (tokens, text, finish_reason, token counts, speeds) instead of streaming text.")]
    public bool Json { get; set; }

    public override ValidationResult Validate()
    {
        var result = base.Validate();
        if (!result.Successful) return result;
        if (Prompt is null == PromptIds is null) return ValidationResult.Error("pass exactly one of --prompt TEXT and --prompt-ids 1,2,3.");
        if (Chat && Prompt is null) return ValidationResult.Error("--chat needs --prompt TEXT.");
        if (System is not null && !Chat) return ValidationResult.Error("--system needs --chat.");
        if (PromptIds is not null)
        {
            try { Parsing.IntList(PromptIds, "--prompt-ids", min: 0); }
            catch (UsageException ex) { return ValidationResult.Error(ex.Message); }
        }
        return ValidationResult.Success();
    }
}

/// <summary><c>jamba generate</c>: one prompt in, a streamed continuation (or one JSON object) out.</summary>
internal sealed class GenerateCommand(CliIO io) : AsyncCommand<GenerateSettings>
{
    /// <summary>Prompts at least this long are prefilled under a progress bar on a terminal.</summary>
    internal const int LongPrefillTokens = 1024;

    public override async Task<int> ExecuteAsync(CommandContext context, GenerateSettings settings, CancellationToken cancellationToken)
    {
        string path = ModelLocator.Resolve(settings.Model);
        var (handle, _) = await ModelLoading.LoadAsync(io, settings, path, null, cancellationToken).ConfigureAwait(false);
        await using var _h = handle.ConfigureAwait(false);

        IReadOnlyList<int> prompt;
        if (settings.PromptIds is not null)
        {
            prompt = Parsing.IntList(settings.PromptIds, "--prompt-ids", min: 0);
            foreach (int id in prompt)
                if (id >= handle.Config.VocabSize)
                    throw new UsageException($"--prompt-ids: token id {id} is outside the vocabulary [0, {handle.Config.VocabSize}).");
        }
        else
        {
            var tokenizer = RequireTokenizer(handle);
            if (settings.Chat)
            {
                var messages = new JsonArray();
                if (settings.System is not null) messages.Add(new JsonObject { ["role"] = "system", ["content"] = settings.System });
                messages.Add(new JsonObject { ["role"] = "user", ["content"] = settings.Prompt });
                prompt = ChatPrompt.Encode(handle.Path, tokenizer, messages);
            }
            else
            {
                prompt = tokenizer.Encode(settings.Prompt!);
            }
            if (prompt.Count == 0) throw new UsageException("--prompt encodes to no tokens; give some text.");
        }

        var options = settings.GenerationOptions();
        var result = await Generation.RunAsync(io, handle, prompt, options, streamText: !settings.Json, cancellationToken).ConfigureAwait(false);

        if (settings.Json)
        {
            JsonOutput.Write(io, new JsonObject
            {
                ["tokens"] = JsonOutput.Array(result.Tokens),
                ["text"] = handle.Tokenizer is null ? null : result.Text,
                ["finish_reason"] = result.FinishReason.ToString().ToLowerInvariant(),
                ["prompt_tokens"] = result.PromptTokens,
                ["completion_tokens"] = result.CompletionTokens,
                ["cached_prompt_tokens"] = result.CachedPromptTokens,
                ["prefill_seconds"] = JsonOutput.Number(result.PrefillSeconds, 6),
                ["decode_seconds"] = JsonOutput.Number(result.DecodeSeconds, 6),
                ["prefill_tokens_per_second"] = JsonOutput.Number(result.PrefillTokensPerSecond, 2),
                ["decode_tokens_per_second"] = JsonOutput.Number(result.DecodeTokensPerSecond, 2),
            });
        }
        else
        {
            io.Error.WriteLine(result.StatsLine());
        }
        return result.FinishReason == FinishReason.Cancelled ? ExitCodes.Cancelled : ExitCodes.Success;
    }

    internal static JambaTokenizer RequireTokenizer(JambaModelHandle handle) =>
        handle.Tokenizer ?? throw new CliException($"the checkpoint '{handle.Path}' has no tokenizer files (tokenizer.json or tokenizer.model); pass --prompt-ids instead.");
}

/// <summary>Renders a conversation through the checkpoint's chat template and encodes it.</summary>
internal static class ChatPrompt
{
    public static IReadOnlyList<int> Encode(string checkpoint, JambaTokenizer tokenizer, JsonArray messages)
    {
        var template = ChatTemplate.FromCheckpointOrFallback(checkpoint);
        string? bos = tokenizer.BosTokenId is { } b ? tokenizer.IdToToken(b) : null;
        string? eos = tokenizer.EosTokenId is { } e ? tokenizer.IdToToken(e) : null;
        string text = template.Render(messages, addGenerationPrompt: true, bosToken: bos, eosToken: eos);
        // The template writes the BOS itself when it uses bos_token; do not add a second one.
        bool templateHasBos = bos is { Length: > 0 } && text.StartsWith(bos, StringComparison.Ordinal);
        return tokenizer.Encode(text, addSpecialTokens: !templateHasBos);
    }
}

/// <summary>The outcome of one generation with its timings.</summary>
internal sealed record GenerationOutcome(
    IReadOnlyList<int> Tokens, string Text, FinishReason FinishReason, int PromptTokens, int CompletionTokens,
    int CachedPromptTokens, double PrefillSeconds, double DecodeSeconds)
{
    public double? PrefillTokensPerSecond => PrefillSeconds > 0 ? (PromptTokens - CachedPromptTokens) / PrefillSeconds : null;

    /// <summary>Tokens after the first over the time from the first to the last.</summary>
    public double? DecodeTokensPerSecond => CompletionTokens > 1 && DecodeSeconds > 0 ? (CompletionTokens - 1) / DecodeSeconds : null;

    public string StatsLine()
    {
        var s = new StringBuilder();
        s.Append($"[{PromptTokens} prompt tokens");
        if (CachedPromptTokens > 0) s.Append($" ({CachedPromptTokens} reused)");
        if (PrefillTokensPerSecond is { } p) s.Append($", prefill {p:0.#} tok/s");
        s.Append($"; {CompletionTokens} new tokens");
        if (DecodeTokensPerSecond is { } d) s.Append($", decode {d:0.#} tok/s");
        s.Append($"; finish: {FinishReason.ToString().ToLowerInvariant()}]");
        return s.ToString();
    }
}

/// <summary>Runs one generation on a handle, streaming text (or ids) to stdout when asked.</summary>
internal static class Generation
{
    public static async Task<GenerationOutcome> RunAsync(CliIO io, JambaModelHandle handle, IReadOnlyList<int> prompt, GenerationOptions options,
        bool streamText, CancellationToken cancellationToken)
    {
        // A long prompt on a terminal: prefill it into a snapshot under a progress bar, then continue from it.
        ContextSnapshot? snapshot = null;
        double snapshotSeconds = 0;
        int chunk = handle.Engine.Options.PrefillChunkTokens;
        if (io.Interactive && prompt.Count >= Math.Max(LongPrefill, 2 * chunk))
        {
            var clock = Stopwatch.StartNew();
            var prefix = prompt.Take(prompt.Count - 1).ToArray();
            snapshot = await ModelLoading.WithProgressAsync(io, $"Prefill {prefix.Length} tokens", progress =>
                handle.Engine.CreateSnapshotAsync(prefix, new SyncProgress<PrefillProgress>(p => progress.Report(p.Fraction)), cancellationToken)).ConfigureAwait(false);
            snapshotSeconds = clock.Elapsed.TotalSeconds;
        }
        try
        {
            var tokens = new List<int>();
            var text = new StringBuilder();
            GenerationUpdate? last = null;
            bool ids = handle.Tokenizer is null;
            try
            {
                await foreach (var update in handle.GenerateAsync(new GenerationRequest(prompt, options, snapshot), cancellationToken).ConfigureAwait(false))
                {
                    if (update.TokenId is { } id) tokens.Add(id);
                    text.Append(update.Text);
                    last = update;
                    if (!streamText) continue;
                    if (ids)
                    {
                        if (update.TokenId is { } tid) io.Out.Write(tokens.Count == 1 ? $"{tid}" : $" {tid}");
                    }
                    else if (update.Text.Length > 0)
                    {
                        io.Out.Write(update.Text);
                    }
                    io.Out.Flush();
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                if (streamText) io.Out.WriteLine();
                throw;
            }
            if (streamText)
            {
                io.Out.WriteLine();
                io.Out.Flush();
            }
            var usage = last?.Usage ?? new GenerationUsage(prompt.Count, tokens.Count);
            int cached = snapshot is null ? usage.CachedPromptTokens : 0;
            return new GenerationOutcome(tokens, text.ToString(), last?.FinishReason ?? FinishReason.Length, usage.PromptTokens, usage.CompletionTokens,
                cached, (last?.PrefillSeconds ?? 0) + snapshotSeconds, last?.DecodeSeconds ?? 0);
        }
        finally
        {
            snapshot?.Dispose();
        }
    }

    private const int LongPrefill = GenerateCommand.LongPrefillTokens;
}
