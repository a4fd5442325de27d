using System.ComponentModel;
using System.Text.Json;
using System.Text.Json.Nodes;
using Jamba.Cli.Infrastructure;
using Jamba.Inference.Chat;
using Jamba.Inference.Config;
using Jamba.Inference.Modeling;
using Jamba.Inference.Tokenization;
using Jamba.Inference.Training;
using Spectre.Console;
using Spectre.Console.Cli;
using TorchSharp;

namespace Jamba.Cli.Commands;

internal sealed class TrainSettings : CommandSettings
{
    [CommandOption("--corpus <FILE>")]
    [Description("Plain-text training corpus (paragraphs separated by blank lines).")]
    public string? Corpus { get; set; }

    [CommandOption("--tokenizer <PATH>")]
    [Description("tokenizer.model (SentencePiece) or tokenizer.json, or a folder holding one.")]
    public string? Tokenizer { get; set; }

    [CommandOption("--config <FILE>")]
    [Description("config.json of the model to train (ignored when --out holds a run to resume).")]
    public string? Config { get; set; }

    [CommandOption("-o|--out <DIR>")]
    [Description("Output checkpoint folder (Hugging Face layout). A trainer_state.json there is resumed.")]
    public string? Out { get; set; }

    [CommandOption("--chat-template <FILE>")]
    [Description("A chat template (Jinja) to ship with the checkpoint as chat_template.jinja.")]
    public string? ChatTemplate { get; set; }

    [CommandOption("--synthetic-chat <N>")]
    [Description("Train on N synthetic conversations (SyntheticChat, seeded by --seed) rendered through --chat-template instead of --corpus; the loss is on the assistant turns only.")]
    public int? SyntheticChat { get; set; }

    [CommandOption("--prose <FILE>")]
    [Description("With --synthetic-chat: a plain-text corpus whose paragraphs serve as document texts besides the made-up ones.")]
    public string? Prose { get; set; }

    [CommandOption("--write-text <FILE>")]
    [Description("With --synthetic-chat: write the rendered conversations (training and validation sets, one after the other, as the chat template renders them) to FILE and stop, e.g. to train a tokenizer on them.")]
    public string? WriteText { get; set; }

    [CommandOption("--copy-drills <X>")]
    [Description("With --synthetic-chat: the share (0 to 1) of short copy drills among the conversations (default 0).")]
    public double CopyDrills { get; set; }

    [CommandOption("--prompt-loss-weight <X>")]
    [Description("With --synthetic-chat: weight in the loss of the tokens outside the assistant turns (default 0: only the assistant turns are trained on).")]
    public double PromptLossWeight { get; set; }

    [CommandOption("--chat-eval <N>")]
    [Description("With --synthetic-chat: after training, answer N held-out conversations greedily and report the success per family.")]
    public int ChatEval { get; set; }

