using System.Collections.Concurrent;
using Jamba.Inference.Engine;
using Jamba.Inference.Generation;
using Jamba.Inference.Modeling;
using Microsoft.ML;
using Microsoft.ML.Data;
using Xunit;
using static TorchSharp.torch;

namespace Jamba.MLNet.Tests;

public sealed class PromptRow
{
    public string Prompt { get; set; } = "";
}

public sealed class QaRow
{
    public string Question { get; set; } = "";
    public string Topic { get; set; } = "";
    public string Answer { get; set; } = "";
}

public sealed class NumericRow
{
    public float Prompt { get; set; }
}

public sealed class GenerationOutput
{
    public string Prompt { get; set; } = "";
    public string GeneratedText { get; set; } = "";
    public string FinishReason { get; set; } = "";
    public int PromptTokens { get; set; }
    public int CompletionTokens { get; set; }
}

public sealed class ScoreOutput
{
    public double LogLikelihood { get; set; }
    public double Perplexity { get; set; }
    public int TargetTokens { get; set; }
    public int PromptTokens { get; set; }
}

[Collection(TextModelCollection.Name)]
public sealed class TextGenerationTests(TextModelFixture fixture)
{
    private static readonly string[] Prompts =
    [
        "Call me Ishmael.", "The whale", "It was a dark and stormy night", "Hello", "Once upon a time there was",
        "a", "The sea is calm tonight.", "Why?", "Some years ago, never mind how long precisely", "Whenever I find myself",
        "ship", "The quick brown fox jumps over the lazy dog",
    ];

    private JambaTextGenerationOptions Options(int maxTokens = 12, int batchSize = 16) => new()
    {
        ModelPath = fixture.Folder,
        DType = ComputeDType.Float32,
        InputColumnName = "Prompt",
        MaxTokens = maxTokens,
        BatchSize = batchSize,
    };

    private static IDataView Data(MLContext ml, IEnumerable<string> prompts) =>
        ml.Data.LoadFromEnumerable(prompts.Select(p => new PromptRow { Prompt = p }).ToList());

    private static List<GenerationOutput> Run(MLContext ml, ITransformer model, IDataView data) =>
        ml.Data.CreateEnumerable<GenerationOutput>(model.Transform(data), reuseRowObject: false).ToList();

    private async Task<GenerationResult> EngineGenerate(string folder, string prompt, int maxTokens, bool addSpecialTokens = true)
    {
        using var handle = await JambaModelHandle.LoadAsync(folder, new ModelLoadOptions { Model = new ModelOptions { DType = ComputeDType.Float32 } });
        var ids = handle.Tokenizer!.Encode(prompt, addSpecialTokens);
        return await handle.Engine.GenerateTextAsync(new GenerationRequest(ids, new GenerationOptions
        {
            MaxNewTokens = maxTokens,
            Temperature = 0,
            IncludeSpecialTokensInText = false,
        }));
    }

    [Fact]
    public void OptionsAreValidatedWithTheOptionName()
    {
        var ml = new MLContext();
        ArgumentException Fails(Action<JambaTextGenerationOptions> change)
        {
            var o = Options();
            change(o);
            return Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.Text.GenerateText(o));
        }
        Assert.Equal("ModelPath", Fails(o => o.ModelPath = "").ParamName);
        Assert.Equal("BatchSize", Fails(o => o.BatchSize = 0).ParamName);
        Assert.Equal("MaxTokens", Fails(o => o.MaxTokens = 0).ParamName);
        Assert.Equal("Device", Fails(o => o.Device = "tpu").ParamName);
        Assert.Equal("Temperature", Fails(o => o.Temperature = -1).ParamName);
        Assert.Equal("PromptTemplate", Fails(o => o.PromptTemplate = "Q: {Question").ParamName);
        Assert.Equal("PromptTemplate", Fails(o => o.PromptTemplate = "no placeholders").ParamName);
        Assert.Equal("InputColumnName", Fails(o => o.InputColumnName = null).ParamName);
        Assert.Contains("FinishReasonColumnName", Fails(o => o.FinishReasonColumnName = "GeneratedText").Message);
        Assert.Equal("Generate", Fails(o => o.Generate = false).ParamName);

