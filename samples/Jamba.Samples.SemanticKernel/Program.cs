// A Semantic Kernel agent loop over a local Jamba checkpoint: a kernel with a plugin, automatic function
// calling through the model's own chat template, streamed answers. See README.md.
using System.ComponentModel;
using System.Globalization;
using Jamba.Inference;
using Jamba.Inference.Checkpoint;
using Jamba.Inference.Config;
using Jamba.Inference.Engine;
using Jamba.Inference.Modeling;
using Jamba.SemanticKernel;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;
using Microsoft.SemanticKernel.Services;

var options = SampleOptions.Parse(args);
if (options is null) return 2;

string? demoFolder = null;
string modelPath;
if (options.Demo)
{
    demoFolder = DemoCheckpoint.Create();
    modelPath = demoFolder;
    Console.Error.WriteLine($"[demo] tiny random-weight checkpoint in {demoFolder} (its answers are noise; use --model for a real Jamba)");
}
else
{
    modelPath = options.ModelPath!;
}

try
{
    var builder = Kernel.CreateBuilder();
    builder.Services.AddLogging(b => b.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning));
    builder.AddJambaChatCompletion(modelPath, loadOptions: new ModelLoadOptions
    {
        Model = new ModelOptions { Device = options.Device, DType = options.DType },
    });
    builder.Plugins.AddFromType<TravelPlugin>("Travel");
    using var kernel = new DisposableKernel(builder.Build());

    var chat = kernel.Value.GetRequiredService<IChatCompletionService>();
    var settings = new JambaPromptExecutionSettings
    {
        Temperature = options.Temperature,
        MaxTokens = options.MaxTokens,
        Seed = options.Seed,
        FunctionChoiceBehavior = options.Tools ? FunctionChoiceBehavior.Auto() : null,
    };
    var history = new ChatHistory(options.System);

    Console.Error.WriteLine($"Model: {chat.GetModelId()} ({modelPath}); tools: {(options.Tools ? "Travel plugin" : "off")}.");
    foreach (var prompt in Prompts(options))
    {
        history.AddUserMessage(prompt);
        Console.WriteLine($"> {prompt}");
        var answer = new System.Text.StringBuilder();
        await foreach (var update in chat.GetStreamingChatMessageContentsAsync(history, settings, kernel.Value))
        {
            Console.Write(update.Content);
            answer.Append(update.Content);
        }
        Console.WriteLine();
        history.AddAssistantMessage(answer.ToString());
    }
    return 0;
}
catch (Exception ex) when (ex is DirectoryNotFoundException or FileNotFoundException or JambaConfigException or JambaCheckpointException or ArgumentException)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return 1;
}
finally
{
    if (demoFolder is not null)
    {
        try { Directory.Delete(demoFolder, recursive: true); } catch (IOException) { }
    }
}

// --prompt arguments first; otherwise lines from redirected stdin; otherwise an interactive loop.
static IEnumerable<string> Prompts(SampleOptions options)
{
    if (options.Prompts.Count > 0)
    {
        foreach (var p in options.Prompts) yield return p;
        yield break;
    }
    bool interactive = !Console.IsInputRedirected;
    while (true)
    {
        if (interactive) Console.Error.Write("you> ");
        var line = Console.ReadLine();
        if (line is null || interactive && (line.Trim() is "" or "exit" or "quit")) yield break;
        if (line.Trim().Length > 0) yield return line;
    }
}

/// <summary>The sample's plugin: functions the model may call.</summary>
public sealed class TravelPlugin
{
    [KernelFunction("get_weather"), Description("Gets the current weather for a city.")]
    public string GetWeather([Description("The city, e.g. Oslo")] string city) =>
        $"{{\"city\": \"{city}\", \"condition\": \"sunny\", \"temperature_c\": 21}}";

    [KernelFunction("get_local_time"), Description("Gets the current local time in a city's time zone (IANA id, e.g. Europe/Oslo).")]
    public string GetLocalTime([Description("IANA time zone id")] string timeZone)
    {
        try
        {
            var zone = TimeZoneInfo.FindSystemTimeZoneById(timeZone);
            return TimeZoneInfo.ConvertTime(DateTimeOffset.UtcNow, zone).ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture);
        }
        catch (TimeZoneNotFoundException)
        {
            return $"unknown time zone '{timeZone}'";
        }
    }
}

/// <summary>Disposes the kernel's service provider (releasing the model) at the end.</summary>
internal sealed class DisposableKernel(Kernel kernel) : IDisposable
{
    public Kernel Value { get; } = kernel;
    public void Dispose() => (Value.Services as IDisposable)?.Dispose();
}

