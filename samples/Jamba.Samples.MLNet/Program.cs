// Jamba text generation in an ML.NET pipeline: read a CSV of prompts, generate, write the outputs, save the
// pipeline, load it back in a fresh MLContext, predict with it, and score reference continuations.
//
//   dotnet run --project samples/Jamba.Samples.MLNet -c Release -- [checkpoint-folder] [options]
//
// Options: --csv <file> (default: prompts.csv beside the sample), --out <folder> (default: ./mlnet-output),
//          --max-tokens <n> (default 32), --batch-size <n> (default 16), --demo-model (random weights, see README),
//          --benchmark <rows> (rows/second for batch size 1 vs the batch size).
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Jamba.Inference.Checkpoint;
using Jamba.Inference.Config;
using Jamba.Inference.Modeling;
using Jamba.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;

string? modelFolder = null;
string csv = Path.Combine(AppContext.BaseDirectory, "prompts.csv");
string outFolder = Path.GetFullPath("mlnet-output");
int maxTokens = 32, batchSize = 16, benchmarkRows = 0;
bool demoModel = false;
for (int i = 0; i < args.Length; i++)
{
    string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.");
    switch (args[i])
    {
        case "--csv": csv = Next(); break;
        case "--out": outFolder = Path.GetFullPath(Next()); break;
        case "--max-tokens": maxTokens = int.Parse(Next(), CultureInfo.InvariantCulture); break;
        case "--batch-size": batchSize = int.Parse(Next(), CultureInfo.InvariantCulture); break;
        case "--benchmark": benchmarkRows = int.Parse(Next(), CultureInfo.InvariantCulture); break;
        case "--demo-model": demoModel = true; break;
        case "-h" or "--help":
            Console.WriteLine("usage: Jamba.Samples.MLNet [checkpoint-folder] [--csv file] [--out folder] [--max-tokens n] [--batch-size n] [--demo-model] [--benchmark rows]");
            return 0;
        default:
            if (args[i].StartsWith("--", StringComparison.Ordinal)) throw new ArgumentException($"Unknown option {args[i]}.");
            modelFolder = args[i];
            break;
    }
}

if (demoModel) modelFolder = CreateDemoModel();
modelFolder ??= FindShippedModel();
if (modelFolder is null)
{
    Console.Error.WriteLine("Pass a checkpoint folder (with tokenizer files), e.g. `-- /models/jamba`: the repository's models/jamba-moby-tiny " +
        "was not found. `--demo-model` builds a random-weight model to try the pipeline.");
    return 2;
}
Console.WriteLine($"Model: {modelFolder}");
Directory.CreateDirectory(outFolder);

var ml = new MLContext(seed: 0);
var data = ml.Data.LoadFromTextFile<CsvRow>(csv, separatorChar: ',', hasHeader: true, allowQuoting: true);

// 1. The pipeline: generate a continuation of each prompt (the template could combine several columns).
var options = new JambaTextGenerationOptions
{
    ModelPath = modelFolder,
    PromptTemplate = "{Prompt}",
    MaxTokens = maxTokens,
    BatchSize = batchSize,
    StopSequences = { "\n\n" },
};
var pipeline = ml.Transforms.Text.GenerateText("Continuation", options);
var sw = Stopwatch.StartNew();
var model = pipeline.Fit(data);
Console.WriteLine($"Fitted (model bound) in {sw.Elapsed.TotalSeconds:F1} s");

sw.Restart();
var results = ml.Data.CreateEnumerable<GeneratedRow>(model.Transform(data), reuseRowObject: false).ToList();
Console.WriteLine($"Generated {results.Count} rows in {sw.Elapsed.TotalSeconds:F1} s ({results.Count / sw.Elapsed.TotalSeconds:F1} rows/s)");
foreach (var r in results.Take(3))
    Console.WriteLine($"  [{r.Topic}] {r.Prompt} → {r.Continuation.ReplaceLineEndings(" ")}  ({r.FinishReason}, {r.PromptTokens}+{r.CompletionTokens} tokens)");

