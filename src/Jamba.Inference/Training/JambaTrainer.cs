using Jamba.Inference.Kernels;
using System.Diagnostics;
using System.Text.Json;
using Jamba.Inference.Checkpoint;
using Jamba.Inference.Config;
using Jamba.Inference.Modeling;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Jamba.Inference.Training;

/// <summary>What and how to train.</summary>
public sealed class TrainingOptions
{
    /// <summary>Architecture of a new model (ignored when resuming from <see cref="OutputFolder"/>).</summary>
    public JambaConfig? Config { get; set; }
    /// <summary>Training token ids (e.g. the tokenized corpus).</summary>
    public IReadOnlyList<int> TrainTokens { get; set; } = [];
    /// <summary>Validation token ids.</summary>
    public IReadOnlyList<int> ValidationTokens { get; set; } = [];
    /// <summary>Per training token: whether predicting it counts in the loss (null: every token; e.g. only the assistant
    /// turns of rendered conversations, see <c>Chat.ChatCorpus</c>).</summary>
    public IReadOnlyList<bool>? TrainLossMask { get; set; }
    /// <summary>Per validation token: whether it counts in the validation loss (null: every token).</summary>
    public IReadOnlyList<bool>? ValidationLossMask { get; set; }
    /// <summary>With <see cref="TrainLossMask"/>: the weight in the training loss of the tokens the mask leaves out (0: they do
    /// not count; e.g. 0.1 to learn the prompts' text too, at a tenth of the weight of the assistant turns). The validation loss
    /// always counts the masked tokens only.</summary>
    public double PromptLossWeight { get; set; }
    /// <summary>Where training windows may start (e.g. the conversations' starts; null: anywhere).</summary>
    public IReadOnlyList<int>? TrainStarts { get; set; }
    /// <summary>Where checkpoints (HF layout) and the trainer state go; an existing state there is resumed.</summary>
    public string OutputFolder { get; set; } = "";
    /// <summary>Optimizer steps (default 1000).</summary>
    public int Steps { get; set; } = 1000;
    /// <summary>Sequences per step (default 16).</summary>
    public int BatchSize { get; set; } = 16;
    /// <summary>Tokens per sequence (default 256).</summary>
    public int SequenceLength { get; set; } = 256;
    /// <summary>Peak learning rate (default 1e-3).</summary>
    public double LearningRate { get; set; } = 1e-3;
    /// <summary>Final learning rate as a fraction of the peak (default 0.1).</summary>
    public double MinLearningRateFraction { get; set; } = 0.1;
    /// <summary>Linear warm-up steps before the cosine decay (default 50).</summary>
    public int WarmupSteps { get; set; } = 50;
    /// <summary>AdamW weight decay (default 0.1).</summary>
    public double WeightDecay { get; set; } = 0.1;
    /// <summary>Gradient clipping by global norm (default 1).</summary>
    public double GradientClip { get; set; } = 1.0;
    /// <summary>Where the model trains: <c>cpu</c> (default), <c>cuda</c> or <c>cuda:N</c> (needs a TorchSharp CUDA backend).
    /// Batches move there per step; checkpoints are written from host copies.</summary>
    public string Device { get; set; } = "cpu";
    /// <summary>Compute dtype (Float32 or BFloat16; default Float32).</summary>
    public ComputeDType DType { get; set; } = ComputeDType.Float32;
    /// <summary>Storage dtype of written checkpoints (default bf16).</summary>
    public ScalarType SaveDType { get; set; } = ScalarType.BFloat16;
    /// <summary>Validate every this many steps (default 100).</summary>
    public int EvalEvery { get; set; } = 100;
    /// <summary>Validation batches per evaluation (default 8).</summary>
    public int EvalBatches { get; set; } = 8;
    /// <summary>Write a resumable checkpoint every this many steps (default 200).</summary>
    public int SaveEvery { get; set; } = 200;
    /// <summary>Seed of initialisation and batch sampling (default 1234).</summary>
    public long Seed { get; set; } = 1234;
    /// <summary>Intra-op threads (null leaves TorchSharp's default).</summary>
    public int? Threads { get; set; }