internal sealed class SampleOptions
{
    public string? ModelPath { get; private set; } = Environment.GetEnvironmentVariable("JAMBA_MODEL");
    public bool Demo { get; private set; }
    public List<string> Prompts { get; } = new();
    public string System { get; private set; } = "You are a helpful travel assistant. Use the tools when they help.";
    public int MaxTokens { get; private set; } = 512;
    public float Temperature { get; private set; } = 0.4f;
    public long? Seed { get; private set; }
    public string Device { get; private set; } = "cpu";
    public ComputeDType DType { get; private set; } = ComputeDType.Auto;
    public bool Tools { get; private set; } = true;

    public static SampleOptions? Parse(string[] args)
    {
        var o = new SampleOptions();
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            try
            {
                switch (args[i])
                {
                    case "--model": o.ModelPath = Next(); break;
                    case "--demo": o.Demo = true; break;
                    case "--prompt": o.Prompts.Add(Next()); break;
                    case "--system": o.System = Next(); break;
                    case "--max-tokens": o.MaxTokens = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                    case "--temperature": o.Temperature = float.Parse(Next(), CultureInfo.InvariantCulture); break;
                    case "--seed": o.Seed = long.Parse(Next(), CultureInfo.InvariantCulture); break;
                    case "--device": o.Device = Next(); break;
                    case "--dtype": o.DType = Enum.Parse<ComputeDType>(Next(), ignoreCase: true); break;
                    case "--no-tools": o.Tools = false; break;
                    case "-h" or "--help": Usage(); return null;
                    default: throw new ArgumentException($"unknown option {args[i]}");
                }
            }
            catch (Exception ex) when (ex is ArgumentException or FormatException or OverflowException)
            {
                Console.Error.WriteLine($"error: {ex.Message}");
                Usage();
                return null;
            }
        }
        if (!o.Demo && string.IsNullOrEmpty(o.ModelPath))
        {
            Console.Error.WriteLine("error: pass --model <checkpoint folder> (or set JAMBA_MODEL), or --demo");
            Usage();
            return null;
        }
        return o;
    }

    private static void Usage() => Console.Error.WriteLine("""
        usage: Jamba.Samples.SemanticKernel (--model <folder> | --demo) [--prompt <text>]... [options]
          --model <folder>     Hugging Face Jamba checkpoint (config.json, *.safetensors, tokenizer, chat template); or JAMBA_MODEL
          --demo               build a tiny random-weight checkpoint and use it (no download; output is noise)
          --prompt <text>      a user turn (repeatable); without it, lines are read from stdin (one turn each)
          --system <text>      system message
          --max-tokens <n>     most tokens per answer (default 512)
          --temperature <t>    sampling temperature, 0 = greedy (default 0.4)
          --seed <n>           sampling seed
          --device <d>         cpu, cuda or cuda:N (default cpu; CUDA needs a TorchSharp-cuda package)
          --dtype <t>          Auto, Float32, BFloat16, Float16 (default Auto)
          --no-tools           do not offer the plugin's functions
        """);
}

/// <summary>Builds a tiny random-weight checkpoint with the real Jamba 1.7 chat template (for --demo and CI).</summary>
internal static class DemoCheckpoint
{
    public static string Create()
    {
        string folder = Directory.CreateTempSubdirectory("jamba-sk-demo-").FullName;
        var config = JambaConfig.Parse("""
            {"model_type":"jamba","vocab_size":1500,"hidden_size":32,"intermediate_size":48,"num_hidden_layers":4,
             "num_attention_heads":4,"num_key_value_heads":2,"num_experts":4,"num_experts_per_tok":2,
             "attn_layer_period":2,"attn_layer_offset":1,"expert_layer_period":2,"expert_layer_offset":1,
             "mamba_d_state":8,"mamba_d_conv":4,"mamba_expand":2,"mamba_dt_rank":4,"eos_token_id":2,"pad_token_id":0,"bos_token_id":1,
             "max_position_embeddings":8192}
            """);
        using (var model = new JambaForCausalLM(config, new ModelOptions { DType = ComputeDType.Float32 }))
        {
            JambaInitializer.Initialize(model, seed: 11);
            CheckpointWriter.Save(model, folder);
        }
        string demo = Path.Combine(AppContext.BaseDirectory, "demo");
        foreach (var file in new[] { "tokenizer.model", "tokenizer_config.json", "chat_template.jinja" })
            File.Copy(Path.Combine(demo, file), Path.Combine(folder, file));
        return folder;
    }
}