        var ok = Options();
        ok.PromptTemplate = "{{literal}} {Question} and {Topic}, again {Question}";
        Assert.Equal(["Question", "Topic"], ok.GetPromptColumns());
    }

    [Fact]
    public void SchemaErrorsNameTheColumnAndTheExpectedType()
    {
        var ml = new MLContext();
        var estimator = ml.Transforms.Text.GenerateText(Options());

        var missing = ml.Data.LoadFromEnumerable(new[] { new QaRow() });
        var e1 = Assert.Throws<ArgumentOutOfRangeException>(() => estimator.Fit(missing));
        Assert.Contains("'Prompt'", e1.Message);
        Assert.Contains("String", e1.Message);
        var s1 = Assert.Throws<ArgumentOutOfRangeException>(() => estimator.GetOutputSchema(SchemaShapeOf(missing)));
        Assert.Contains("'Prompt'", s1.Message);

        var numeric = ml.Data.LoadFromEnumerable(new[] { new NumericRow { Prompt = 1 } });
        var e2 = Assert.Throws<ArgumentOutOfRangeException>(() => estimator.Fit(numeric));
        Assert.Contains("'Prompt'", e2.Message);
        Assert.Contains("expected String", e2.Message);
        Assert.Contains("Single", e2.Message);
        var s2 = Assert.Throws<ArgumentOutOfRangeException>(() => estimator.GetOutputSchema(SchemaShapeOf(numeric)));
        Assert.Contains("Single", s2.Message);

        // The fitted transformer checks the schema it is applied to, too.
        var model = estimator.Fit(Data(ml, ["x"]));
        var e3 = Assert.Throws<ArgumentOutOfRangeException>(() => model.Transform(numeric));
        Assert.Contains("'Prompt'", e3.Message);

        // Scoring names the target column.
        var scoring = Options();
        scoring.TargetColumnName = "Answer";
        var e4 = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.Text.GenerateText(scoring).Fit(Data(ml, ["x"])));
        Assert.Contains("'Answer'", e4.Message);
        Assert.Contains("TargetColumnName", e4.Message);
    }

    /// <summary>The schema shape of a data view (ML.NET's <c>SchemaShape.Create</c> is internal; pipelines call it themselves).</summary>
    private static SchemaShape SchemaShapeOf(IDataView data) => (SchemaShape)typeof(SchemaShape)
        .GetMethod("Create", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static, [typeof(DataViewSchema)])!
        .Invoke(null, [data.Schema])!;

    [Fact]
    public void OutputSchemaDescribesTheNewColumns()
    {
        var ml = new MLContext();
        var data = Data(ml, ["x"]);
        var estimator = ml.Transforms.Text.GenerateText(Options());
        var shape = estimator.GetOutputSchema(SchemaShapeOf(data));
        Assert.Equal(["Prompt", "GeneratedText", "FinishReason", "PromptTokens", "CompletionTokens"], shape.Select(c => c.Name));
        var model = estimator.Fit(data);
        var schema = model.GetOutputSchema(data.Schema);
        Assert.Equal(TextDataViewType.Instance, schema["GeneratedText"].Type);
        Assert.Equal(TextDataViewType.Instance, schema["FinishReason"].Type);
        Assert.Equal(NumberDataViewType.Int32, schema["PromptTokens"].Type);
        Assert.Equal(NumberDataViewType.Int32, schema["CompletionTokens"].Type);
        Assert.Equal(schema.Select(c => (c.Name, c.Type)), model.Transform(data).Schema.Select(c => (c.Name, c.Type)));

        var scoring = Options();
        scoring.Generate = false;
        scoring.TargetColumnName = "Prompt";
        var scoreShape = ml.Transforms.Text.GenerateText(scoring).GetOutputSchema(SchemaShapeOf(data));
        Assert.Equal(["Prompt", "PromptTokens", "LogLikelihood", "Perplexity", "TargetTokens"], scoreShape.Select(c => c.Name));
    }

    [Fact]
    public async Task GreedyOutputsEqualTheEngine()
    {
        var ml = new MLContext();
        var data = Data(ml, Prompts);
        var model = ml.Transforms.Text.GenerateText(Options()).Fit(data);
        var rows = Run(ml, model, data);
        Assert.Equal(Prompts.Length, rows.Count);
        for (int i = 0; i < Prompts.Length; i++)
        {
            var expected = await EngineGenerate(fixture.Folder, Prompts[i], 12);
            Assert.Equal(Prompts[i], rows[i].Prompt);
            Assert.Equal(expected.Text, rows[i].GeneratedText);
            Assert.Equal(expected.Usage.PromptTokens, rows[i].PromptTokens);
            Assert.Equal(expected.Usage.CompletionTokens, rows[i].CompletionTokens);
            Assert.Equal(expected.FinishReason == FinishReason.Stop ? "stop" : "length", rows[i].FinishReason);
        }
        Assert.Contains(rows, r => r.GeneratedText.Length > 0);
        Assert.True(rows.Select(r => r.GeneratedText).Distinct().Count() > 1, "outputs should differ between prompts");
    }

    [Fact]
    public void BatchingGivesTheSameOutputsAsOneRowAtATime()
    {
        var ml = new MLContext();
        var data = Data(ml, Prompts);
        var one = Run(ml, ml.Transforms.Text.GenerateText(Options(batchSize: 1)).Fit(data), data);
        var many = Run(ml, ml.Transforms.Text.GenerateText(Options(batchSize: 5)).Fit(data), data);
        var all = Run(ml, ml.Transforms.Text.GenerateText(Options(batchSize: 64)).Fit(data), data);
        Assert.Equal(one.Select(r => r.GeneratedText), many.Select(r => r.GeneratedText));
        Assert.Equal(one.Select(r => r.GeneratedText), all.Select(r => r.GeneratedText));
        Assert.Equal(one.Select(r => r.CompletionTokens), all.Select(r => r.CompletionTokens));

        // Seeded sampling too: every row uses the seed, so batches and row order do not matter.
        var sampled = Options(batchSize: 1);
        sampled.Temperature = 0.8f;
        sampled.Seed = 42;
        var s1 = Run(ml, ml.Transforms.Text.GenerateText(sampled).Fit(data), data);
        sampled.BatchSize = 7;
        var s7 = Run(ml, ml.Transforms.Text.GenerateText(sampled).Fit(data), data);
        Assert.Equal(s1.Select(r => r.GeneratedText), s7.Select(r => r.GeneratedText));
    }

    [Fact]
    public async Task TransformIsLazyAndBatchesThroughTheEngine()
    {
        var ml = new MLContext();
        var data = Data(ml, Prompts);
        var model = ml.Transforms.Text.GenerateText(Options(maxTokens: 8, batchSize: 4)).Fit(data);
        using var handle = await JambaModelHandle.LoadAsync(fixture.Folder, new ModelLoadOptions { Model = new ModelOptions { DType = ComputeDType.Float32 } });
        long before = handle.Engine.Metrics.RequestsSubmitted;

        var output = model.Transform(data);
        // Reading only the input column generates nothing.
        using (var cursor = output.GetRowCursor([output.Schema["Prompt"]]))
            while (cursor.MoveNext()) { }
        Assert.Equal(before, handle.Engine.Metrics.RequestsSubmitted);

        // Reading one row submits at most one batch.
        using (var cursor = output.GetRowCursor(output.Schema))
        {
            Assert.True(cursor.MoveNext());
            var text = default(ReadOnlyMemory<char>);
            cursor.GetGetter<ReadOnlyMemory<char>>(output.Schema["GeneratedText"])(ref text);
            Assert.Equal(before + 4, handle.Engine.Metrics.RequestsSubmitted);
        }
        // Reading everything runs rows concurrently: decode steps carry more than one sequence.
        var rows = Run(ml, model, data);
        Assert.Equal(Prompts.Length, rows.Count);
        Assert.True(handle.Engine.Metrics.MaxBatch > 1, $"max batch {handle.Engine.Metrics.MaxBatch}");
    }

    [Fact]
    public void PredictionEngineMatchesTransformAndIsSafeFromSeveralThreads()
    {
        var ml = new MLContext();
        var data = Data(ml, Prompts);
        var model = ml.Transforms.Text.GenerateText(Options()).Fit(data);
        var expected = Run(ml, model, data).Select(r => r.GeneratedText).ToList();

        using (var engine = ml.Model.CreatePredictionEngine<PromptRow, GenerationOutput>(model))
        {
            for (int i = 0; i < 3; i++)
                Assert.Equal(expected[i], engine.Predict(new PromptRow { Prompt = Prompts[i] }).GeneratedText);
        }

        // The usual pattern: a pool of prediction engines shared by threads (each engine used by one thread at a time).
        var pool = new ConcurrentBag<PredictionEngine<PromptRow, GenerationOutput>>();
        var results = new string[Prompts.Length * 2];
        Parallel.For(0, results.Length, new ParallelOptions { MaxDegreeOfParallelism = 6 }, i =>
        {
            if (!pool.TryTake(out var engine)) engine = ml.Model.CreatePredictionEngine<PromptRow, GenerationOutput>(model);
            results[i] = engine.Predict(new PromptRow { Prompt = Prompts[i % Prompts.Length] }).GeneratedText;
            pool.Add(engine);
        });
        foreach (var e in pool) e.Dispose();
        for (int i = 0; i < results.Length; i++) Assert.Equal(expected[i % Prompts.Length], results[i]);

        // Disposing prediction engines (which dispose their transformer) leaves the model usable.
        Assert.Equal(expected, Run(ml, model, data).Select(r => r.GeneratedText));
    }

    [Fact]
    public async Task TemplateOverSeveralColumnsWithSystemPromptAndChatTemplate()
    {
        var ml = new MLContext();
        var rows = new[]
        {
            new QaRow { Question = "Who is Ahab?", Topic = "whaling" },
            new QaRow { Question = "What is {this}?", Topic = "braces" },
        };
        var data = ml.Data.LoadFromEnumerable(rows);
        var options = new JambaTextGenerationOptions
        {
            ModelPath = fixture.ChatFolder,
            DType = ComputeDType.Float32,
            PromptTemplate = "Topic: {Topic}. {{Q}}: {Question}",
            SystemPrompt = "Answer briefly.",
            UseChatTemplate = true,
            MaxTokens = 6,
        };
        var model = ml.Transforms.Text.GenerateText(options).Fit(data);
        var output = ml.Data.CreateEnumerable<GenerationOutput>(model.Transform(data), false, ignoreMissingColumns: true).ToList();
        for (int i = 0; i < rows.Length; i++)
        {
            string rendered = $"<|startoftext|><|system|>Answer briefly.<|eom|><|user|>Topic: {rows[i].Topic}. {{Q}}: {rows[i].Question}<|eom|><|assistant|>";
            var expected = await EngineGenerate(fixture.ChatFolder, rendered, 6, addSpecialTokens: false);
            Assert.Equal(expected.Usage.PromptTokens, output[i].PromptTokens);
            Assert.Equal(expected.Text, output[i].GeneratedText);
        }

        // Without a chat template: the system prompt is a prefix followed by a blank line.
        options.UseChatTemplate = false;
        var plain = ml.Data.CreateEnumerable<GenerationOutput>(ml.Transforms.Text.GenerateText(options).Fit(data).Transform(data), false, ignoreMissingColumns: true).First();
        var plainExpected = await EngineGenerate(fixture.ChatFolder, $"Answer briefly.\n\nTopic: whaling. {{Q}}: Who is Ahab?", 6);
        Assert.Equal(plainExpected.Text, plain.GeneratedText);
        Assert.Equal(plainExpected.Usage.PromptTokens, plain.PromptTokens);
    }

    [Fact]
    public async Task ScoringEqualsADirectComputation()
    {
        var ml = new MLContext();
        var rows = new[]
        {
            new QaRow { Question = "Call me", Answer = " Ishmael." },
            new QaRow { Question = "The whale", Answer = " is white and very large" },
            new QaRow { Question = "Hello", Answer = "" },
        };
        var data = ml.Data.LoadFromEnumerable(rows);
        // fp32 on both sides: the check is that scoring computes exactly this sum (in bf16, the one-forward scoring and the
        // per-token reference take different kernels and would differ by rounding, not by a bug).
        var model = ml.Transforms.Text.GenerateText(new JambaTextGenerationOptions
        {
            Generate = false, TargetColumnName = "Answer", InputColumnName = "Question", ModelPath = fixture.Folder, DType = ComputeDType.Float32,
        }).Fit(data);
        var scores = ml.Data.CreateEnumerable<ScoreOutput>(model.Transform(data), false).ToList();

        using var handle = await JambaModelHandle.LoadAsync(fixture.Folder, new ModelLoadOptions { Model = new ModelOptions { DType = ComputeDType.Float32 } });
        for (int i = 0; i < rows.Length; i++)
        {
            var prompt = handle.Tokenizer!.Encode(rows[i].Question);
            var target = handle.Tokenizer.Encode(rows[i].Answer, addSpecialTokens: false);
            Assert.Equal(prompt.Count, scores[i].PromptTokens);
            Assert.Equal(target.Count, scores[i].TargetTokens);
            // Independently: one stateless forward per target token over the growing prefix, last-position logits only.
            double ll = 0;
            var ids = prompt.Select(t => (long)t).ToList();
            foreach (int t in target)
            {
                using var scope = NewDisposeScope();
                var logits = handle.Model.Forward(tensor(ids.ToArray(), [1, ids.Count]), null, null, LogitPositions.Last);
                ll += logits.reshape(-1).to(ScalarType.Float64).log_softmax(0)[t].item<double>();
                ids.Add(t);
            }
            Assert.Equal(ll, scores[i].LogLikelihood, 4);
            if (target.Count == 0) Assert.True(double.IsNaN(scores[i].Perplexity));
            else
            {
                // perplexity is exp(−LL / tokens) of the scorer's own LL (checked against the reference just above) …
                Assert.Equal(1, scores[i].Perplexity / Math.Exp(-scores[i].LogLikelihood / target.Count), 9);
                // … and so within the LL tolerance of the reference's perplexity
                Assert.Equal(1, scores[i].Perplexity / Math.Exp(-ll / target.Count), 4);
            }
        }
        Assert.True(scores[0].LogLikelihood < 0);

        // Generation and scoring together.
        var both = new JambaTextGenerationOptions { ModelPath = fixture.Folder, InputColumnName = "Question", TargetColumnName = "Answer", MaxTokens = 4 };
        var bothSchema = ml.Transforms.Text.GenerateText(both).Fit(data).Transform(data).Schema;
        Assert.NotNull(bothSchema.GetColumnOrNull("GeneratedText"));
        Assert.NotNull(bothSchema.GetColumnOrNull("LogLikelihood"));
    }

    [Fact]
    public void SaveAndLoadRoundTripInAFreshContext()
    {
        var ml = new MLContext(seed: 1);
        var data = Data(ml, Prompts);
        var pipeline = ml.Transforms.CopyColumns("PromptCopy", "Prompt")
            .Append(ml.Transforms.Text.GenerateText(Options(maxTokens: 10)));
        var model = pipeline.Fit(data);
        var expected = Run(ml, model, data);
        string zip = Path.Combine(Path.GetTempPath(), $"jamba-mlnet-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Model.Save(model, data.Schema, zip);
            // The zip references the model; it does not copy the weights.
            Assert.True(new FileInfo(zip).Length < 64 * 1024, $"zip is {new FileInfo(zip).Length} bytes");
            long weights = Directory.GetFiles(fixture.Folder, "*.safetensors").Sum(f => new FileInfo(f).Length);
            Assert.True(weights > 10 * new FileInfo(zip).Length);

            var fresh = new MLContext(seed: 2);
            var loaded = fresh.Model.Load(zip, out var schema);
            Assert.Equal(data.Schema.Select(c => c.Name), schema.Select(c => c.Name));
            var freshData = Data(fresh, Prompts);
            var actual = Run(fresh, loaded, freshData);
            Assert.Equal(expected.Select(r => r.GeneratedText), actual.Select(r => r.GeneratedText));
            Assert.Equal(expected.Select(r => r.FinishReason), actual.Select(r => r.FinishReason));
            Assert.Equal(expected.Select(r => r.PromptTokens), actual.Select(r => r.PromptTokens));
            Assert.Equal(expected.Select(r => r.CompletionTokens), actual.Select(r => r.CompletionTokens));
            using (var engine = fresh.Model.CreatePredictionEngine<PromptRow, GenerationOutput>(loaded))
                Assert.Equal(expected[0].GeneratedText, engine.Predict(new PromptRow { Prompt = Prompts[0] }).GeneratedText);

            // Restored: a batching transformer again, with the same outputs, and it saves the same way.
            var restored = fresh.Model.RestoreTextGeneration(loaded);
            var step = Assert.IsType<JambaTextGenerationTransformer>(((TransformerChain<ITransformer>)restored).Last());
            Assert.Equal(Path.GetFullPath(fixture.Folder), step.Options.ModelPath);
            Assert.Equal(10, step.Options.MaxTokens);
            Assert.Equal(expected.Select(r => r.GeneratedText), Run(fresh, restored, freshData).Select(r => r.GeneratedText));
            string zip2 = zip + ".2.zip";
            fresh.Model.Save(restored, schema, zip2);
            var again = new MLContext().Model.Load(zip2, out _);
            Assert.Equal(expected.Select(r => r.GeneratedText), Run(fresh, again, freshData).Select(r => r.GeneratedText));
            File.Delete(zip2);
        }
        finally
        {
            File.Delete(zip);
        }
    }

    [Fact]
    public void ScoringStepRoundTrips()
    {
        var ml = new MLContext();
        var rows = new[] { new QaRow { Question = "Call me", Answer = " Ishmael." } };
        var data = ml.Data.LoadFromEnumerable(rows);
        var model = ml.Transforms.Text.ScoreText("Answer", "Question", fixture.Folder).Fit(data);
        var expected = ml.Data.CreateEnumerable<ScoreOutput>(model.Transform(data), false).Single();
        using var stream = new MemoryStream();
        ml.Model.Save(model, data.Schema, stream);
        stream.Position = 0;
        var loaded = new MLContext().Model.Load(stream, out _);
        var actual = ml.Data.CreateEnumerable<ScoreOutput>(loaded.Transform(data), false).Single();
        Assert.Equal(expected.LogLikelihood, actual.LogLikelihood, 9);
        Assert.Equal(expected.TargetTokens, actual.TargetTokens);
    }

    [Fact]
    public void LoadingFailsClearlyWhenTheModelIsGone()
    {
        string folder = TextModelFixture.Create(32, 48, 4, seed: 3);
        string zip = Path.Combine(Path.GetTempPath(), $"jamba-mlnet-{Guid.NewGuid():N}.zip");
        try
        {
            var ml = new MLContext();
            var data = Data(ml, ["hello"]);
            var options = Options(maxTokens: 2);
            options.ModelPath = folder;
            ml.Model.Save(ml.Transforms.Text.GenerateText(options).Fit(data), data.Schema, zip);
            JambaPipelineModels.ReleaseAll();
            Directory.Delete(folder, recursive: true);

            var fresh = new MLContext();
            var loaded = fresh.Model.Load(zip, out _);
            var e = Assert.Throws<FileNotFoundException>(() => fresh.Model.RestoreTextGeneration(loaded));
            Assert.Contains(folder, e.Message);
            Assert.Contains("not found", e.Message);
            // Used as loaded, the first row fails with the same error.
            var e2 = Assert.ThrowsAny<Exception>(() => Run(fresh, loaded, Data(fresh, ["hello"])));
            Assert.Contains(folder, Flatten(e2));

            var fit = Assert.Throws<FileNotFoundException>(() => ml.Transforms.Text.GenerateText(options).Fit(data));
            Assert.Contains(folder, fit.Message);
        }
        finally
        {
            File.Delete(zip);
            if (Directory.Exists(folder)) Directory.Delete(folder, true);
        }
    }

    [Fact]
    public void ACheckpointWithoutTokenizerIsRejectedAtFit()
    {
        string fixtureModel = Path.Combine(RepositoryPaths.SharedFixtures, "models", "jamba-tiny-a");
        if (!Directory.Exists(fixtureModel)) return; // the shared fixtures are optional
        var ml = new MLContext();
        var options = Options();
        options.ModelPath = fixtureModel;
        var e = Assert.Throws<InvalidOperationException>(() => ml.Transforms.Text.GenerateText(options).Fit(Data(ml, ["x"])));
        Assert.Contains("tokenizer", e.Message);
    }

    private static string Flatten(Exception e) => e.InnerException is null ? e.Message : e.Message + " | " + Flatten(e.InnerException);
}