    /// <summary>Checks every option.</summary>
    /// <exception cref="ArgumentException">Names the option and the allowed range.</exception>
    public void Validate()
    {
        static void Check(bool ok, string name, string range, object? v)
        {
            if (!ok) throw new ArgumentException($"{name} must be {range}; found {v}.", name);
        }
        Check(!string.IsNullOrWhiteSpace(OutputFolder), nameof(OutputFolder), "a folder path", OutputFolder);
        _ = new ModelOptions { Device = Device }; // ModelOptions validates the device string (ArgumentException naming Device)
        Check(PromptLossWeight is >= 0 and <= 1, nameof(PromptLossWeight), "between 0 and 1", PromptLossWeight);
        Check(Steps >= 1, nameof(Steps), "positive", Steps);
        Check(BatchSize >= 1, nameof(BatchSize), "positive", BatchSize);
        Check(SequenceLength >= 2, nameof(SequenceLength), "at least 2", SequenceLength);
        Check(TrainTokens.Count > SequenceLength + 1, nameof(TrainTokens), $"longer than SequenceLength + 1 ({SequenceLength + 1})", TrainTokens.Count);
        Check(ValidationTokens.Count == 0 || ValidationTokens.Count > SequenceLength + 1, nameof(ValidationTokens), "empty or longer than SequenceLength + 1", ValidationTokens.Count);
        Check(TrainLossMask is null || TrainLossMask.Count == TrainTokens.Count, nameof(TrainLossMask), "null or as long as TrainTokens", TrainLossMask?.Count);
        Check(ValidationLossMask is null || ValidationLossMask.Count == ValidationTokens.Count, nameof(ValidationLossMask), "null or as long as ValidationTokens", ValidationLossMask?.Count);
        Check(TrainStarts is null || TrainStarts.Count > 0 && TrainStarts.All(s => s >= 0 && s < TrainTokens.Count), nameof(TrainStarts), "null or non-empty offsets into TrainTokens", TrainStarts?.Count);
        Check(LearningRate > 0 && double.IsFinite(LearningRate), nameof(LearningRate), "positive", LearningRate);
        Check(MinLearningRateFraction is >= 0 and <= 1, nameof(MinLearningRateFraction), "in [0, 1]", MinLearningRateFraction);
        Check(WarmupSteps >= 0, nameof(WarmupSteps), "non-negative", WarmupSteps);
        Check(WeightDecay >= 0, nameof(WeightDecay), "non-negative", WeightDecay);
        Check(GradientClip > 0, nameof(GradientClip), "positive", GradientClip);
        Check(DType is ComputeDType.Float32 or ComputeDType.BFloat16, nameof(DType), "Float32 or BFloat16", DType);
        Check(EvalEvery >= 1 && EvalBatches >= 1 && SaveEvery >= 1, nameof(EvalEvery), "positive (with EvalBatches and SaveEvery)", EvalEvery);
    }
}

/// <summary>Progress of training.</summary>
/// <param name="Step">Steps done.</param>
/// <param name="TotalSteps">Steps to do.</param>
/// <param name="TrainLoss">Cross-entropy of the last step (nats/token).</param>
/// <param name="ValidationLoss">Latest validation cross-entropy, if any.</param>
/// <param name="LearningRate">Learning rate of the last step.</param>
/// <param name="TokensPerSecond">Training throughput so far.</param>
public readonly record struct TrainingProgress(int Step, int TotalSteps, double TrainLoss, double? ValidationLoss, double LearningRate, double TokensPerSecond);

/// <summary>The outcome of a training run.</summary>
/// <param name="Steps">Steps done in total (including resumed ones).</param>
/// <param name="FinalTrainLoss">Mean train loss over the last evaluation interval.</param>
/// <param name="FinalValidationLoss">Validation loss at the end (NaN without validation data).</param>
/// <param name="Seconds">Wall time of this run.</param>
/// <param name="History">(step, train loss, validation loss) at every evaluation.</param>
public sealed record TrainingResult(int Steps, double FinalTrainLoss, double FinalValidationLoss, double Seconds, IReadOnlyList<(int Step, double Train, double Validation)> History);

/// <summary>
/// Trains a Jamba language model with the inference modules themselves (one implementation; the selective
/// scan runs its differentiable tensor form): next-token cross-entropy plus HF's MoE load-balancing loss,
/// AdamW, linear warm-up then cosine decay, gradient clipping by global norm, periodic validation, and
/// resumable checkpoints written in Hugging Face layout.
/// </summary>
public static class JambaTrainer
{
    private const string StateFile = "trainer_state.json";
    private const string OptimizerFile = "optimizer.bin";

