using Jamba.Inference.Config;
using Jamba.Inference.Modeling;
using Jamba.Inference.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Jamba.Inference.Tests;

[Trait("Category", "Training")]
public sealed class TrainingTests
{
    [Theory]
    [InlineData(2, 6, 9, 4)]
    [InlineData(2, 384, 70, 16)] // the chat recipe's Mamba layers: d_inner 384, d_state 16
    [InlineData(1, 40, 33, 16)]
    public void FusedScanGradientsEqualTheTensorScanGradients(int batch, int channels, int length, int stateSize)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(3);
        Tensor R(params long[] shape) => torch.randn(shape, generator: gen);
        var x = R(batch, channels, length);
        var delta = nn.functional.softplus(R(batch, channels, length));
        var a = -torch.exp(R(channels, stateSize) * 0.3);
        var b = R(batch, length, stateSize);
        var c = R(batch, length, stateSize);
        var d = R(channels);
        var weights = R(batch, channels, length);
        (Tensor Y, Tensor[] Grads) Run(bool fused)
        {
            var inputs = new[] { x, delta, a, b, c, d }.Select(t => t.clone().requires_grad_(true)).ToArray();
            var state = torch.zeros(batch, channels, stateSize);
            var y = fused ? SelectiveScan.Run(inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], inputs[5], state)
                          : SelectiveScan.RunTensor(inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], inputs[5], state);
            (y * weights).sum().backward();
            return (y.detach(), inputs.Select(i => i.grad!).ToArray());
        }
        var (yTensor, gTensor) = Run(false);
        var (yFused, gFused) = Run(true);
        Assert.True(torch.allclose(yTensor, yFused, rtol: 1e-5, atol: 1e-5));
        string[] names = ["x", "delta", "A", "B", "C", "D"];
        for (int i = 0; i < names.Length; i++)
        {
            double diff = (gTensor[i] - gFused[i]).abs().max().item<float>();
            Assert.True(diff <= 1e-4 * Math.Max(1, gTensor[i].abs().max().item<float>()), $"grad {names[i]} differs by {diff}");
        }
    }

    [Fact]
    public async Task ShortTrainingLowersTheLossAndItsCheckpointReloadsWithEqualLogits()
    {
        string dir = Directory.CreateTempSubdirectory("jamba-train-").FullName;
        try
        {
            var config = JambaConfig.Parse("""
                {"vocab_size":32,"hidden_size":32,"intermediate_size":48,"num_hidden_layers":4,"num_attention_heads":4,"num_key_value_heads":2,
                 "num_experts":4,"num_experts_per_tok":2,"attn_layer_period":2,"attn_layer_offset":1,"expert_layer_period":2,"expert_layer_offset":1,
                 "mamba_d_state":8,"mamba_d_conv":4,"mamba_expand":2,"mamba_dt_rank":4,"tie_word_embeddings":true}
                """);
            // A learnable corpus: a repeating pattern with some noise.
            var rng = new Random(1);
            var tokens = Enumerable.Range(0, 6000).Select(i => rng.NextDouble() < 0.1 ? rng.Next(32) : (i * 7 % 13) + 3).ToArray();
            var options = new TrainingOptions
            {
                Config = config, TrainTokens = tokens[..5000], ValidationTokens = tokens[5000..], OutputFolder = dir,
                Steps = 60, BatchSize = 8, SequenceLength = 32, LearningRate = 5e-3, WarmupSteps = 5, EvalEvery = 20, EvalBatches = 2, SaveEvery = 30,
                SaveDType = ScalarType.Float32,
            };
            var result = await JambaTrainer.TrainAsync(options);
            Assert.Equal(60, result.Steps);
            Assert.True(result.History[^1].Validation < result.History[0].Validation - 0.3, $"validation {result.History[0].Validation} → {result.History[^1].Validation}");
            Assert.True(result.FinalValidationLoss < Math.Log(32) - 0.5);
            // Reload the written HF checkpoint and compare with the trainer's own saved resume weights.
            using var reloaded = JambaForCausalLM.FromPretrained(dir, new ModelOptions { DType = ComputeDType.Float32 });
            using var resume = JambaForCausalLM.FromPretrained(Path.Combine(dir, "resume"), new ModelOptions { DType = ComputeDType.Float32 });
            using var ids = torch.tensor(tokens[5000..5040].Select(t => (long)t).ToArray(), [1, 40]);
            using var l1 = reloaded.Forward(ids, positions: LogitPositions.All);
            using var l2 = resume.Forward(ids, positions: LogitPositions.All);
            Assert.Equal(l1.data<float>().ToArray(), l2.data<float>().ToArray());
            // Resuming continues from the saved step.
            options.Steps = 70;
            var resumed = await JambaTrainer.TrainAsync(options);
            Assert.Equal(70, resumed.Steps);
            Assert.True(resumed.History.Count > result.History.Count);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void LearningRateWarmsUpThenDecaysToTheFloor()
    {
        var o = new TrainingOptions { Steps = 100, WarmupSteps = 10, LearningRate = 1e-3, MinLearningRateFraction = 0.1 };
        Assert.Equal(1e-4, JambaTrainer.LearningRateAt(o, 0), 9);
        Assert.Equal(1e-3, JambaTrainer.LearningRateAt(o, 9), 9);
        Assert.True(JambaTrainer.LearningRateAt(o, 50) < 1e-3 && JambaTrainer.LearningRateAt(o, 50) > 1e-4);
        Assert.Equal(1e-4, JambaTrainer.LearningRateAt(o, 100), 9);
    }

    [Fact]
    public void PromptLossWeightMixesTheMaskedAndUnmaskedTokens()
    {
        using var scope = NewDisposeScope();
        var config = JambaConfig.Parse("""
            {"vocab_size":32,"hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
             "num_experts":1,"num_experts_per_tok":1,"attn_layer_period":2,"attn_layer_offset":1,"expert_layer_period":2,"expert_layer_offset":1,
             "mamba_d_state":8,"mamba_d_conv":4,"mamba_expand":2,"mamba_dt_rank":4}
            """);
        using var model = new JambaForCausalLM(config, new ModelOptions { DType = ComputeDType.Float32 });
        JambaInitializer.Initialize(model, 5);
        var rng = new Random(2);
        var batch = torch.tensor(Enumerable.Range(0, 2 * 13).Select(_ => (long)rng.Next(32)).ToArray(), [2, 13]);
        var maskValues = Enumerable.Range(0, 2 * 13).Select(i => i % 13 >= 7).ToArray();
        var mask = torch.tensor(maskValues, [2, 13]);
        var logits = model.Forward(batch.narrow(1, 0, 12), null, null, LogitPositions.All);
        var perToken = nn.functional.cross_entropy(logits.reshape(-1, 32), batch.narrow(1, 1, 12).reshape(-1), reduction: nn.Reduction.None).data<float>().ToArray();
        var targetMask = Enumerable.Range(0, 24).Select(i => maskValues[i / 12 * 13 + i % 12 + 1]).ToArray();
        double Expected(double w) => perToken.Select((v, i) => v * (targetMask[i] ? 1 : w)).Sum() / targetMask.Select(m => m ? 1 : w).Sum();
        foreach (double w in new[] { 0.0, 0.3, 1.0 })
        {
            double got = JambaTrainer.LanguageModelLoss(model, batch, mask, w).item<float>();
            Assert.Equal(Expected(w), got, 4);
        }
        Assert.NotEqual(Expected(0), Expected(1), 3);
        Assert.Equal(nameof(TrainingOptions.PromptLossWeight), Assert.Throws<ArgumentException>(() => new TrainingOptions { OutputFolder = "x", PromptLossWeight = 1.5 }.Validate()).ParamName);
        Assert.Equal(nameof(TrainingOptions.Device), Assert.Throws<ArgumentException>(() => new TrainingOptions { OutputFolder = "x", Device = "gpu0" }.Validate()).ParamName);
    }
}
