using Jamba.Inference.Diagnostics;
using Jamba.Inference.Kernels;
using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Jamba.Cli.Infrastructure;
using Jamba.Inference.Caching;
using Jamba.Inference.Engine;
using Jamba.Inference.Generation;
using Jamba.Inference.Modeling;
using Spectre.Console;
using Spectre.Console.Cli;
using TorchSharp;

namespace Jamba.Cli.Commands;

internal sealed class BenchSettings : ModelSettings
{
    [CommandOption("--preset <NAME>")]
    [Description("Benchmark a preset shape (bench, long) with random weights, created once under the cache folder ($JAMBA_CACHE, else ~/.cache/jamba).")]
    public string? Preset { get; set; }

    [CommandOption("--prompt-tokens <LIST>")]
    [Description("Prompt lengths to prefill, e.g. 512,2048 (random token ids).")]
    [DefaultValue("512")]
    public string PromptTokens { get; set; } = "512";

    [CommandOption("--new-tokens <N>")]
    [Description("Tokens decoded after each prompt (greedy, EOS ignored).")]
    [DefaultValue(64)]
    public int NewTokens { get; set; } = 64;

    [CommandOption("--streams <LIST>")]
    [Description("Concurrent streams, e.g. 1,2,4,8,16: aggregate decode tokens/s for each count.")]
    public string? Streams { get; set; }

    [CommandOption("--stream-prompt-tokens <N>")]
    [Description("Prompt length of each concurrent stream.")]
    [DefaultValue(16)]
    public int StreamPromptTokens { get; set; } = 16;

    [CommandOption("--snapshot-ttft <K>")]
    [Description("Time to first token after a K-token prefix: cold prefill vs continuing a ContextSnapshot (0 = skip).")]
    [DefaultValue(0)]
    public int SnapshotTtft { get; set; }

    [CommandOption("--prefill-chunk <N>")]
    [Description("Engine prefill chunk (tokens per scheduler step while other streams are active).")]
    [DefaultValue(512)]
    public int PrefillChunk { get; set; } = 512;

    [CommandOption("--solo-prefill-chunk <N>")]
    [Description("Engine prefill chunk while the prefilling request is the only one (the single-stream rows).")]
    [DefaultValue(2048)]
    public int SoloPrefillChunk { get; set; } = 2048;

    [CommandOption("--runs <N>")]
    [Description("Repeat each measurement N times and report the median.")]
    [DefaultValue(1)]
    public int Runs { get; set; } = 1;

    [CommandOption("--no-warmup")]
    [Description("Skip the warm-up generation.")]
    public bool NoWarmup { get; set; }

    [CommandOption("--seed <N>")]
    [Description("Seed of the random prompts.")]
    [DefaultValue(0)]
    public int Seed { get; set; }

    [CommandOption("--context-prefill <N>")]
    [Description("Also prefill one N-token context in --prefill-chunk chunks directly over a hybrid cache and report time, peak RSS and the cache's bytes against the formula (long-context check).")]
    [DefaultValue(0)]
    public int ContextPrefill { get; set; }

    [CommandOption("--profile <STEPS>")]
    [Description("Also time this many decode steps layer by layer (batch 1, on the model directly) and report the time per layer kind.")]
    [DefaultValue(0)]
    public int Profile { get; set; }

    [CommandOption("--device-path")]
    [Description("Also run every prefill/decode row with every hand-written CPU kernel off (the tensor path a GPU runs), alternating with the kernel path run by run, and report the ratio.")]
    public bool DevicePath { get; set; }

    [CommandOption("--json-constraint")]
    [Description("Also measure JSON-schema constrained decoding: the mask cost per token (cold and cached) on a synthetic 65,536-token vocabulary and on the model's, and constrained vs unconstrained decode tok/s at 1 and 16 streams.")]
    public bool JsonConstraint { get; set; }

    [CommandOption("--json")]
    [Description("Print one JSON object.")]
    public bool Json { get; set; }

