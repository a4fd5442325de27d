using System.ComponentModel;
using System.Globalization;
using System.Text.Json.Nodes;
using Jamba.Cli.Infrastructure;
using Jamba.Inference.Caching;
using Jamba.Inference.Config;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Jamba.Cli.Commands;

internal sealed class InfoSettings : ModelSettings
{
    [CommandOption("--preset <NAME>")]
    [Description("Describe a preset shape (bench, long) instead of a checkpoint.")]
    public string? Preset { get; set; }

    [CommandOption("--context <TOKENS>")]
    [Description("Context length for the cache-size line.")]
    [DefaultValue(4096)]
    public int Context { get; set; } = 4096;

    [CommandOption("--json")]
    [Description("Print one JSON object.")]
    public bool Json { get; set; }

    public override ValidationResult Validate()
    {
        var result = base.Validate();
        if (!result.Successful) return result;
        if (Context < 0) return ValidationResult.Error($"--context must be non-negative; found {Context}.");
        if (Preset is not null && Model is not null) return ValidationResult.Error("pass --model or --preset, not both.");
        return ValidationResult.Success();
    }
}

/// <summary><c>jamba info</c>: the architecture from <c>config.json</c> alone (no weights are read).</summary>
internal sealed class InfoCommand(CliIO io) : Command<InfoSettings>
{
    public override int Execute(CommandContext context, InfoSettings settings, CancellationToken cancellationToken)
    {
        JambaConfig config;
        string source;
        if (settings.Preset is not null)
        {
            config = Presets.Get(settings.Preset);
            source = $"preset {settings.Preset.ToLowerInvariant()}";
        }
        else
        {
            source = ModelLocator.Resolve(settings.Model);
            config = JambaConfig.Load(source);
        }
        // No weights are read, so there is no loaded model to ask: --dtype is resolved here, once.
        var dtype = settings.DTypeWithoutLoading();
        string device = Parsing.Device(settings.Device);
        int elt = HybridCache.ElementSize(dtype);
        long total = ModelArithmetic.TotalParameters(config);
        long active = ModelArithmetic.ActiveParameters(config);
        long perToken = ModelArithmetic.ParametersReadPerToken(config);
        long kvPerToken = ModelArithmetic.KvBytesPerToken(config, elt);
        long mamba = ModelArithmetic.MambaStateBytes(config, elt);
        long cache = ModelArithmetic.CacheBytes(config, settings.Context, elt);

        if (settings.Json)
        {
            var layers = new JsonArray();
            for (int i = 0; i < config.NumHiddenLayers; i++)
            {
                layers.Add(new JsonObject
                {
                    ["index"] = i,
                    ["mixer"] = config.MixerKind(i) == JambaMixerKind.Attention ? "attention" : "mamba",
                    ["feed_forward"] = config.IsMoeLayer(i) ? "moe" : "dense",
                    ["experts"] = config.LayerNumExperts(i),
                    ["experts_per_token"] = config.IsMoeLayer(i) ? config.NumExpertsPerTok : 1,
                    ["parameters"] = ModelArithmetic.LayerParameters(config, i),
                    ["active_parameters"] = ModelArithmetic.LayerActiveParameters(config, i),
                });
            }
            JsonOutput.Write(io, new JsonObject
            {
                ["model"] = source,
                ["config"] = JsonNode.Parse(config.ToJson()),
                ["layers"] = layers,
                ["attention_layers"] = config.NumAttentionLayers,
                ["mamba_layers"] = config.NumMambaLayers,
                ["moe_layers"] = Enumerable.Range(0, config.NumHiddenLayers).Count(config.IsMoeLayer),
                ["total_parameters"] = total,
                ["active_parameters"] = active,
                ["parameters_read_per_token"] = perToken,
                ["dtype"] = Parsing.ShortName(dtype),
                ["device"] = device,
                ["element_size"] = elt,
                ["weight_bytes"] = total * elt,
                ["weight_bytes_read_per_token"] = perToken * elt,
                ["kv_bytes_per_token"] = kvPerToken,
                ["mamba_state_bytes_per_sequence"] = mamba,
                ["context"] = settings.Context,
                ["cache_bytes_at_context"] = cache,
            });
            return ExitCodes.Success;
        }

        static string N(long v) => v.ToString("N0", CultureInfo.InvariantCulture);
        var summary = new Table().Border(io.Interactive ? TableBorder.Rounded : TableBorder.Ascii).Title(Markup.Escape(source));
        summary.AddColumn("Property").AddColumn(new TableColumn("Value"));
        void Row(string k, string v) => summary.AddRow(Markup.Escape(k), Markup.Escape(v));
        Row("vocab / hidden / layers", $"{config.VocabSize} / {config.HiddenSize} / {config.NumHiddenLayers}");
        Row("attention", $"{config.NumAttentionLayers} layer{(config.NumAttentionLayers == 1 ? "" : "s")} (period {config.AttnLayerPeriod}, offset {config.AttnLayerOffset}); {config.NumAttentionHeads} heads, {config.NumKeyValueHeads} KV heads, head dim {config.HeadDim}");
        Row("mamba", $"{config.NumMambaLayers} layer{(config.NumMambaLayers == 1 ? "" : "s")}; d_inner {config.MambaDInner}, d_state {config.MambaDState}, d_conv {config.MambaDConv}, dt_rank {config.MambaDtRank}");
        Row("feed-forward", config.NumExperts > 1
            ? $"MoE {config.NumExperts} experts top-{config.NumExpertsPerTok} (period {config.ExpertLayerPeriod}, offset {config.ExpertLayerOffset}); intermediate {config.IntermediateSize}"
            : $"dense; intermediate {config.IntermediateSize}");
        Row("parameters", $"{N(total)} ({ModelArithmetic.FormatCount(total)})");
        Row("active parameters", $"{N(active)} ({ModelArithmetic.FormatCount(active)})");
        Row("weights read per token", $"{ModelArithmetic.FormatBytes(perToken * (double)elt)} ({ModelArithmetic.FormatCount(perToken)} parameters)");
        Row("dtype / device", $"{Parsing.ShortName(dtype)} / {device}" + (config.TorchDtype is { } td ? $" (stored {td})" : ""));
        Row("weights", ModelArithmetic.FormatBytes(total * (double)elt));
        Row("K/V bytes per token", $"{N(kvPerToken)} ({ModelArithmetic.FormatBytes(kvPerToken)})");
        Row("Mamba state per sequence", $"{N(mamba)} ({ModelArithmetic.FormatBytes(mamba)})");
        Row($"cache at {N(settings.Context)} tokens", $"{N(cache)} ({ModelArithmetic.FormatBytes(cache)})");
        Row("max context", N(config.MaxPositionEmbeddings));
        io.Console.Write(summary);

        var layersTable = new Table().Border(io.Interactive ? TableBorder.Rounded : TableBorder.Ascii).Title("Layer schedule");
        layersTable.AddColumn(new TableColumn("#").RightAligned()).AddColumn("Mixer").AddColumn("Feed-forward")
            .AddColumn(new TableColumn("Parameters").RightAligned()).AddColumn(new TableColumn("Active").RightAligned());
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            bool attn = config.MixerKind(i) == JambaMixerKind.Attention;
            layersTable.AddRow(
                i.ToString(CultureInfo.InvariantCulture),
                attn ? "attention" : "mamba",
                config.IsMoeLayer(i) ? $"MoE {config.NumExperts}×top-{config.NumExpertsPerTok}" : "dense MLP",
                N(ModelArithmetic.LayerParameters(config, i)),
                N(ModelArithmetic.LayerActiveParameters(config, i)));
        }
        io.Console.Write(layersTable);
        return ExitCodes.Success;
    }
}
