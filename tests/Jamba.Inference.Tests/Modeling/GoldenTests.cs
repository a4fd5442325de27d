using Jamba.Inference.Modeling;
using Jamba.Inference.Tests.Fixtures;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static Jamba.Inference.Tests.Fixtures.ModelTestHelpers;
using static TorchSharp.torch;

namespace Jamba.Inference.Tests;

/// <summary>
/// Compares the fp32 forward with transformers' <c>JambaForCausalLM</c> on every model fixture.
/// Tolerances: fp32 re-implementations differ from the reference only by summation order, i.e. by a
/// relative error of order 1e-6 per element. Logits (order 1–10) therefore get 1e-4 absolute (the fixture
/// README's suggestion; we observe ≈1e-6). A sum or L2 norm over N elements of a layer output gets
/// <c>1e-5·√N·l2 + 1e-4</c> (Cauchy–Schwarz bound on N per-element errors of at most 1e-5 relative) and
/// <c>1e-5·l2 + 1e-4</c> respectively. Router probabilities get 1e-5; expert choices and argmaxes must be identical.
/// </summary>
[Trait("Category", "Golden")]
public sealed class GoldenTests(ITestOutputHelper output)
{
    private const double LogitTol = 1e-4;
    private const double RouterTol = 1e-5;

    public static TheoryData<ModelFixtureName> Fixtures => FixtureRoots.ModelFixtures();

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void ForwardMatchesTransformers(ModelFixtureName fixtureName) => Compare(fixtureName, ForwardPath.CpuKernels);

    private void Compare(ModelFixtureName fixtureName, ForwardPath path)
    {
        var fx = ModelFixture.Load(fixtureName.Path);
        using var model = LoadFp32(fx.Folder, path);
        Assert.Equal(fx.LayersBlockType, Enumerable.Range(0, model.Config.NumHiddenLayers).Select(i => model.Config.MixerKind(i).ToString().ToLowerInvariant()).ToArray());
        Assert.Equal(fx.LayersNumExperts, Enumerable.Range(0, model.Config.NumHiddenLayers).Select(model.Config.LayerNumExperts).ToArray());

        double worst = 0;
        foreach (var (batchName, batch) in fx.Batches)
        {
            using var scope = NewDisposeScope();
            using var recorder = new Recorder();
            var ids = Ids(batch.InputIds);
            Tensor? mask = batch.HasPadding ? Ids(batch.AttentionMask) : null;
            var logits = model.Forward(ids, mask, null, LogitPositions.All, recorder);   // [B, L, V]
            for (int b = 0; b < batch.BatchSize; b++)
            {
                var seq = batch.Sequences[b];
                string where = $"{fx.Name} {batchName} row {b}";
                var rowLogits = logits[b];
                // last_logits: the whole vocabulary at the last position.
                var last = rowLogits[batch.Length - 1].cpu().data<float>().ToArray();
                worst = Math.Max(worst, AssertClose(seq.LastLogits, last, LogitTol, $"{where} last_logits"));
                for (int t = 0; t < batch.Length; t++)
                {
                    if (seq.LogitsFirst8[t] is not { } first8) continue;
                    var row = rowLogits[t];
                    var got = row.narrow(0, 0, 8).cpu().data<float>().ToArray();
                    worst = Math.Max(worst, AssertClose(first8, got, LogitTol, $"{where} logits_first8[{t}]"));
                    long argmax = row.argmax().item<long>();
                    Assert.True(seq.Argmax[t] == argmax, $"{where} argmax[{t}]: expected {seq.Argmax[t]}, got {argmax}");
                }
                CheckLayers(fx, batchName, b, seq, recorder, batch.Length);
                if (seq.RouterTopK is { } routers) CheckRouters(fx, batchName, b, batch.Length, routers, recorder);
            }
        }
        output.WriteLine($"{fx.Name}: largest |Δlogit| = {worst:E3}");
    }

