using System.ComponentModel;
using System.Diagnostics;
using Jamba.Cli.Infrastructure;
using Jamba.Inference.Checkpoint;
using Jamba.Inference.Config;
using Jamba.Inference.Modeling;
using Spectre.Console;
using Spectre.Console.Cli;
using TorchSharp;

namespace Jamba.Cli.Commands;

internal sealed class InitSettings : CommandSettings
{
    [CommandOption("--config <FILE>")]
    [Description("A Hugging Face Jamba config.json (file or folder holding one).")]
    public string? Config { get; set; }

    [CommandOption("--preset <NAME>")]
    [Description("A named shape instead of --config: bench (the speed benchmark's model) or long (long-context tests).")]
    public string? Preset { get; set; }

    [CommandOption("-o|--out <DIR>")]
    [Description("Folder to write (created).")]
    public string? Out { get; set; }

    [CommandOption("--dtype <DTYPE>")]
    [Description("Storage dtype: bf16, f32 or f16. Default: the config's torch_dtype, else f32.")]
    public string? DType { get; set; }

    [CommandOption("--seed <N>")]
    [Description("Seed of the random weights.")]
    [DefaultValue(0L)]
    public long Seed { get; set; }

    [CommandOption("--shard-mb <MB>")]
    [Description("Split the weights into shards of at most this many MiB (with model.safetensors.index.json); 0 = one file.")]
    [DefaultValue(0)]
    public int ShardMb { get; set; }

    [CommandOption("--tokenizer-from <FOLDER>")]
    [Description("Copy the tokenizer files (and chat template, generation config) of this checkpoint.")]
    public string? TokenizerFrom { get; set; }

    [CommandOption("--force")]
    [Description("Overwrite a checkpoint already in --out.")]
    public bool Force { get; set; }

    public override ValidationResult Validate()
    {
        if (Config is null == Preset is null) return ValidationResult.Error("pass exactly one of --config FILE and --preset NAME.");
        if (string.IsNullOrWhiteSpace(Out)) return ValidationResult.Error("--out DIR is required.");
        if (ShardMb < 0) return ValidationResult.Error($"--shard-mb must be non-negative; found {ShardMb}.");
        if (DType is not null)
        {
            try
            {
                if (Parsing.DType(DType) == ComputeDType.Auto) return ValidationResult.Error("--dtype for init must be bf16, f32 or f16.");
            }
            catch (UsageException ex)
            {
                return ValidationResult.Error(ex.Message);
            }
        }
        if (Preset is not null && !Presets.Json.ContainsKey(Preset))
            return ValidationResult.Error($"unknown --preset '{Preset}'; known: {string.Join(", ", Presets.Json.Keys)}.");
        return ValidationResult.Success();
    }
}

/// <summary><c>jamba init</c>: a random-weight checkpoint of any shape in Hugging Face layout (benchmarks, tests; no downloads).</summary>
internal sealed class InitCommand(CliIO io) : Command<InitSettings>
{
    /// <summary>Files copied by <c>--tokenizer-from</c>.</summary>
    private static readonly string[] TokenizerFiles =
        ["tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "chat_template.jinja", "chat_template.json"];

    public override int Execute(CommandContext context, InitSettings settings, CancellationToken cancellationToken)
    {
        var config = settings.Preset is not null ? Presets.Get(settings.Preset) : JambaConfig.Load(settings.Config!);
        var storage = settings.DType is not null ? ToScalarType(Parsing.DType(settings.DType)) : DefaultStorage(config);
        string outDir = Path.GetFullPath(settings.Out!);
        if (File.Exists(Path.Combine(outDir, "config.json")) && !settings.Force)
            throw new CliException($"'{outDir}' already holds a checkpoint; pass --force to overwrite it.");
        if (settings.TokenizerFrom is { } from && !TokenizerFiles.Any(f => File.Exists(Path.Combine(from, f))))
            throw new CliException($"--tokenizer-from: no tokenizer files in '{from}'.");

        var clock = Stopwatch.StartNew();
        if (io.Interactive)
            io.Console.Status().Start($"Writing {Markup.Escape(outDir)}…", _ => Write(config, outDir, storage, settings.Seed, settings.ShardMb * 1024L * 1024));
        else
            Write(config, outDir, storage, settings.Seed, settings.ShardMb * 1024L * 1024);
        if (settings.TokenizerFrom is { } source)
            foreach (var f in TokenizerFiles.Where(f => File.Exists(Path.Combine(source, f))))
                File.Copy(Path.Combine(source, f), Path.Combine(outDir, f), overwrite: true);

        long total = ModelArithmetic.TotalParameters(config);
        long active = ModelArithmetic.ActiveParameters(config);
        long bytes = Directory.GetFiles(outDir, "*.safetensors").Sum(f => new FileInfo(f).Length);
        io.Out.WriteLine($"Wrote {outDir}: {ModelArithmetic.FormatCount(total)} parameters ({ModelArithmetic.FormatCount(active)} active), {Parsing.ShortName(storage)}, {ModelArithmetic.FormatBytes(bytes)}, seed {settings.Seed}, {clock.Elapsed.TotalSeconds:0.0} s.");
        return ExitCodes.Success;
    }

    /// <summary>Builds, initialises (seeded) and saves a model of <paramref name="config"/>.</summary>
    internal static void Write(JambaConfig config, string folder, torch.ScalarType storage, long seed, long maxShardBytes = 0)
    {
        // Build directly in the storage dtype when the CPU computes in it (saves a full-size fp32 copy); f16 goes through f32.
        var build = storage == torch.ScalarType.BFloat16 ? ComputeDType.BFloat16 : ComputeDType.Float32;
        using var model = new JambaForCausalLM(config, new ModelOptions { Device = "cpu", DType = build });
        JambaInitializer.Initialize(model, seed);
        CheckpointWriter.Save(model, folder, storage, maxShardBytes);
    }

    internal static torch.ScalarType DefaultStorage(JambaConfig config) => config.TorchDtype switch
    {
        "bfloat16" => torch.ScalarType.BFloat16,
        "float16" => torch.ScalarType.Float16,
        _ => torch.ScalarType.Float32,
    };

    internal static torch.ScalarType ToScalarType(ComputeDType dtype) => dtype switch
    {
        ComputeDType.BFloat16 => torch.ScalarType.BFloat16,
        ComputeDType.Float16 => torch.ScalarType.Float16,
        _ => torch.ScalarType.Float32,
    };
}