    /// <summary>The learning rate at <paramref name="step"/> (0-based): linear warm-up, then cosine to the floor.</summary>
    public static double LearningRateAt(TrainingOptions o, int step)
    {
        if (o.WarmupSteps > 0 && step < o.WarmupSteps) return o.LearningRate * (step + 1) / o.WarmupSteps;
        double progress = o.Steps <= o.WarmupSteps ? 1 : (double)(step - o.WarmupSteps) / Math.Max(1, o.Steps - o.WarmupSteps);
        double floor = o.LearningRate * o.MinLearningRateFraction;
        return floor + (o.LearningRate - floor) * 0.5 * (1 + Math.Cos(Math.PI * Math.Min(1, progress)));
    }

    /// <summary>Trains (or resumes) and writes the final checkpoint to <see cref="TrainingOptions.OutputFolder"/>.</summary>
    public static Task<TrainingResult> TrainAsync(TrainingOptions options, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        // Tensors and dispose scopes stay on one dedicated thread for the whole run.
        var tcs = new TaskCompletionSource<TrainingResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try { tcs.SetResult(Train(options, progress, cancellationToken)); }
            catch (OperationCanceledException oce) { tcs.SetCanceled(oce.CancellationToken); }
            catch (Exception ex) { tcs.SetException(ex); }
        }) { IsBackground = true, Name = "jamba-train" };
        thread.Start();
        return tcs.Task;
    }

    private static TrainingResult Train(TrainingOptions o, IProgress<TrainingProgress>? progress, CancellationToken ct)
    {
        if (o.Threads is { } threads) torch.set_num_threads(threads);
        var clock = Stopwatch.StartNew();
        string statePath = Path.Combine(o.OutputFolder, StateFile);
        bool resume = File.Exists(statePath);
        var history = new List<(int, double, double)>();
        int startStep = 0;
        var modelOptions = new ModelOptions { DType = o.DType, Trainable = true, Device = o.Device };
        JambaForCausalLM model;
        if (resume)
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(statePath));
            startStep = doc.RootElement.GetProperty("step").GetInt32();
            foreach (var h in doc.RootElement.GetProperty("history").EnumerateArray())
                history.Add((h[0].GetInt32(), h[1].GetDouble(), h[2].GetDouble()));
            model = JambaForCausalLM.FromPretrained(Path.Combine(o.OutputFolder, "resume"), modelOptions);
        }
        else
        {
            var config = o.Config ?? throw new ArgumentException("TrainingOptions.Config is required for a new run.", nameof(o));
            model = new JambaForCausalLM(config, modelOptions);
            JambaInitializer.Initialize(model, o.Seed);
        }
        using (model)
        {
            model.train();
            var decay = model.named_parameters().Where(p => p.parameter.dim() >= 2).Select(p => p.parameter).ToList();
            var noDecay = model.named_parameters().Where(p => p.parameter.dim() < 2).Select(p => p.parameter).ToList();
            using var optimizer = torch.optim.AdamW(
                [new AdamW.ParamGroup(decay, new AdamW.Options { weight_decay = o.WeightDecay }), new AdamW.ParamGroup(noDecay, new AdamW.Options { weight_decay = 0 })],
                lr: o.LearningRate, beta1: 0.9, beta2: 0.95, eps: 1e-8);
            if (resume) optimizer.load_state_dict(Path.Combine(o.OutputFolder, OptimizerFile));
            var moeBlocks = model.model.layers.Select(l => l.feed_forward).OfType<JambaSparseMoeBlock>().ToList();
            var train = o.TrainTokens.Select(t => (long)t).ToArray();
            var val = o.ValidationTokens.Select(t => (long)t).ToArray();
            var trainMask = o.TrainLossMask?.ToArray();
            var valMask = o.ValidationLossMask?.ToArray();
            var starts = o.TrainStarts?.ToArray();
            var rng = new Random(unchecked((int)o.Seed) + startStep);
            double recentSum = 0;
            int recentCount = 0;
            double lastVal = history.Count > 0 ? history[^1].Item3 : double.NaN;
            long tokensSeen = 0;
            for (int step = startStep; step < o.Steps; step++)
            {
                ct.ThrowIfCancellationRequested();
                double lr = LearningRateAt(o, step);
                foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
                double loss;
                using (var scope = NewDisposeScope())
                {
                    var (batch, batchMask) = Batch(train, trainMask, starts, o.BatchSize, o.SequenceLength, rng);
                    var auxTerms = new List<Tensor>();
                    foreach (var moe in moeBlocks) moe.AuxLossSink = (probs, selected) => auxTerms.Add(LoadBalancingLoss(probs, selected, model.Config.NumExperts).DetachFromDisposeScope());
                    Tensor lossTensor;
                    try
                    {
                        lossTensor = LanguageModelLoss(model, batch, batchMask, o.PromptLossWeight);
                    }
                    finally
                    {
                        foreach (var moe in moeBlocks) moe.AuxLossSink = null;
                    }
                    var total = auxTerms.Count > 0 ? lossTensor.Plus(torch.stack(auxTerms).mean().Times(model.Config.RouterAuxLossCoef)) : lossTensor;
                    optimizer.zero_grad();
                    total.backward();
                    torch.nn.utils.clip_grad_norm_(model.parameters(), o.GradientClip);
                    StepWithoutCollection(optimizer);
                    loss = lossTensor.item<float>();
                    foreach (var t in auxTerms) t.Dispose(); // created inside the MoE blocks' scopes, detached to reach here
                }
                tokensSeen += (long)o.BatchSize * o.SequenceLength;
                recentSum += loss;
                recentCount++;
                int done = step + 1;
                if (val.Length > 0 && (done % o.EvalEvery == 0 || done == o.Steps))
                {
                    lastVal = Evaluate(model, val, valMask, o);
                    history.Add((done, recentSum / recentCount, lastVal));
                    recentSum = 0;
                    recentCount = 0;
                }
                progress?.Report(new TrainingProgress(done, o.Steps, loss, double.IsNaN(lastVal) ? null : lastVal, lr, tokensSeen / clock.Elapsed.TotalSeconds));
                if (done % o.SaveEvery == 0 && done < o.Steps) SaveState(model, optimizer, o, done, history);
            }
            double finalTrain = recentCount > 0 ? recentSum / recentCount : history.Count > 0 ? history[^1].Item2 : double.NaN;
            if (val.Length > 0 && (history.Count == 0 || history[^1].Item1 != o.Steps))
            {
                lastVal = Evaluate(model, val, valMask, o);
                history.Add((o.Steps, finalTrain, lastVal));
            }
            SaveState(model, optimizer, o, o.Steps, history);
            model.eval();
            CheckpointWriter.Save(model, o.OutputFolder, o.SaveDType);
            return new TrainingResult(o.Steps, history.Count > 0 ? history[^1].Item2 : finalTrain, lastVal, clock.Elapsed.TotalSeconds, history);
        }
    }

    /// <summary>Mean next-token cross-entropy of <paramref name="batch"/> (<c>[B, L+1]</c>).</summary>
    internal static Tensor LanguageModelLoss(JambaForCausalLM model, Tensor batch, Tensor? mask = null, double unmaskedWeight = 0)
    {
        long l = batch.shape[1] - 1;
        if (batch.device != model.Device) batch = batch.to(model.Device);
        if (mask is not null && mask.device != model.Device) mask = mask.to(model.Device);
        var input = batch.narrow(1, 0, l);
        var target = batch.narrow(1, 1, l);
        var logits = model.Forward(input, null, null, LogitPositions.All);
        if (mask is null) return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), target.reshape(-1));
        // Only the masked targets count: the mean cross-entropy over them.
        var perToken = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), target.reshape(-1), reduction: nn.Reduction.None);
        var weights = mask.narrow(1, 1, l).reshape(-1).to(perToken.dtype);
        if (unmaskedWeight > 0)
        {
            using var keep = (1 - unmaskedWeight).ToScalar();
            using var w = torch.tensor(new[] { (float)unmaskedWeight }).to(perToken.dtype, perToken.device);
            weights = weights.mul(keep).add_(w, TorchScalars.One); // 1 where masked in, unmaskedWeight elsewhere
        }
        using var one = 1.ToScalar();
        return perToken.mul(weights).sum().div(weights.sum().clamp_min(one));
    }

    /// <summary>
    /// Runs the optimizer step with garbage collection paused: TorchSharp's <c>AdamW.step</c> converts numbers to Scalars
    /// that it does not keep reachable during the native call (see <see cref="TorchScalars"/>), so a collection on another
    /// thread could free one mid-call. With no collection during the step, none can be finalized.
    /// </summary>
    private static void StepWithoutCollection(optim.Optimizer optimizer)
    {
        bool paused = false;
        try { paused = GC.TryStartNoGCRegion(64L << 20); } catch (InvalidOperationException) { } // already paused
        try
        {
            optimizer.step();
        }
        finally
        {
            if (paused && System.Runtime.GCSettings.LatencyMode == System.Runtime.GCLatencyMode.NoGCRegion) GC.EndNoGCRegion();
        }
    }

    /// <summary>HF's <c>load_balancing_loss_func</c> for one layer: <c>E · Σ_e f_e · P_e</c> (fraction of routed tokens × mean probability).</summary>
    private static Tensor LoadBalancingLoss(Tensor probs, Tensor selected, int experts)
    {
        var mask = nn.functional.one_hot(selected, experts).to(ScalarType.Float32); // [T, k, E]
        var tokensPerExpert = mask.mean([0]);                                          // [k, E]
        var probPerExpert = probs.mean([0]);                                           // [E]
        return (tokensPerExpert * probPerExpert.unsqueeze(0)).sum().Times(experts);
    }

    private static (Tensor Batch, Tensor? Mask) Batch(long[] tokens, bool[]? mask, int[]? starts, int batch, int length, Random rng)
    {
        var data = new long[batch * (length + 1)];
        var m = mask is null ? null : new bool[batch * (length + 1)];
        for (int b = 0; b < batch; b++)
        {
            int at = starts is null ? rng.Next(0, tokens.Length - length - 1) : Math.Min(starts[rng.Next(starts.Length)], tokens.Length - length - 1);
            Array.Copy(tokens, at, data, b * (length + 1), length + 1);
            if (m is not null) Array.Copy(mask!, at, m, b * (length + 1), length + 1);
        }
        return (torch.tensor(data, [batch, length + 1], dtype: ScalarType.Int64), m is null ? null : torch.tensor(m, [batch, length + 1]));
    }

    /// <summary>Validation cross-entropy over evenly spaced windows (deterministic).</summary>
    private static double Evaluate(JambaForCausalLM model, long[] val, bool[]? valMask, TrainingOptions o)
    {
        using var noGrad = torch.no_grad();
        model.eval();
        double sum = 0;
        int windows = Math.Min(o.EvalBatches * o.BatchSize, Math.Max(1, (val.Length - 1) / o.SequenceLength));
        int stride = Math.Max(1, (val.Length - o.SequenceLength - 1) / windows);
        int done = 0;
        for (int start = 0; done < windows; done += o.BatchSize)
        {
            using var scope = NewDisposeScope();
            int n = Math.Min(o.BatchSize, windows - done);
            var data = new long[n * (o.SequenceLength + 1)];
            var m = valMask is null ? null : new bool[n * (o.SequenceLength + 1)];
            for (int b = 0; b < n; b++, start += stride)
            {
                int at = Math.Min(start, val.Length - o.SequenceLength - 1);
                Array.Copy(val, at, data, b * (o.SequenceLength + 1), o.SequenceLength + 1);
                if (m is not null) Array.Copy(valMask!, at, m, b * (o.SequenceLength + 1), o.SequenceLength + 1);
            }
            var mt = m is null ? null : torch.tensor(m, [n, o.SequenceLength + 1]);
            sum += LanguageModelLoss(model, torch.tensor(data, [n, o.SequenceLength + 1], dtype: ScalarType.Int64), mt).item<float>() * n;
        }
        model.train();
        return sum / windows;
    }

    private static void SaveState(JambaForCausalLM model, AdamW optimizer, TrainingOptions o, int step, List<(int, double, double)> history)
    {
        Directory.CreateDirectory(o.OutputFolder);
        // Full-precision weights for resuming; the published checkpoint is written at the end in SaveDType.
        CheckpointWriter.Save(model, Path.Combine(o.OutputFolder, "resume"), ScalarType.Float32);
        optimizer.save_state_dict(Path.Combine(o.OutputFolder, OptimizerFile));
        File.WriteAllText(Path.Combine(o.OutputFolder, StateFile), JsonSerializer.Serialize(new
        {
            step,
            total_steps = o.Steps,
            history = history.Select(h => new[] { h.Item1, h.Item2, h.Item3 }),
        }));
    }
}