    /// <summary>The same comparison with every hand-written CPU kernel off (<see cref="ModelOptions.CpuKernels"/> false): the tensor
    /// path a CUDA device runs.</summary>
    [Theory]
    [MemberData(nameof(Fixtures))]
    public void ForwardMatchesTransformersOnTheDevicePath(ModelFixtureName fixtureName) => Compare(fixtureName, ForwardPath.Device);

    private static void CheckLayers(ModelFixture fx, string batchName, int b, FixtureSequence seq, Recorder recorder, int length)
    {
        int valid = length - seq.NumPad;
        var tensors = new List<(string Name, Tensor Value, (double Sum, double L2) Expected)>
        {
            ("hidden_states[0] (embeddings)", recorder.Embeddings!, seq.HiddenStates[0]),
        };
        foreach (var (layer, t) in recorder.Layers)
            tensors.Add(($"layer_outputs[{layer}]", t, seq.LayerOutputs[layer]));
        foreach (var (name, t, expected) in tensors)
        {
            using var v = t[b].narrow(0, seq.NumPad, valid);
            double sum = v.sum().item<double>(), l2 = v.norm().item<double>();
            double n = v.numel();
            double sumTol = 1e-5 * Math.Sqrt(n) * expected.L2 + 1e-4, l2Tol = 1e-5 * expected.L2 + 1e-4;
            Assert.True(Math.Abs(sum - expected.Sum) <= sumTol, $"{fx.Name} {batchName} row {b} {name}.sum: expected {expected.Sum}, got {sum} (|Δ| {Math.Abs(sum - expected.Sum):E3} > {sumTol:E3})");
            Assert.True(Math.Abs(l2 - expected.L2) <= l2Tol, $"{fx.Name} {batchName} row {b} {name}.l2: expected {expected.L2}, got {l2} (|Δ| {Math.Abs(l2 - expected.L2):E3} > {l2Tol:E3})");
        }
        if (seq.LayerL2PerPosition is { } perPos)
            for (int layer = 0; layer < perPos.Length; layer++)
            {
                var norms = recorder.Layers[layer][b].norm(1).data<double>().ToArray();
                for (int t = 0; t < perPos[layer].Length; t++)
                    Assert.True(Math.Abs(norms[t] - perPos[layer][t]) <= 1e-5 * perPos[layer][t] + 1e-4,
                        $"{fx.Name} {batchName} layer_outputs_l2_per_position[{layer}][{t}]: expected {perPos[layer][t]}, got {norms[t]}");
            }
        if (seq.LayerLastFirst8 is { } first8)
            for (int layer = 0; layer < first8.Length; layer++)
            {
                var got = recorder.Layers[layer][b][length - 1].narrow(0, 0, 8).data<double>().ToArray();
                for (int i = 0; i < 8; i++)
                    Assert.True(Math.Abs(got[i] - first8[layer][i]) <= 1e-4,
                        $"{fx.Name} {batchName} layer_outputs_last_position_first8[{layer}][{i}]: expected {first8[layer][i]}, got {got[i]}");
            }
    }

    private static void CheckRouters(ModelFixture fx, string batchName, int b, int length, Dictionary<int, (long[][] Experts, double[][] Weights)> expected, Recorder recorder)
    {
        Assert.Equal(expected.Keys.Order(), recorder.Routers.Keys);
        foreach (var (layer, (experts, weights)) in expected)
        {
            var (gotExperts, gotWeights, k) = recorder.Routers[layer];
            for (int t = 0; t < experts.Length; t++)
                for (int j = 0; j < k; j++)
                {
                    long flat = ((long)b * length + t) * k + j;
                    Assert.True(experts[t][j] == gotExperts[flat], $"{fx.Name} {batchName} router_topk[{layer}].experts[{t}][{j}]: expected {experts[t][j]}, got {gotExperts[flat]}");
                    Assert.True(Math.Abs(weights[t][j] - gotWeights[flat]) <= RouterTol,
                        $"{fx.Name} {batchName} router_topk[{layer}].weights[{t}][{j}]: expected {weights[t][j]}, got {gotWeights[flat]}");
                }
        }
    }