// 2. Write the outputs.
string outputsCsv = Path.Combine(outFolder, "outputs.csv");
using (var writer = new StreamWriter(outputsCsv, false, new UTF8Encoding(false)))
{
    writer.WriteLine("Topic,Prompt,Continuation,FinishReason,PromptTokens,CompletionTokens");
    foreach (var r in results)
        writer.WriteLine(string.Join(",", Csv(r.Topic), Csv(r.Prompt), Csv(r.Continuation), r.FinishReason, r.PromptTokens, r.CompletionTokens));
}
Console.WriteLine($"Wrote {outputsCsv}");

// 3. Save the pipeline: the zip holds the model's path and the settings, not the weights.
string zip = Path.Combine(outFolder, "jamba-pipeline.zip");
ml.Model.Save(model, data.Schema, zip);
Console.WriteLine($"Saved {zip} ({new FileInfo(zip).Length:N0} bytes)");

// 4. Load it back in a fresh context (as another process would) and use it.
var fresh = new MLContext(seed: 1);
var loaded = fresh.Model.Load(zip, out var inputSchema);
loaded = fresh.Model.RestoreTextGeneration(loaded); // batching transformer again; binds the model now (clear error if it moved)
var reloaded = fresh.Data.CreateEnumerable<GeneratedRow>(loaded.Transform(data), reuseRowObject: false).ToList();
bool same = reloaded.Select(r => r.Continuation).SequenceEqual(results.Select(r => r.Continuation));
Console.WriteLine($"Loaded pipeline reproduces the outputs: {same}");
using (var engine = fresh.Model.CreatePredictionEngine<CsvRow, GeneratedRow>(loaded))
{
    var one = engine.Predict(new CsvRow { Topic = "ad hoc", Prompt = results[0].Prompt, Reference = "" });
    Console.WriteLine($"Prediction engine: {one.Prompt} → {one.Continuation.ReplaceLineEndings(" ")}");
}

// 5. Score a few rows: how likely does the model find each reference continuation?
var scoring = ml.Transforms.Text.ScoreText("Reference", "Prompt", modelFolder);
var scored = ml.Data.CreateEnumerable<ScoredRow>(scoring.Fit(data).Transform(ml.Data.TakeRows(data, 3)), reuseRowObject: false);
foreach (var s in scored)
    Console.WriteLine($"  score [{s.Topic}] log-likelihood {s.LogLikelihood:F2} over {s.TargetTokens} tokens, perplexity {s.Perplexity:G4}");

if (benchmarkRows > 0) Benchmark(benchmarkRows);
JambaPipelineModels.ReleaseAll();
return same ? 0 : 1;

void Benchmark(int rows)
{
    var prompts = ml.Data.CreateEnumerable<CsvRow>(data, false).ToList();
    var many = ml.Data.LoadFromEnumerable(Enumerable.Range(0, rows).Select(i => prompts[i % prompts.Count]).ToList());
    foreach (int b in new[] { 1, batchSize })
    {
        var o = options.Clone();
        o.BatchSize = b;
        o.StopSequences.Clear();
        var m = ml.Transforms.Text.GenerateText("Continuation", o).Fit(many);
        _ = ml.Data.CreateEnumerable<GeneratedRow>(m.Transform(ml.Data.TakeRows(many, 2)), false).Count(); // warm up
        var watch = Stopwatch.StartNew();
        var n = ml.Data.CreateEnumerable<GeneratedRow>(m.Transform(many), false).Sum(r => r.CompletionTokens);
        double s = watch.Elapsed.TotalSeconds;
        Console.WriteLine($"benchmark: batch size {b,3}: {rows / s,7:F2} rows/s, {n / s,8:F1} tokens/s ({rows} rows, {n} tokens, {s:F1} s)");
    }
}

static string Csv(string s) => s.IndexOfAny([',', '"', '\n', '\r']) >= 0 ? "\"" + s.Replace("\"", "\"\"") + "\"" : s;