    [CommandOption("--steps <N>")] [DefaultValue(400)] [Description("Optimizer steps.")] public int Steps { get; set; }
    [CommandOption("--batch-size <N>")] [DefaultValue(32)] [Description("Sequences per step.")] public int BatchSize { get; set; }
    [CommandOption("--seq-len <N>")] [DefaultValue(128)] [Description("Tokens per sequence.")] public int SequenceLength { get; set; }
    [CommandOption("--lr <X>")] [DefaultValue(2e-3)] [Description("Peak learning rate.")] public double LearningRate { get; set; }
    [CommandOption("--min-lr-fraction <X>")] [DefaultValue(0.1)] [Description("Final learning rate as a fraction of the peak.")] public double MinLrFraction { get; set; }
    [CommandOption("--warmup <N>")] [DefaultValue(30)] [Description("Linear warm-up steps.")] public int Warmup { get; set; }
    [CommandOption("--weight-decay <X>")] [DefaultValue(0.1)] [Description("AdamW weight decay.")] public double WeightDecay { get; set; }
    [CommandOption("--clip <X>")] [DefaultValue(1.0)] [Description("Gradient clipping (global norm).")] public double Clip { get; set; }
    [CommandOption("--dtype <DTYPE>")] [DefaultValue("f32")] [Description("Compute dtype: f32 or bf16.")] public string DType { get; set; } = "f32";
    [CommandOption("--save-dtype <DTYPE>")] [DefaultValue("bf16")] [Description("Storage dtype of the checkpoint: bf16 or f32.")] public string SaveDType { get; set; } = "bf16";
    [CommandOption("--eval-every <N>")] [DefaultValue(25)] [Description("Validate every N steps.")] public int EvalEvery { get; set; }
    [CommandOption("--eval-batches <N>")] [DefaultValue(4)] [Description("Validation batches per evaluation.")] public int EvalBatches { get; set; }
    [CommandOption("--save-every <N>")] [DefaultValue(50)] [Description("Write a resumable state every N steps.")] public int SaveEvery { get; set; }
    [CommandOption("--validation-fraction <X>")] [DefaultValue(0.05)] [Description("Tail of the corpus held out for validation.")] public double ValidationFraction { get; set; }
    [CommandOption("--seed <N>")] [DefaultValue(1234L)] [Description("Seed of initialisation and batch sampling.")] public long Seed { get; set; }
    [CommandOption("--device <DEVICE>")] [DefaultValue("cpu")] [Description("Where to train: cpu, cuda or cuda:N (a CUDA build of TorchSharp).")] public string Device { get; set; } = "cpu";
    [CommandOption("--threads <N>")] [Description("Intra-op CPU threads.")] public int? Threads { get; set; }
    [CommandOption("--json")] [Description("Print the result as one JSON object.")] public bool Json { get; set; }

    public override ValidationResult Validate()
    {
        if (SyntheticChat is null && string.IsNullOrWhiteSpace(Corpus)) return ValidationResult.Error("--corpus FILE (or --synthetic-chat N) is required.");
        if (SyntheticChat is not null && SyntheticChat < 10) return ValidationResult.Error($"--synthetic-chat must be at least 10; found {SyntheticChat}.");
        if (SyntheticChat is not null && string.IsNullOrWhiteSpace(ChatTemplate)) return ValidationResult.Error("--synthetic-chat needs --chat-template FILE (the conversations are rendered through it).");
        if (CopyDrills is < 0 or > 1) return ValidationResult.Error($"--copy-drills must be between 0 and 1; found {CopyDrills}.");
        if (ChatEval < 0) return ValidationResult.Error($"--chat-eval must be non-negative; found {ChatEval}.");
        if (string.IsNullOrWhiteSpace(Tokenizer)) return ValidationResult.Error("--tokenizer PATH is required.");
        if (WriteText is not null && SyntheticChat is null) return ValidationResult.Error("--write-text needs --synthetic-chat N.");
        if (string.IsNullOrWhiteSpace(Out) && WriteText is null) return ValidationResult.Error("--out DIR is required.");
        if (DType is not ("f32" or "bf16")) return ValidationResult.Error($"--dtype must be f32 or bf16; found '{DType}'.");
        if (SaveDType is not ("f32" or "bf16")) return ValidationResult.Error($"--save-dtype must be f32 or bf16; found '{SaveDType}'.");
        if (ValidationFraction is < 0 or >= 1) return ValidationResult.Error($"--validation-fraction must be in [0, 1); found {ValidationFraction}.");
        if (Threads is < 1) return ValidationResult.Error($"--threads must be positive; found {Threads}.");
        return ValidationResult.Success();
    }
}