    private static double AssertClose(float[] expected, float[] actual, double tol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        int at = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            double d = Math.Abs(expected[i] - actual[i]);
            if (!(d <= worst)) { worst = d; at = i; }
        }
        Assert.True(worst <= tol, $"{what}: max |Δ| {worst:E3} at index {at} (expected {expected[Math.Max(at, 0)]}, got {actual[Math.Max(at, 0)]}) exceeds {tol:E1}");
        return worst;
    }

    /// <summary>bf16 compute (the default on CPUs with native bf16) against the fp32 reference: bf16 keeps 8 bits of
    /// mantissa, so logits of order 1–10 move by a few hundredths per layer; 0.25 bounds that with margin while still
    /// catching any real error (a wrong kernel moves logits by whole units).</summary>
    [Theory]
    [MemberData(nameof(Fixtures))]
    public void Bf16ComputeStaysCloseToTheReference(ModelFixtureName fixtureName)
    {
        var fx = ModelFixture.Load(fixtureName.Path);
        using var model = JambaForCausalLM.FromPretrained(fx.Folder, new ModelOptions { DType = ComputeDType.BFloat16, Device = TestDevice.Name });
        using var scope = NewDisposeScope();
        var ids = Ids(fx.Batch1.InputIds);
        // chunked through a cache, so the bf16 scan, conv window and attention kernels all run
        using var cache = model.CreateCache(1);
        model.Forward(ids.narrow(1, 0, ids.shape[1] / 2), null, cache, LogitPositions.Last);
        var last = model.Forward(ids.narrow(1, ids.shape[1] / 2, ids.shape[1] - ids.shape[1] / 2), null, cache, LogitPositions.Last).cpu().data<float>().ToArray();
        double worst = AssertClose(fx.Batch1.Sequences[0].LastLogits, last, 0.25, $"{fx.Name} bf16 last_logits");
        output.WriteLine($"{fx.Name}: bf16 largest |Δlogit| = {worst:E3}");
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void GreedyByFullReforwardMatches(ModelFixtureName fixtureName)
    {
        var fx = ModelFixture.Load(fixtureName.Path);
        using var model = LoadFp32(fx.Folder);
        foreach (var (batchName, batch) in fx.Batches)
        {
            var produced = GreedyFullReforward(model, batch.InputIds, batch.AttentionMask, fx.MaxNewTokens);
            for (int b = 0; b < batch.BatchSize; b++)
                Assert.True(batch.GreedyNewTokens[b].SequenceEqual(produced[b]),
                    $"{fx.Name} {batchName} row {b} greedy_new_tokens: expected [{string.Join(", ", batch.GreedyNewTokens[b])}], got [{string.Join(", ", produced[b])}]");
        }
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void ParameterNamesAndShapesEqualTheCheckpointTensors(ModelFixtureName fixtureName)
    {
        using var checkpoint = Jamba.Inference.Checkpoint.SafetensorsCheckpoint.Open(fixtureName.Path);
        var config = Jamba.Inference.Config.JambaConfig.Load(fixtureName.Path);
        using var model = new JambaForCausalLM(config, new ModelOptions { DType = ComputeDType.Float32 });
        var modelTensors = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        var plan = Jamba.Inference.Modeling.WeightLoader.Plan(model, checkpoint, model.named_parameters().ToDictionary(p => p.name, p => p.parameter));
        Assert.Equal(modelTensors.Count, plan.Count);
        Assert.Equal(modelTensors.Keys.Order(StringComparer.Ordinal), plan.Select(p => p.Target).Order(StringComparer.Ordinal));
        foreach (var (source, target) in plan)
            Assert.Equal(checkpoint.GetInfo(source).Shape, modelTensors[target]);
        // Every stored tensor is used (a tied checkpoint may additionally store the tied lm_head).
        var unused = checkpoint.TensorNames.Except(plan.Select(p => p.Source)).ToList();
        Assert.True(unused.Count == 0 || (config.TieWordEmbeddings && unused.SequenceEqual(["lm_head.weight"])), $"unused tensors: {string.Join(", ", unused)}");
    }
}
