using Jamba.Inference.Modeling;

namespace Jamba.Cli.Infrastructure;

/// <summary>Parsers of option values; they throw <see cref="UsageException"/> naming the option.</summary>
internal static class Parsing
{
    /// <summary>Parses <c>1,2,3</c> (commas and/or spaces).</summary>
    public static List<int> IntList(string? value, string option, int min = int.MinValue)
    {
        var list = new List<int>();
        foreach (var part in (value ?? "").Split([',', ' ', ';'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int v))
                throw new UsageException($"{option} expects comma-separated integers; '{part}' is not one.");
            if (v < min) throw new UsageException($"{option} values must be at least {min}; found {v}.");
            list.Add(v);
        }
        if (list.Count == 0) throw new UsageException($"{option} needs at least one integer, e.g. {option} 1,2,3.");
        return list;
    }

    /// <summary>Parses <c>auto|f32|bf16|f16</c> (and the long names).</summary>
    public static ComputeDType DType(string? value, string option = "--dtype") => (value ?? "auto").Trim().ToLowerInvariant() switch
    {
        "auto" => ComputeDType.Auto,
        "f32" or "fp32" or "float32" => ComputeDType.Float32,
        "bf16" or "bfloat16" => ComputeDType.BFloat16,
        "f16" or "fp16" or "float16" or "half" => ComputeDType.Float16,
        _ => throw new UsageException($"{option} must be auto, f32, bf16 or f16; found '{value}'."),
    };

    /// <summary>Parses <c>none|int8|int8-experts</c>.</summary>
    public static WeightQuantization Quantization(string? value, string option = "--quantize") => (value ?? "none").Trim().ToLowerInvariant() switch
    {
        "none" or "off" => WeightQuantization.None,
        "int8" => WeightQuantization.Int8,
        "int8-experts" => WeightQuantization.Int8Experts,
        _ => throw new UsageException($"{option} must be none, int8 or int8-experts; found '{value}'."),
    };

    /// <summary>Checks <c>cpu|cuda|cuda:N</c> and returns the normalised device string.</summary>
    public static string Device(string? value)
    {
        try
        {
            return new ModelOptions { Device = value ?? "cpu" }.Device;
        }
        catch (ArgumentException)
        {
            throw new UsageException($"--device must be cpu, cuda or cuda:N; found '{value}'.");
        }
    }

    /// <summary>Short name of a dtype (f32, bf16, f16).</summary>
    public static string ShortName(TorchSharp.torch.ScalarType dtype) => dtype switch
    {
        TorchSharp.torch.ScalarType.Float32 => "f32",
        TorchSharp.torch.ScalarType.BFloat16 => "bf16",
        TorchSharp.torch.ScalarType.Float16 => "f16",
        _ => dtype.ToString().ToLowerInvariant(),
    };
}