[Collection(TextModelCollection.Name)]
public sealed class CursorLifetimeTests(TextModelFixture fixture)
{
    [Fact]
    public async Task AbandonedCursorCancelsItsPendingRows()
    {
        var ml = new MLContext();
        var data = ml.Data.LoadFromEnumerable(Enumerable.Range(0, 24).Select(i => new PromptRow { Prompt = $"row {i}" }).ToList());
        var options = new JambaTextGenerationOptions { ModelPath = fixture.Folder, DType = ComputeDType.Float32, InputColumnName = "Prompt", MaxTokens = 200, BatchSize = 8 };
        options.StopSequences.Clear();
        var model = ml.Transforms.Text.GenerateText(options).Fit(data);
        using var handle = await JambaModelHandle.LoadAsync(fixture.Folder, new ModelLoadOptions { Model = new ModelOptions { DType = ComputeDType.Float32 } });
        var before = handle.Engine.Metrics;

        var first = ml.Data.CreateEnumerable<GenerationOutput>(ml.Data.TakeRows(model.Transform(data), 2), false).ToList();
        Assert.Equal(2, first.Count);

        // The other rows of the window were cancelled, not run to the end; the engine goes idle.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!handle.Engine.Metrics.Idle && DateTime.UtcNow < deadline) await Task.Delay(20);
        var after = handle.Engine.Metrics;
        Assert.True(after.Idle);
        Assert.True(after.RequestsSubmitted - before.RequestsSubmitted <= 9, $"{after.RequestsSubmitted - before.RequestsSubmitted} submitted");
        Assert.True(after.RequestsCancelled > before.RequestsCancelled || after.RequestsCompleted - before.RequestsCompleted == after.RequestsSubmitted - before.RequestsSubmitted);
    }
}