    public override ValidationResult Validate()
    {
        var result = base.Validate();
        if (!result.Successful) return result;
        if (Preset is not null && Model is not null) return ValidationResult.Error("pass --model or --preset, not both.");
        if (Preset is not null && !Presets.Json.ContainsKey(Preset)) return ValidationResult.Error($"unknown --preset '{Preset}'; known: {string.Join(", ", Presets.Json.Keys)}.");
        if (NewTokens is < 1 or > 1 << 20) return ValidationResult.Error($"--new-tokens must be between 1 and 1048576; found {NewTokens}.");
        if (StreamPromptTokens < 1) return ValidationResult.Error($"--stream-prompt-tokens must be positive; found {StreamPromptTokens}.");
        if (SnapshotTtft < 0) return ValidationResult.Error($"--snapshot-ttft must be non-negative; found {SnapshotTtft}.");
        if (PrefillChunk is < 16 or > 65536) return ValidationResult.Error($"--prefill-chunk must be between 16 and 65536; found {PrefillChunk}.");
        if (SoloPrefillChunk is < 16 or > 65536) return ValidationResult.Error($"--solo-prefill-chunk must be between 16 and 65536; found {SoloPrefillChunk}.");
        if (Runs is < 1 or > 100) return ValidationResult.Error($"--runs must be between 1 and 100; found {Runs}.");
        try
        {
            Parsing.IntList(PromptTokens, "--prompt-tokens", min: 1);
            if (Streams is not null && Parsing.IntList(Streams, "--streams", min: 1).Max() > 1024)
                return ValidationResult.Error("--streams values must be at most 1024.");
        }
        catch (UsageException ex)
        {
            return ValidationResult.Error(ex.Message);
        }
        return ValidationResult.Success();
    }
}

/// <summary><c>jamba bench</c>: prefill and decode speed, concurrent decode, snapshot TTFT and peak memory on random prompts.</summary>
internal sealed class BenchCommand(CliIO io) : AsyncCommand<BenchSettings>
{
    private sealed record PrefillRow(int PromptTokens, double PrefillSeconds, double PrefillTps, double? DecodeTps, int NewTokens, string Path);
    private sealed record StreamsRow(int Streams, int TokensEach, double AggregateTps, double Seconds);
    private sealed record SnapshotRow(int PrefixTokens, double ColdTtft, double SnapshotTtft, double CreateSeconds, long SnapshotBytes);

