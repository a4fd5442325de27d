using System.ComponentModel;
using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Jamba.Cli.Infrastructure;
using Jamba.Inference.Caching;
using Jamba.Inference.Engine;
using Jamba.Inference.Generation;
using Jamba.Inference.Chat;
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
    [Description("Wrap --prompt as a user message in the checkpoint's chat template (and stop at its end-of-turn marker).")]
    public bool Chat { get; set; }

    [CommandOption("--system <TEXT>")]
    [Description("With --chat: a system message before the user message.")]
    public string? System { get; set; }

    [CommandOption("--json")]
    [Description("Print one JSON object (tokens, text, finish_reason, token counts, speeds) instead of streaming text.")]
    public bool Json { get; set; }

    [CommandOption("--json-schema <FILE>")]
    [Description("Constrain the output to one JSON value matching the JSON Schema in FILE (constrained decoding; unsupported keywords are an error).")]
    public string? JsonSchema { get; set; }

    [CommandOption("--json-object")]
    [Description("Constrain the output to one JSON object (any keys and values).")]
    public bool JsonObject { get; set; }

    /// <summary>The constraint the flags ask for (the schema file compiled), or null.</summary>
    /// <exception cref="UsageException">The file cannot be read or its schema cannot be compiled (names the flag).</exception>
    public JsonConstraint? Constraint()
    {
        if (JsonObject) return Inference.Generation.JsonConstraint.AnyObject;
        if (JsonSchema is null) return null;
        string text;
        try
        {
            var info = new FileInfo(JsonSchema);
            if (!info.Exists) throw new UsageException($"--json-schema: the file '{JsonSchema}' does not exist.");
            if (info.Length > Inference.Generation.JsonConstraint.MaxSchemaBytes) throw new UsageException($"--json-schema: '{JsonSchema}' is larger than {Inference.Generation.JsonConstraint.MaxSchemaBytes} bytes.");
            text = File.ReadAllText(JsonSchema);
        }
        catch (IOException e) { throw new UsageException($"--json-schema: cannot read '{JsonSchema}': {e.Message}"); }
        catch (UnauthorizedAccessException e) { throw new UsageException($"--json-schema: cannot read '{JsonSchema}': {e.Message}"); }
        try { return Inference.Generation.JsonConstraint.FromSchema(text); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException) { throw new UsageException($"--json-schema: {e.Message}"); }
    }

    public override ValidationResult Validate()
    {
        var result = base.Validate();
        if (!result.Successful) return result;
        if (JsonObject && JsonSchema is not null) return ValidationResult.Error("pass --json-schema FILE or --json-object, not both.");
        try { Constraint(); }
        catch (UsageException ex) { return ValidationResult.Error(ex.Message); }
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

        var options = settings.GenerationOptions();
        options.Constraint = settings.Constraint();
        if (options.Constraint is not null) RequireTokenizer(handle);
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
                // The model's chat setup (the same one jamba chat's JambaChatClient uses): its template, and the end of an
                // assistant turn as stops, so that the reply ends where the template says a turn ends.
                var setup = ChatSetup.For(handle);
                prompt = setup.EncodeSingleTurn(settings.Prompt!, settings.System);
                AddEndOfTurnStops(options, setup);
            }
            else
            {
                prompt = tokenizer.Encode(settings.Prompt!);
            }
            if (prompt.Count == 0) throw new UsageException("--prompt encodes to no tokens; give some text.");
        }

        var result = await Generation.RunAsync(io, handle, prompt, options, streamText: !settings.Json, cancellationToken).ConfigureAwait(false);

        if (settings.Json)
        {
            JsonOutput.Write(io, new JsonObject
            {
                ["tokens"] = JsonOutput.Array(result.Tokens),
                ["text"] = handle.Tokenizer is null ? null : result.Text,
                ["finish_reason"] = result.FinishReason.ToString().ToLowerInvariant(),
                ["constraint_incomplete"] = options.Constraint is null ? null : result.ConstraintIncomplete,
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

    /// <summary>Adds the template's end-of-turn tokens and strings to <paramref name="options"/>' stops (as
    /// <c>JambaChatClient</c> does for every chat request).</summary>
    internal static void AddEndOfTurnStops(GenerationOptions options, ChatSetup setup)
    {
        foreach (int id in setup.EndOfTurnTokenIds)
            if (!options.StopTokenIds.Contains(id)) options.StopTokenIds.Add(id);
        foreach (var s in setup.EndOfTurnStrings)
            if (options.StopSequences.Count < 16 && !options.StopSequences.Contains(s)) options.StopSequences.Add(s);
    }

    internal static JambaTokenizer RequireTokenizer(JambaModelHandle handle) =>
        handle.Tokenizer ?? throw new CliException($"the checkpoint '{handle.Path}' has no tokenizer files (tokenizer.json or tokenizer.model); pass --prompt-ids instead.");
}

/// <summary>The outcome of one generation with its timings.</summary>
internal sealed record GenerationOutcome(
    IReadOnlyList<int> Tokens, string Text, FinishReason FinishReason, int PromptTokens, int CompletionTokens,
    int CachedPromptTokens, double PrefillSeconds, double DecodeSeconds)
{
    /// <summary>With a JSON constraint: the value was not finished (see <c>GenerationUpdate.ConstraintIncomplete</c>).</summary>
    public bool ConstraintIncomplete { get; init; }

    public double? PrefillTokensPerSecond => PrefillSeconds > 0 ? (PromptTokens - CachedPromptTokens) / PrefillSeconds : null;

    /// <summary>Tokens after the first over the time from the first to the last.</summary>
    public double? DecodeTokensPerSecond => CompletionTokens > 1 && DecodeSeconds > 0 ? (CompletionTokens - 1) / DecodeSeconds : null;

    public string StatsLine() =>
        GenerationStats.Line(PromptTokens, CachedPromptTokens, CompletionTokens, PrefillSeconds, DecodeSeconds, FinishReason.ToString().ToLowerInvariant());
}

/// <summary>The statistics line of one generation (stderr): token counts, speeds and the finish reason.</summary>
internal static class GenerationStats
{
    public static string Line(int promptTokens, int cachedPromptTokens, int completionTokens, double prefillSeconds, double decodeSeconds, string finishReason)
    {
        var s = new StringBuilder();
        s.Append($"[{promptTokens} prompt tokens");
        if (cachedPromptTokens > 0) s.Append($" ({cachedPromptTokens} reused)");
        if (prefillSeconds > 0) s.Append($", prefill {(promptTokens - cachedPromptTokens) / prefillSeconds:0.#} tok/s");
        s.Append($"; {completionTokens} new tokens");
        if (completionTokens > 1 && decodeSeconds > 0) s.Append($", decode {(completionTokens - 1) / decodeSeconds:0.#} tok/s");
        s.Append($"; finish: {finishReason}]");
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
                cached, (last?.PrefillSeconds ?? 0) + snapshotSeconds, last?.DecodeSeconds ?? 0)
            {
                ConstraintIncomplete = last?.ConstraintIncomplete ?? false,
            };
        }
        finally
        {
            snapshot?.Dispose();
        }
    }

    private const int LongPrefill = GenerateCommand.LongPrefillTokens;
}