/// <summary><c>jamba train</c>: trains a small Jamba on a text corpus with the inference modules and writes a Hugging Face checkpoint
/// (weights, config, tokenizer, chat template, generation config) plus the training log.</summary>
internal sealed class TrainCommand(CliIO io) : AsyncCommand<TrainSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, TrainSettings s, CancellationToken cancellationToken)
    {
        if (s.SyntheticChat is null && !File.Exists(s.Corpus)) throw new CliException($"--corpus: '{s.Corpus}' does not exist.");
        string tokenizerPath = Directory.Exists(s.Tokenizer) ? s.Tokenizer! : Path.GetDirectoryName(Path.GetFullPath(s.Tokenizer!))!;
        var tokenizer = File.Exists(s.Tokenizer) && s.Tokenizer!.EndsWith(".model", StringComparison.Ordinal)
            ? JambaTokenizer.FromSentencePiece(await File.ReadAllBytesAsync(s.Tokenizer, cancellationToken).ConfigureAwait(false))
            : File.Exists(s.Tokenizer) ? JambaTokenizer.FromTokenizerJson(await File.ReadAllTextAsync(s.Tokenizer, cancellationToken).ConfigureAwait(false))
            : JambaTokenizer.Load(tokenizerPath);
        string outDir = Path.GetFullPath(s.Out ?? ".");
        bool resuming = s.Out is not null && File.Exists(Path.Combine(outDir, "trainer_state.json"));
        JambaConfig? config = resuming || s.WriteText is not null ? null : JambaConfig.Load(s.Config ?? throw new UsageException("--config FILE is required for a new run."));
        if (config is not null && config.VocabSize < tokenizer.VocabSize)
            throw new CliException($"config vocab_size {config.VocabSize} is smaller than the tokenizer's {tokenizer.VocabSize} tokens.");

        int[] train, validation;
        bool[]? trainMask = null, validationMask = null;
        int[]? starts = null;
        if (s.SyntheticChat is { } count)
        {
            if (!File.Exists(s.ChatTemplate)) throw new CliException($"--chat-template: '{s.ChatTemplate}' does not exist.");
            var setup = ChatSetup.Create(Inference.Templates.ChatTemplate.Parse(await File.ReadAllTextAsync(s.ChatTemplate!, cancellationToken).ConfigureAwait(false)), tokenizer);
            var prose = s.Prose is null ? null : SyntheticChat.ProseParagraphs(await File.ReadAllTextAsync(s.Prose, cancellationToken).ConfigureAwait(false));
            int heldOut = Math.Max(10, (int)Math.Round(count * s.ValidationFraction));
            var trainConversations = new SyntheticChat(unchecked((int)s.Seed), prose).Generate(count, s.CopyDrills);
            var valConversations = new SyntheticChat(unchecked((int)s.Seed) + 1, prose).Generate(heldOut, s.CopyDrills);
            if (s.WriteText is not null)
            {
                var formatter = setup.CreateFormatter();
                int written = 0;
                await using (var writer = new StreamWriter(s.WriteText, append: false, new System.Text.UTF8Encoding(false)))
                {
                    foreach (var c in trainConversations.Concat(valConversations))
                    {
                        if (ChatCorpus.RenderText(formatter, c) is not var (text, _)) continue;
                        await writer.WriteAsync(text.AsMemory(), cancellationToken).ConfigureAwait(false);
                        await writer.WriteAsync("\n\n".AsMemory(), cancellationToken).ConfigureAwait(false);
                        written++;
                    }
                }
                io.Error.WriteLine($"wrote {written} rendered conversations to {s.WriteText}");
                return ExitCodes.Success;
            }
            var trainSet = ChatCorpus.Encode(setup, trainConversations);
            var valSet = ChatCorpus.Encode(setup, valConversations);
            (train, trainMask, starts, validation, validationMask) = (trainSet.Tokens, trainSet.LossMask, trainSet.Starts, valSet.Tokens, valSet.LossMask);
            io.Error.WriteLine($"synthetic chat: {count} training conversations ({train.Length} tokens, {trainMask.Count(m => m)} in assistant turns; {trainSet.Skipped} skipped), {heldOut} validation ({validation.Length} tokens); {(resuming ? "resuming" : "new run")} in {outDir}");
        }
        else
        {
            var text = await File.ReadAllTextAsync(s.Corpus!, cancellationToken).ConfigureAwait(false);
            (train, validation) = CorpusData.Split(text, tokenizer, s.ValidationFraction);
            io.Error.WriteLine($"corpus: {train.Length} training and {validation.Length} validation tokens; {(resuming ? "resuming" : "new run")} in {outDir}");
        }
        var options = new TrainingOptions
        {
            Config = config, TrainTokens = train, ValidationTokens = validation, OutputFolder = outDir,
            TrainLossMask = trainMask, ValidationLossMask = validationMask, TrainStarts = starts, PromptLossWeight = s.PromptLossWeight, Device = s.Device,
            Steps = s.Steps, BatchSize = s.BatchSize, SequenceLength = s.SequenceLength, LearningRate = s.LearningRate,
            MinLearningRateFraction = s.MinLrFraction, WarmupSteps = s.Warmup, WeightDecay = s.WeightDecay, GradientClip = s.Clip,
            DType = s.DType == "bf16" ? ComputeDType.BFloat16 : ComputeDType.Float32,
            SaveDType = s.SaveDType == "bf16" ? torch.ScalarType.BFloat16 : torch.ScalarType.Float32,
            EvalEvery = s.EvalEvery, EvalBatches = s.EvalBatches, SaveEvery = s.SaveEvery, Seed = s.Seed, Threads = s.Threads,
        };
        try { options.Validate(); }
        catch (ArgumentException ex) { throw new UsageException(ex.Message); }

        TrainingResult result;
        if (io.Interactive && !s.Json)
        {
            result = await io.Console.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .StartAsync(async ctx =>
                {
                    var task = ctx.AddTask("training", maxValue: s.Steps);
                    var progress = new Progress<TrainingProgress>(p =>
                    {
                        task.Value = p.Step;
                        task.Description = $"step {p.Step}/{p.TotalSteps} loss {p.TrainLoss:0.000} val {(p.ValidationLoss is { } v ? v.ToString("0.000") : "–")} {p.TokensPerSecond:0} tok/s";
                    });
                    return await JambaTrainer.TrainAsync(options, progress, cancellationToken).ConfigureAwait(false);
                }).ConfigureAwait(false);
        }
        else
        {
            var progress = new Progress<TrainingProgress>(p =>
            {
                if (p.Step % Math.Max(1, s.EvalEvery) == 0 || p.Step == p.TotalSteps)
                    io.Error.WriteLine($"step {p.Step}/{p.TotalSteps} loss {p.TrainLoss:0.000} val {(p.ValidationLoss is { } v ? v.ToString("0.000") : "-")} lr {p.LearningRate:0.00e0} {p.TokensPerSecond:0} tok/s");
            });
            result = await JambaTrainer.TrainAsync(options, progress, cancellationToken).ConfigureAwait(false);
        }

        WriteTokenizerFiles(outDir, tokenizerPath, s.Tokenizer!, tokenizer, s.ChatTemplate);
        var log = new JsonObject
        {
            ["steps"] = result.Steps,
            ["final_train_loss"] = result.FinalTrainLoss,
            ["final_validation_loss"] = result.FinalValidationLoss,
            ["seconds"] = result.Seconds,
            ["train_tokens"] = train.Length,
            ["validation_tokens"] = validation.Length,
            ["history"] = new JsonArray(result.History.Select(h => (JsonNode)new JsonObject { ["step"] = h.Step, ["train_loss"] = h.Train, ["validation_loss"] = h.Validation }).ToArray()),
        };
        if (s.SyntheticChat is not null && s.ChatEval > 0)
        {
            var prose = s.Prose is null ? null : SyntheticChat.ProseParagraphs(await File.ReadAllTextAsync(s.Prose, cancellationToken).ConfigureAwait(false));
            var heldOut = new SyntheticChat(unchecked((int)s.Seed) + 2, prose).Generate(s.ChatEval);
            using var client = await JambaChatClient.LoadAsync(outDir, cancellationToken: cancellationToken).ConfigureAwait(false);
            var rows = await ChatEvaluation.RunAsync(client, heldOut, cancellationToken: cancellationToken).ConfigureAwait(false);
            var evalNode = new JsonObject();
            foreach (var r in rows)
            {
                io.Error.WriteLine($"greedy {r.Family}: {r.Passed}/{r.Total} ({r.Rate:P0}){(r.Example is null ? "" : "  e.g. " + r.Example.Replace("\n", " ", StringComparison.Ordinal))}");
                evalNode[r.Family] = new JsonObject { ["passed"] = r.Passed, ["total"] = r.Total };
            }
            log["greedy_held_out"] = evalNode;
        }
        await File.WriteAllTextAsync(Path.Combine(outDir, "training_log.json"), log.ToJsonString(new JsonSerializerOptions { WriteIndented = true }), cancellationToken).ConfigureAwait(false);
        if (s.Json) io.Out.WriteLine(log.ToJsonString());
        else io.Out.WriteLine($"Trained {result.Steps} steps in {result.Seconds:0} s: train loss {result.FinalTrainLoss:0.000}, validation loss {result.FinalValidationLoss:0.000}. Wrote {outDir}.");
        return ExitCodes.Success;
    }

    /// <summary>Copies the tokenizer and writes tokenizer_config.json, generation_config.json and the chat template beside the weights.</summary>
    private static void WriteTokenizerFiles(string outDir, string tokenizerFolder, string tokenizerArg, JambaTokenizer tokenizer, string? chatTemplate)
    {
        foreach (var name in new[] { "tokenizer.model", "tokenizer.json" })
        {
            string source = File.Exists(tokenizerArg) && Path.GetFileName(tokenizerArg) == name ? tokenizerArg : Path.Combine(tokenizerFolder, name);
            if (File.Exists(source) && Path.GetFullPath(source) != Path.Combine(outDir, name)) File.Copy(source, Path.Combine(outDir, name), overwrite: true);
        }
        string? Piece(int? id) => id is { } i ? tokenizer.IdToToken(i) : null;
        var added = new JsonObject();
        foreach (var special in tokenizer.SpecialTokens)
            if (tokenizer.TokenToId(special) is { } id)
                added[id.ToString(System.Globalization.CultureInfo.InvariantCulture)] = new JsonObject
                {
                    ["content"] = special, ["lstrip"] = false, ["normalized"] = false, ["rstrip"] = false, ["single_word"] = false,
                    ["special"] = tokenizer.IsSpecialToken(id),
                };
        var config = new JsonObject
        {
            ["add_bos_token"] = true,
            ["add_eos_token"] = false,
            ["added_tokens_decoder"] = added,
            ["bos_token"] = Piece(tokenizer.BosTokenId),
            ["eos_token"] = Piece(tokenizer.EosTokenId),
            ["pad_token"] = Piece(tokenizer.PadTokenId),
            ["unk_token"] = Piece(tokenizer.UnkTokenId),
            ["clean_up_tokenization_spaces"] = false,
            ["legacy"] = true,
            ["model_max_length"] = 262144,
            ["spaces_between_special_tokens"] = false,
            ["tokenizer_class"] = "LlamaTokenizer",
        };
        File.WriteAllText(Path.Combine(outDir, "tokenizer_config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        var generation = new JsonObject
        {
            ["bos_token_id"] = tokenizer.BosTokenId,
            ["eos_token_id"] = tokenizer.EosTokenId,
            ["pad_token_id"] = tokenizer.PadTokenId,
            ["do_sample"] = true,
            ["temperature"] = 0.8,
            ["top_p"] = 0.95,
            ["repetition_penalty"] = 1.1,
        };
        File.WriteAllText(Path.Combine(outDir, "generation_config.json"), generation.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        if (chatTemplate is not null) File.Copy(chatTemplate, Path.Combine(outDir, "chat_template.jinja"), overwrite: true);
    }
}