    public override async Task<int> ExecuteAsync(CommandContext context, BenchSettings settings, CancellationToken cancellationToken)
    {
        var promptLengths = Parsing.IntList(settings.PromptTokens, "--prompt-tokens", min: 1);
        var streamCounts = settings.Streams is null ? [] : Parsing.IntList(settings.Streams, "--streams", min: 1);
        string path = settings.Preset is not null ? EnsurePreset(settings.Preset) : ModelLocator.Resolve(settings.Model);

        ProcessMemory.ResetPeak(); // the peak covers loading and the runs, not the creation of a preset checkpoint
        var engineOptions = new EngineOptions
        {
            MaxConcurrentSequences = Math.Max(settings.JsonConstraint ? 16 : 1, streamCounts.DefaultIfEmpty(1).Max()),
            PrefillChunkTokens = settings.PrefillChunk,
            SoloPrefillChunkTokens = settings.SoloPrefillChunk,
            PrefixCacheBytes = 0, // every measurement prefills for real
        };
        // The context prefill, the decode profile and the bandwidth probe run the model outside the engine: --threads is set
        // process-wide, once, rather than by the engine (see ThreadsOwner).
        var (handle, loadSeconds) = await ModelLoading.LoadAsync(io, settings, path, engineOptions, ThreadsOwner.Process, cancellationToken).ConfigureAwait(false);
        await using var _h = handle.ConfigureAwait(false);
        long rssAfterLoad = ProcessMemory.Read("VmRSS") ?? 0;
        var config = handle.Config;
        int elt = HybridCache.ElementSize(handle.DType);
        var random = new Random(settings.Seed);
        int[] Prompt(int n) => Enumerable.Range(0, n).Select(_ => random.Next(0, config.VocabSize)).ToArray();
        GenerationOptions Options(int newTokens) => new() { MaxNewTokens = newTokens, Temperature = 0, IgnoreEos = true };

        var prefillRows = new List<PrefillRow>();
        var streamRows = new List<StreamsRow>();
        SnapshotRow? snapshotRow = null;
        DecodeProfile? profile = null;
        double? bandwidth = null;
        ContextRow? contextRow = null;
        ConstraintRow? constraintRow = null;

        async Task Measure(Action<string> status)
        {
            if (!settings.NoWarmup)
            {
                // Long enough for the per-token code to reach the JIT's optimised tier (it is promoted after ~30 calls, in the
                // background): a 4-token warm-up left the first measured decode ~20 % slow.
                status("Warm-up");
                await RunOne(handle, Prompt(Math.Min(512, promptLengths.Max())), Options(48), cancellationToken).ConfigureAwait(false);
            }
            string[] paths = settings.DevicePath ? ["cpu-kernels", "device"] : [CpuKernels.Enabled ? "cpu-kernels" : "device"];
            bool processKernels = CpuKernels.Enabled;
            foreach (int p in promptLengths)
            {
                var runs = paths.ToDictionary(x => x, _ => new List<GenerationOutcome>());
                try
                {
                    for (int r = 0; r < settings.Runs; r++)
                        foreach (var path in paths)
                        {
                            // Process-wide: the bench's model follows the process switch (its ModelOptions.CpuKernels is unset).
                            if (settings.DevicePath) CpuKernels.Enabled = path == "cpu-kernels";
                            status($"Prefill {p} tokens + decode {settings.NewTokens}, {path} (run {r + 1}/{settings.Runs})");
                            runs[path].Add(await RunOne(handle, Prompt(p), Options(settings.NewTokens), cancellationToken).ConfigureAwait(false));
                        }
                }
                finally
                {
                    CpuKernels.Enabled = processKernels;
                }
                foreach (var path in paths)
                    prefillRows.Add(new PrefillRow(p,
                        Median(runs[path].Select(o => o.PrefillSeconds)),
                        Median(runs[path].Select(o => o.PrefillTokensPerSecond ?? 0)),
                        settings.NewTokens > 1 ? Median(runs[path].Select(o => o.DecodeTokensPerSecond ?? 0)) : null,
                        settings.NewTokens, path));
            }
            foreach (int s in streamCounts)
            {
                var runs = new List<StreamsRow>();
                for (int r = 0; r < settings.Runs; r++)
                {
                    status($"{s} concurrent streams × {settings.NewTokens} tokens (run {r + 1}/{settings.Runs})");
                    runs.Add(await RunStreams(handle, s, settings.StreamPromptTokens, settings.NewTokens, Prompt, Options, cancellationToken).ConfigureAwait(false));
                }
                streamRows.Add(runs.OrderBy(x => x.AggregateTps).ElementAt(runs.Count / 2));
            }
            if (settings.ContextPrefill > 0)
            {
                status($"Prefilling a {settings.ContextPrefill}-token context");
                contextRow = await Task.Run(() => RunContextPrefill(handle, settings.ContextPrefill, settings.PrefillChunk, random), cancellationToken).ConfigureAwait(false);
            }
            if (settings.Profile > 0)
            {
                // The read bandwidth is measured just before and just after the profile and the higher figure kept: a shared
                // machine's bandwidth drifts, and the bound must not be taken from a momentary slow phase.
                bool cpu = handle.Model.Device.type == DeviceType.CPU;
                double MeasureBandwidth() => MemoryBandwidth.MeasureReadBytesPerSecond(handle.Model, torch.get_num_threads());
                if (cpu)
                {
                    status("Measuring the memory read bandwidth");
                    bandwidth = await Task.Run(MeasureBandwidth, cancellationToken).ConfigureAwait(false);
                }
                status($"Profiling {settings.Profile} decode steps");
                profile = await Task.Run(() => DecodeProfiler.Profile(handle.Model, Math.Max(16, promptLengths.Min()), settings.Profile), cancellationToken).ConfigureAwait(false);
                if (cpu)
                {
                    status("Measuring the memory read bandwidth");
                    bandwidth = Math.Max(bandwidth ?? 0, await Task.Run(MeasureBandwidth, cancellationToken).ConfigureAwait(false));
                }
            }
            if (settings.JsonConstraint)
                constraintRow = await RunConstraint(handle, settings, Prompt, Options, status, cancellationToken).ConfigureAwait(false);
            if (settings.SnapshotTtft > 0)
            {
                status($"Snapshot TTFT, {settings.SnapshotTtft}-token prefix");
                snapshotRow = await RunSnapshotTtft(handle, settings.SnapshotTtft, Prompt, Options, cancellationToken).ConfigureAwait(false);
            }
        }

        if (io.Interactive)
            await io.Console.Status().StartAsync("Benchmarking…", ctx => Measure(s => ctx.Status(Markup.Escape(s)))).ConfigureAwait(false);
        else
            await Measure(_ => { }).ConfigureAwait(false);

        long? peak = ProcessMemory.Read("VmHWM");
        long readPerToken = handle.Model.WeightBytesReadPerToken;
        long weightBytes = handle.Model.WeightBytes;
        long kvPerToken = ModelArithmetic.KvBytesPerToken(config, elt);
        int maxPrompt = promptLengths.Max();
        long cacheAtMax = ModelArithmetic.CacheBytes(config, maxPrompt + settings.NewTokens, elt);
        double? decodeBound = bandwidth / readPerToken; // tokens/s if every weight read per token streamed at that bandwidth

        if (settings.Json)
        {
            var json = new JsonObject
            {
                ["model"] = handle.Path,
                ["preset"] = settings.Preset?.ToLowerInvariant(),
                ["dtype"] = Parsing.ShortName(handle.DType),
                ["quantization"] = handle.Model.Quantization.ToString(),
                ["device"] = handle.Device,
                ["threads"] = torch.get_num_threads(),
                ["parameters"] = handle.ParameterCount,
                ["active_parameters"] = handle.ActiveParameterCount,
                ["weight_bytes"] = weightBytes,
                ["weight_bytes_read_per_token"] = readPerToken,
                ["kv_bytes_per_token"] = kvPerToken,
                ["mamba_state_bytes_per_sequence"] = ModelArithmetic.MambaStateBytes(config, elt),
                ["cache_bytes_at_max_context"] = cacheAtMax,
                ["load_seconds"] = JsonOutput.Number(loadSeconds),
                ["runs"] = settings.Runs,
                ["prefill"] = new JsonArray(prefillRows.Select(r => (JsonNode)new JsonObject
                {
                    ["prompt_tokens"] = r.PromptTokens,
                    ["new_tokens"] = r.NewTokens,
                    ["prefill_seconds"] = JsonOutput.Number(r.PrefillSeconds, 4),
                    ["prefill_tokens_per_second"] = JsonOutput.Number(r.PrefillTps, 2),
                    ["decode_tokens_per_second"] = JsonOutput.Number(r.DecodeTps, 2),
                    ["path"] = r.Path,
                }).ToArray()),
                ["streams"] = new JsonArray(streamRows.Select(r => (JsonNode)new JsonObject
                {
                    ["streams"] = r.Streams,
                    ["new_tokens_each"] = r.TokensEach,
                    ["aggregate_decode_tokens_per_second"] = JsonOutput.Number(r.AggregateTps, 2),
                    ["per_stream_decode_tokens_per_second"] = JsonOutput.Number(r.AggregateTps / r.Streams, 2),
                }).ToArray()),
                ["snapshot_ttft"] = snapshotRow is null ? null : new JsonObject
                {
                    ["prefix_tokens"] = snapshotRow.PrefixTokens,
                    ["cold_seconds"] = JsonOutput.Number(snapshotRow.ColdTtft, 4),
                    ["snapshot_seconds"] = JsonOutput.Number(snapshotRow.SnapshotTtft, 4),
                    ["snapshot_create_seconds"] = JsonOutput.Number(snapshotRow.CreateSeconds, 4),
                    ["snapshot_bytes"] = snapshotRow.SnapshotBytes,
                    ["speedup"] = JsonOutput.Number(snapshotRow.ColdTtft / snapshotRow.SnapshotTtft, 2),
                },
                ["context_prefill"] = contextRow is null ? null : new JsonObject
                {
                    ["tokens"] = contextRow.Tokens,
                    ["seconds"] = JsonOutput.Number(contextRow.Seconds, 3),
                    ["tokens_per_second"] = JsonOutput.Number(contextRow.Tokens / contextRow.Seconds, 1),
                    ["cache_bytes"] = contextRow.CacheBytes,
                    ["cache_bytes_formula"] = contextRow.FormulaBytes,
                    ["peak_rss_bytes"] = contextRow.PeakRss,
                },
                ["decode_profile"] = profile is null ? null : new JsonObject
                {
                    ["step_ms"] = JsonOutput.Number(profile.StepMilliseconds, 3),
                    ["embedding_ms"] = JsonOutput.Number(profile.EmbeddingMilliseconds, 3),
                    ["head_ms"] = JsonOutput.Number(profile.HeadMilliseconds, 3),
                    ["by_kind_ms"] = new JsonObject(profile.ByKind.Select(kv => new KeyValuePair<string, JsonNode?>(kv.Key, JsonOutput.Number(kv.Value, 3)))),
                    ["layers_ms"] = new JsonArray(profile.LayerMilliseconds.Select((v, i) => (JsonNode)new JsonObject { ["layer"] = i, ["kind"] = profile.LayerKinds[i], ["ms"] = JsonOutput.Number(v, 3) }).ToArray()),
                },
                ["memory_read_bytes_per_second"] = JsonOutput.Number(bandwidth, 0),
                ["decode_bound_tokens_per_second"] = JsonOutput.Number(decodeBound, 2),
                ["profiled_step_fraction_of_bound"] = JsonOutput.Number(profile is null ? null : 1000 / profile.StepMilliseconds / decodeBound, 3),
                ["json_constraint"] = constraintRow is null ? null : new JsonObject
                {
                    ["schema"] = JsonNode.Parse(BenchSchema),
                    ["mask_synthetic_vocab"] = Timing(constraintRow.Synthetic),
                    ["mask_model_vocab"] = constraintRow.Model is null ? null : Timing(constraintRow.Model),
                    ["decode"] = new JsonArray(constraintRow.Decode.Select(d => (JsonNode)new JsonObject
                    {
                        ["streams"] = d.Streams,
                        ["unconstrained_tokens_per_second"] = JsonOutput.Number(d.Unconstrained, 2),
                        ["constrained_tokens_per_second"] = JsonOutput.Number(d.Constrained, 2),
                        ["ratio"] = JsonOutput.Number(d.Constrained / d.Unconstrained, 3),
                    }).ToArray()),
                },
                ["rss_after_load_bytes"] = rssAfterLoad,
                ["peak_rss_bytes"] = peak,
            };
            JsonOutput.Write(io, json);
            return ExitCodes.Success;
        }

        static string F(double? v, string format = "0.0") => v is { } x && double.IsFinite(x) ? x.ToString(format, CultureInfo.InvariantCulture) : "–";
        var border = io.Interactive ? TableBorder.Rounded : TableBorder.Ascii;
        io.Console.MarkupLine(Markup.Escape($"{handle.ModelId}: {ModelArithmetic.FormatCount(handle.ParameterCount)} parameters ({ModelArithmetic.FormatCount(handle.ActiveParameterCount)} active), {Parsing.ShortName(handle.DType)}{Quantized(handle)} on {handle.Device}, {torch.get_num_threads()} threads; loaded in {loadSeconds:0.00} s"));
        var prefill = new Table().Border(border).Title("Prefill and decode (batch 1)")
            .AddColumn(new TableColumn("prompt tokens").RightAligned()).AddColumn(new TableColumn("prefill s").RightAligned())
            .AddColumn(new TableColumn("prefill tok/s").RightAligned()).AddColumn(new TableColumn($"decode tok/s ({settings.NewTokens} new)").RightAligned());
        if (settings.DevicePath) prefill.AddColumn("path");
        foreach (var r in prefillRows)
        {
            string[] cells = [r.PromptTokens.ToString(CultureInfo.InvariantCulture), F(r.PrefillSeconds, "0.000"), F(r.PrefillTps), F(r.DecodeTps)];
            prefill.AddRow(settings.DevicePath ? [.. cells, r.Path] : cells);
        }
        io.Console.Write(prefill);
        if (settings.DevicePath)
            foreach (var g in prefillRows.GroupBy(r => r.PromptTokens))
                if (g.FirstOrDefault(r => r.Path == "cpu-kernels") is { } k && g.FirstOrDefault(r => r.Path == "device") is { } d)
                    io.Console.MarkupLine(Markup.Escape($"Device path at {g.Key} tokens: prefill {d.PrefillTps / k.PrefillTps:P0} of the CPU kernels' speed, decode {F(d.DecodeTps / k.DecodeTps * 100, "0")} %"));
        if (streamRows.Count > 0)
        {
            var streams = new Table().Border(border).Title("Concurrent streams").Caption($"{settings.StreamPromptTokens}-token prompts, {settings.NewTokens} new tokens each")
                .AddColumn(new TableColumn("streams").RightAligned()).AddColumn(new TableColumn("aggregate decode tok/s").RightAligned())
                .AddColumn(new TableColumn("per stream tok/s").RightAligned());
            foreach (var r in streamRows) streams.AddRow(r.Streams.ToString(CultureInfo.InvariantCulture), F(r.AggregateTps), F(r.AggregateTps / r.Streams));
            io.Console.Write(streams);
        }
        if (contextRow is { } cr)
            io.Console.MarkupLine(Markup.Escape($"Context prefill: {cr.Tokens} tokens in {cr.Seconds:0.0} s ({cr.Tokens / cr.Seconds:0} tok/s); cache {cr.CacheBytes:N0} bytes (formula {cr.FormulaBytes:N0}); peak RSS {(cr.PeakRss is { } pr ? ModelArithmetic.FormatBytes(pr) : "n/a")}"));
        if (profile is not null)
            io.Console.MarkupLine(Markup.Escape($"Decode step {profile.StepMilliseconds:0.00} ms: embedding {profile.EmbeddingMilliseconds:0.00}, " +
                string.Join(", ", profile.ByKind.Select(kv => $"{kv.Key} {kv.Value:0.00}")) + $", final norm + LM head {profile.HeadMilliseconds:0.00} ms"));
        if (bandwidth is { } bytesPerSecond && decodeBound is { } bound)
        {
            string measured = profile is null ? "" : $"; the profiled step ({profile.StepMilliseconds:0.00} ms = {1000 / profile.StepMilliseconds:0.0} tok/s) is {1000 / profile.StepMilliseconds / bound:P0} of it";
            io.Console.MarkupLine(Markup.Escape($"Weights read at {bytesPerSecond / 1e9:0.0} GB/s ({torch.get_num_threads()} threads, the better of a probe before and after the profile): batch-1 decode cannot exceed {bound:0.0} tok/s at {ModelArithmetic.FormatBytes(readPerToken)} per token{measured}."));
        }
        if (snapshotRow is { } snap)
            io.Console.MarkupLine(Markup.Escape($"TTFT after a {snap.PrefixTokens}-token prefix: cold {snap.ColdTtft * 1000:0.0} ms, from snapshot {snap.SnapshotTtft * 1000:0.0} ms ({snap.ColdTtft / snap.SnapshotTtft:0.0}×; snapshot {ModelArithmetic.FormatBytes(snap.SnapshotBytes)}, made in {snap.CreateSeconds:0.00} s)"));
        if (constraintRow is { } jc)
        {
            string T(ConstraintMaskTiming t) => $"{t.VocabularySize:N0}-token vocabulary: {t.ColdMicroseconds:0.0} µs/token cold, {t.CachedMicroseconds:0.0} µs/token cached ({t.Steps} steps)";
            io.Console.MarkupLine(Markup.Escape("JSON constraint masks: " + T(jc.Synthetic) + (jc.Model is { } mt ? "; model " + T(mt) : "; the model has no tokenizer")));
            foreach (var d in jc.Decode)
                io.Console.MarkupLine(Markup.Escape($"JSON-constrained decode, {d.Streams} stream(s): {d.Constrained:0.0} tok/s vs {d.Unconstrained:0.0} unconstrained ({d.Constrained / d.Unconstrained:P1})"));
        }
        io.Console.MarkupLine(Markup.Escape($"Memory on {handle.Device}: weights {ModelArithmetic.FormatBytes(weightBytes)}, {ModelArithmetic.FormatBytes(readPerToken)} read per decoded token, K/V {ModelArithmetic.FormatBytes(kvPerToken)} per token, cache {ModelArithmetic.FormatBytes(cacheAtMax)} at {maxPrompt + settings.NewTokens} tokens; RSS after load {ModelArithmetic.FormatBytes(rssAfterLoad)}, peak RSS {(peak is { } pk ? ModelArithmetic.FormatBytes(pk) : "n/a")}"));
        return ExitCodes.Success;
    }

