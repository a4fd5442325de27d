using System.ComponentModel;
using Jamba.Inference.Generation;
using Jamba.Inference.Modeling;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Jamba.Cli.Infrastructure;

/// <summary>Options every model command takes.</summary>
internal class ModelSettings : CommandSettings
{
    [CommandOption("-m|--model <FOLDER>")]
    [Description("Checkpoint folder (config.json, safetensors, tokenizer). Default: $JAMBA_MODEL, else the shipped models/jamba-moby-tiny.")]
    public string? Model { get; set; }

    [CommandOption("--device <DEVICE>")]
    [Description("cpu, cuda or cuda:N. The CPU build of the tool runs on cpu only.")]
    [DefaultValue("cpu")]
    public string Device { get; set; } = "cpu";

    [CommandOption("--dtype <DTYPE>")]
    [Description("Compute dtype: auto (bf16 on CUDA or CPUs with native bf16, else f32), f32, bf16 or f16.")]
    [DefaultValue("auto")]
    public string DType { get; set; } = "auto";

    [CommandOption("--quantize <MODE>")]
    [Description("Weight storage, quantized at load: none, int8 (every large projection: experts, MLPs, attention, Mamba in/x/out, the LM head) or int8-experts (the mixture-of-experts weights only).")]
    [DefaultValue("none")]
    public string Quantize { get; set; } = "none";

    [CommandOption("--threads <N>")]
    [Description("Intra-op CPU threads (torch.set_num_threads); default: TorchSharp's choice.")]
    public int? Threads { get; set; }

    public override ValidationResult Validate()
    {
        try
        {
            Parsing.Device(Device);
            Parsing.DType(DType);
            Parsing.Quantization(Quantize);
        }
        catch (UsageException ex)
        {
            return ValidationResult.Error(ex.Message);
        }
        if (Threads is < 1 or > 1024) return ValidationResult.Error($"--threads must be between 1 and 1024; found {Threads}.");
        return ValidationResult.Success();
    }

    /// <summary>The model options of the flags; <c>--dtype auto</c> stays <see cref="ComputeDType.Auto"/>: the loader resolves it
    /// (once) and a command that loaded a model reports <c>JambaModelHandle.DType</c>, never a dtype of its own.</summary>
    public ModelOptions ModelOptions() => new() { Device = Parsing.Device(Device), DType = Parsing.DType(DType), Quantization = Parsing.Quantization(Quantize) };

    /// <summary>What <c>--dtype</c> resolves to on <c>--device</c>, for a command that loads no weights (<c>info</c>): the
    /// same resolution the loader makes (<see cref="Inference.Modeling.ModelOptions.ResolveScalarType"/>).</summary>
    public TorchSharp.torch.ScalarType DTypeWithoutLoading() => ModelOptions().ResolveScalarType();
}

/// <summary>Sampling options of generate and chat.</summary>
internal class SamplingSettings : ModelSettings
{
    [CommandOption("-n|--max-new-tokens <N>")]
    [Description("Tokens to generate at most.")]
    [DefaultValue(200)]
    public int MaxNewTokens { get; set; } = 200;

    [CommandOption("-t|--temperature <T>")]
    [Description("Sampling temperature; 0 = greedy.")]
    [DefaultValue(0.8f)]
    public float Temperature { get; set; } = 0.8f;

    [CommandOption("--top-k <K>")]
    [Description("Keep the K most likely tokens (0 = off).")]
    [DefaultValue(0)]
    public int TopK { get; set; }

    [CommandOption("--top-p <P>")]
    [Description("Nucleus sampling: keep the smallest set of tokens with probability mass P (1 = off).")]
    [DefaultValue(1f)]
    public float TopP { get; set; } = 1f;

    [CommandOption("--min-p <P>")]
    [Description("Drop tokens less likely than P times the most likely one (0 = off).")]
    [DefaultValue(0f)]
    public float MinP { get; set; }

    [CommandOption("--repetition-penalty <R>")]
    [Description("Penalise tokens already in the context (1 = off).")]
    [DefaultValue(1f)]
    public float RepetitionPenalty { get; set; } = 1f;

    [CommandOption("--seed <N>")]
    [Description("Random seed for reproducible sampling.")]
    public long? Seed { get; set; }

    [CommandOption("--stop <TEXT>")]
    [Description("Stop when this text is generated (repeatable).")]
    public string[]? Stop { get; set; }

    [CommandOption("--ignore-eos")]
    [Description("Keep generating past end-of-sequence and end-of-turn tokens (benchmarks, reference comparisons).")]
    public bool IgnoreEos { get; set; }

    public override ValidationResult Validate()
    {
        var baseResult = base.Validate();
        if (!baseResult.Successful) return baseResult;
        try
        {
            GenerationOptions().Validate(FlagName);
        }
        catch (ArgumentException ex)
        {
            return ValidationResult.Error(WithoutParameterSuffix(ex));
        }
        return ValidationResult.Success();
    }

    /// <summary>
    /// The CLI's one mapping from its sampling flags to the engine's options: <c>generate</c> runs it directly, <c>chat</c>
    /// hands it to <c>JambaChatClient</c> as the defaults (<c>JambaChatClientOptions.DefaultGenerationOptions</c>).
    /// </summary>
    public GenerationOptions GenerationOptions()
    {
        var options = new GenerationOptions
        {
            MaxNewTokens = MaxNewTokens,
            Temperature = Temperature,
            TopK = TopK,
            TopP = TopP,
            MinP = MinP,
            RepetitionPenalty = RepetitionPenalty,
            Seed = Seed,
            IgnoreEos = IgnoreEos,
        };
        foreach (var s in Stop ?? []) options.StopSequences.Add(s);
        return options;
    }

    /// <summary>The flag of a <see cref="Inference.Generation.GenerationOptions"/> property (null: not a flag), for
    /// <see cref="Inference.Generation.GenerationOptions.Validate(Func{string, string?})"/>.</summary>
    internal static string? FlagName(string property) => property switch
    {
        nameof(Inference.Generation.GenerationOptions.MaxNewTokens) => "--max-new-tokens",
        nameof(Inference.Generation.GenerationOptions.Temperature) => "--temperature",
        nameof(Inference.Generation.GenerationOptions.TopK) => "--top-k",
        nameof(Inference.Generation.GenerationOptions.TopP) => "--top-p",
        nameof(Inference.Generation.GenerationOptions.MinP) => "--min-p",
        nameof(Inference.Generation.GenerationOptions.RepetitionPenalty) => "--repetition-penalty",
        nameof(Inference.Generation.GenerationOptions.Seed) => "--seed",
        nameof(Inference.Generation.GenerationOptions.StopSequences) => "--stop",
        nameof(Inference.Generation.GenerationOptions.IgnoreEos) => "--ignore-eos",
        _ => null,
    };

    /// <summary>An <see cref="ArgumentException"/>'s message without the " (Parameter '…')" .NET appends.</summary>
    private static string WithoutParameterSuffix(ArgumentException ex)
    {
        string message = ex.Message;
        int paren = message.IndexOf(" (Parameter", StringComparison.Ordinal);
        return paren >= 0 ? message[..paren] : message;
    }
}