static string? FindShippedModel()
{
    foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
        for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "models", "jamba-moby-tiny");
            if (File.Exists(Path.Combine(candidate, "config.json"))) return candidate;
            if (File.Exists(Path.Combine(dir.FullName, "Jamba.sln"))) break;
        }
    return null;
}

// A random-weight checkpoint (jamba-tiny-a's shape) with the repository's test SentencePiece tokenizer: the text is
// gibberish, but every step of the pipeline runs. Written to a temp folder.
static string CreateDemoModel()
{
    string? tokenizerData = null;
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null && tokenizerData is null; dir = dir.Parent)
    {
        string candidate = Path.Combine(dir.FullName, "tests", "Jamba.Inference.Tests", "Tokenization", "TestData");
        if (File.Exists(Path.Combine(candidate, "tokenizer.model"))) tokenizerData = candidate;
    }
    if (tokenizerData is null) throw new DirectoryNotFoundException("--demo-model needs the repository's tests/Jamba.Inference.Tests/Tokenization/TestData.");
    string folder = Path.Combine(Path.GetTempPath(), "jamba-mlnet-demo-model");
    if (File.Exists(Path.Combine(folder, "config.json"))) return folder;
    Directory.CreateDirectory(folder);
    var config = JambaConfig.Parse("""
        {"model_type":"jamba","vocab_size":1500,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":4,
         "num_attention_heads":4,"num_key_value_heads":2,"num_experts":4,"num_experts_per_tok":2,
         "attn_layer_period":2,"attn_layer_offset":1,"expert_layer_period":2,"expert_layer_offset":1,
         "mamba_d_state":8,"mamba_d_conv":4,"mamba_expand":2,"mamba_dt_rank":8,"eos_token_id":2,"pad_token_id":0,"bos_token_id":1}
        """);
    using (var model = new JambaForCausalLM(config, new ModelOptions { DType = ComputeDType.Float32 }))
    {
        JambaInitializer.Initialize(model, seed: 5);
        using (TorchSharp.torch.no_grad()) model.lm_head!.weight.mul_(40);
        CheckpointWriter.Save(model, folder);
    }
    File.Copy(Path.Combine(tokenizerData, "tokenizer.model"), Path.Combine(folder, "tokenizer.model"), true);
    File.Copy(Path.Combine(tokenizerData, "tokenizer_config.json"), Path.Combine(folder, "tokenizer_config.json"), true);
    return folder;
}

/// <summary>A row of the prompts CSV.</summary>
public sealed class CsvRow
{
    /// <summary>A label.</summary>
    [LoadColumn(0)] public string Topic { get; set; } = "";
    /// <summary>The prompt.</summary>
    [LoadColumn(1)] public string Prompt { get; set; } = "";
    /// <summary>A reference continuation, for scoring.</summary>
    [LoadColumn(2)] public string Reference { get; set; } = "";
}

/// <summary>A row after generation.</summary>
public sealed class GeneratedRow
{
    /// <summary>A label.</summary>
    public string Topic { get; set; } = "";
    /// <summary>The prompt.</summary>
    public string Prompt { get; set; } = "";
    /// <summary>The generated text.</summary>
    public string Continuation { get; set; } = "";
    /// <summary><c>stop</c> or <c>length</c>.</summary>
    public string FinishReason { get; set; } = "";
    /// <summary>Prompt tokens.</summary>
    public int PromptTokens { get; set; }
    /// <summary>Generated tokens.</summary>
    public int CompletionTokens { get; set; }
}

/// <summary>A row after scoring.</summary>
public sealed class ScoredRow
{
    /// <summary>A label.</summary>
    public string Topic { get; set; } = "";
    /// <summary>Natural-log likelihood of the reference.</summary>
    public double LogLikelihood { get; set; }
    /// <summary>Perplexity of the reference.</summary>
    public double Perplexity { get; set; }
    /// <summary>Reference tokens.</summary>
    public int TargetTokens { get; set; }
}