    private static string Quantized(JambaModelHandle handle) => handle.Model.Quantization switch
    {
        WeightQuantization.Int8 => " with int8 weights",
        WeightQuantization.Int8Experts => " with int8 experts",
        _ => "",
    };

    private sealed record ConstraintDecodeRow(int Streams, double Unconstrained, double Constrained);
    private sealed record ConstraintRow(ConstraintMaskTiming Synthetic, ConstraintMaskTiming? Model, IReadOnlyList<ConstraintDecodeRow> Decode);

    /// <summary>The schema of the constrained runs: a long array of objects (strings, an integer range, enums) that cannot
    /// finish within the new tokens, so every stream decodes all of them (the item count is part of the matcher state, so
    /// this is a hard case for the mask cache).</summary>
    internal const string BenchSchema = """
        {"type":"array","minItems":64,"items":{"type":"object","properties":{"name":{"type":"string"},"note":{"type":"string"},
         "count":{"type":"integer","minimum":0,"maximum":1000},"tags":{"type":"array","items":{"enum":["red","green","blue"]}}},
         "required":["name","note","count"],"additionalProperties":false}}
        """;

    private const string BenchSample = """[{"name":"Ishmael","note":"Call me Ishmael. Some years ago — never mind how long precisely","count":12,"tags":["red","blue"]},{"name":"Queequeg","note":"a harpooneer \u00e9 \"quoted\"","count":999,"tags":[]},{"name":"Ahab","note":"","count":0}""" + """,{"name":"Starbuck","note":"the chief mate of the Pequod, a native of Nantucket","count":7}""";

    private static JsonObject Timing(ConstraintMaskTiming t) => new()
    {
        ["vocabulary"] = t.VocabularySize,
        ["steps"] = t.Steps,
        ["cold_us_per_token"] = JsonOutput.Number(t.ColdMicroseconds, 2),
        ["cached_us_per_token"] = JsonOutput.Number(t.CachedMicroseconds, 2),
    };

    private static async Task<ConstraintRow> RunConstraint(JambaModelHandle handle, BenchSettings settings, Func<int, int[]> prompt, Func<int, GenerationOptions> options,
        Action<string> status, CancellationToken ct)
    {
        var constraint = Jamba.Inference.Generation.JsonConstraint.FromSchema(BenchSchema);
        status("JSON constraint: masks on a synthetic 65,536-token vocabulary");
        var synthetic = await Task.Run(() => JsonConstraintProbe.Measure(constraint, JsonConstraintProbe.SyntheticVocabulary(65536), BenchSample), ct).ConfigureAwait(false);
        ConstraintMaskTiming? model = null;
        var rows = new List<ConstraintDecodeRow>();
        if (handle.Tokenizer is { } tokenizer)
        {
            status("JSON constraint: masks on the model's vocabulary");
            model = await Task.Run(() => JsonConstraintProbe.Measure(constraint, tokenizer, BenchSample), ct).ConfigureAwait(false);
            GenerationOptions Constrained(int n)
            {
                var o = options(n);
                o.Constraint = constraint;
                return o;
            }
            // Warm the mask cache once, as a served schema is after its first requests.
            await RunStreams(handle, 4, settings.StreamPromptTokens, settings.NewTokens, prompt, Constrained, ct).ConfigureAwait(false);
            foreach (int streams in new[] { 1, 16 })
            {
                var free = new List<double>();
                var constrained = new List<double>();
                for (int r = 0; r < Math.Max(3, settings.Runs); r++)
                {
                    status($"JSON constraint: {streams} stream(s), run {r + 1}");
                    free.Add((await RunStreams(handle, streams, settings.StreamPromptTokens, settings.NewTokens, prompt, options, ct).ConfigureAwait(false)).AggregateTps);
                    constrained.Add((await RunStreams(handle, streams, settings.StreamPromptTokens, settings.NewTokens, prompt, Constrained, ct).ConfigureAwait(false)).AggregateTps);
                }
                rows.Add(new ConstraintDecodeRow(streams, Median(free), Median(constrained)));
            }
        }
        return new ConstraintRow(synthetic, model, rows);
    }

    private static async Task<GenerationOutcome> RunOne(JambaModelHandle handle, int[] prompt, GenerationOptions options, CancellationToken ct)
    {
        var r = await handle.Engine.GenerateTextAsync(new GenerationRequest(prompt, options), ct).ConfigureAwait(false);
        return new GenerationOutcome(r.Tokens, r.Text, r.FinishReason, r.Usage.PromptTokens, r.Usage.CompletionTokens, r.Usage.CachedPromptTokens, r.PrefillSeconds, r.DecodeSeconds);
    }

    /// <summary>Runs <paramref name="streams"/> requests at once and measures the aggregate decode rate over the window
    /// in which all of them are decoding (after the last one's first token, until the first one finishes).</summary>
    private static async Task<StreamsRow> RunStreams(JambaModelHandle handle, int streams, int promptTokens, int newTokens,
        Func<int, int[]> prompt, Func<int, GenerationOptions> options, CancellationToken ct)
    {
        async Task<List<long>> One(int[] p)
        {
            var stamps = new List<long>(newTokens);
            await foreach (var u in handle.GenerateAsync(new GenerationRequest(p, options(newTokens)), ct).ConfigureAwait(false))
                if (u.TokenId is not null) stamps.Add(Stopwatch.GetTimestamp());
            return stamps;
        }
        var prompts = Enumerable.Range(0, streams).Select(_ => prompt(promptTokens)).ToList();
        var all = await Task.WhenAll(prompts.Select(p => Task.Run(() => One(p), ct))).ConfigureAwait(false);
        long start = all.Max(s => s[0]);
        long end = all.Min(s => s[^1]);
        int tokens = all.Sum(s => s.Count(t => t > start && t <= end));
        if (end <= start || tokens == 0)
        {
            start = all.Min(s => s[0]);
            end = all.Max(s => s[^1]);
            tokens = all.Sum(s => s.Count - 1);
        }
        double seconds = Stopwatch.GetElapsedTime(start, end).TotalSeconds;
        return new StreamsRow(streams, newTokens, seconds > 0 ? tokens / seconds : double.NaN, seconds);
    }

    private static async Task<SnapshotRow> RunSnapshotTtft(JambaModelHandle handle, int prefixTokens, Func<int, int[]> prompt, Func<int, GenerationOptions> options, CancellationToken ct)
    {
        const int suffixTokens = 16;
        var prefix = prompt(prefixTokens);
        var full = prefix.Concat(prompt(suffixTokens)).ToArray();

        async Task<double> Ttft(GenerationRequest request)
        {
            var clock = Stopwatch.StartNew();
            double first = double.NaN;
            await foreach (var u in handle.GenerateAsync(request, ct).ConfigureAwait(false))
                if (double.IsNaN(first) && u.TokenId is not null) first = clock.Elapsed.TotalSeconds;
            return first;
        }

        double cold = await Ttft(new GenerationRequest(full, options(1))).ConfigureAwait(false);
        var create = Stopwatch.StartNew();
        using var snapshot = await handle.Engine.CreateSnapshotAsync(prefix, null, ct).ConfigureAwait(false);
        double createSeconds = create.Elapsed.TotalSeconds;
        double warm = await Ttft(new GenerationRequest(full, options(1), snapshot)).ConfigureAwait(false);
        return new SnapshotRow(prefixTokens, cold, warm, createSeconds, snapshot.SizeInBytes);
    }

    private sealed record ContextRow(int Tokens, double Seconds, long CacheBytes, long FormulaBytes, long? PeakRss);

    /// <summary>Prefills <paramref name="tokens"/> random tokens chunk by chunk over one hybrid cache (the engine's prefill path, without sampling).</summary>
    private static ContextRow RunContextPrefill(JambaModelHandle handle, int tokens, int chunk, Random random)
    {
        var model = handle.Model;
        using var cache = model.CreateCache(1, tokens);
        var clock = Stopwatch.StartNew();
        for (int done = 0; done < tokens; done += chunk)
        {
            using var scope = torch.NewDisposeScope();
            int n = Math.Min(chunk, tokens - done);
            var ids = torch.tensor(Enumerable.Range(0, n).Select(_ => (long)random.Next(model.Config.VocabSize)).ToArray(), [1, n]);
            model.Forward(ids, null, cache, LogitPositions.Last);
        }
        double seconds = clock.Elapsed.TotalSeconds;
        return new ContextRow(tokens, seconds, cache.SizeInBytes, HybridCache.BytesFor(model.Config, tokens, HybridCache.ElementSize(model.DType)), ProcessMemory.Read("VmHWM"));
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? double.NaN : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    /// <summary>The preset's random-weight checkpoint in the cache folder, written on first use.</summary>
    private string EnsurePreset(string name)
    {
        string folder = Path.Combine(CacheRoot(), "presets", $"{name.ToLowerInvariant()}-seed0");
        if (File.Exists(Path.Combine(folder, "config.json"))) return folder;
        var config = Presets.Get(name);
        string temp = folder + ".tmp-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        void Write() => InitCommand.Write(config, temp, InitCommand.DefaultStorage(config), seed: 0);
        if (io.Interactive) io.Console.Status().Start($"Creating the {Markup.Escape(name)} preset checkpoint in {Markup.Escape(folder)}…", _ => Write());
        else Write();
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        Directory.Move(temp, folder);
        return folder;
    }

    internal static string CacheRoot()
    {
        if (Environment.GetEnvironmentVariable("JAMBA_CACHE") is { Length: > 0 } explicitRoot) return explicitRoot;
        string xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } x ? x
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(xdg, "jamba");
    }
}

/// <summary>Reads this process's memory counters from <c>/proc/self/status</c> (Linux; null elsewhere).</summary>
internal static class ProcessMemory
{
    /// <summary>Resets the peak resident set (<c>VmHWM</c>) to the current one (Linux: <c>/proc/self/clear_refs</c> = 5).</summary>
    public static void ResetPeak()
    {
        try
        {
            if (File.Exists("/proc/self/clear_refs")) File.WriteAllText("/proc/self/clear_refs", "5");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>A counter in bytes, e.g. <c>VmHWM</c> (peak resident set) or <c>VmRSS</c>.</summary>
    public static long? Read(string field)
    {
        try
        {
            if (!File.Exists("/proc/self/status")) return null;
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (!line.StartsWith(field + ":", StringComparison.Ordinal)) continue;
                var parts = line[(field.Length + 1)..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length >= 1 && long.TryParse(parts[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out long kb)) return kb * 1024;
            }
        }
        catch (IOException) { }
        return null;
    }
}
