using Jamba.Inference.Caching;
using Jamba.Inference.Config;
using Jamba.Inference.Generation;
using Jamba.Inference.Modeling;
using Jamba.Inference.Tests.Fixtures;
using Xunit;
using Xunit.Abstractions;
using static Jamba.Inference.Tests.Fixtures.ModelTestHelpers;
using static TorchSharp.torch;

namespace Jamba.Inference.Tests;

/// <summary>
/// The fused CPU decode kernels of the Mamba mixer against the general tensor path: the same prompts prefilled, then the
/// same tokens decoded one position at a time (batch 1 and a ragged batch of 2), comparing every step's logits and the
/// Mamba states. (Golden and generation tests check the kernels against transformers' outputs as well, since decoding
/// uses them by default.)
/// </summary>
[Collection(nameof(MambaDecodeKernelTests))] // flips a static switch: keep the class on its own
public sealed class MambaDecodeKernelTests(ITestOutputHelper output)
{
    public static TheoryData<ModelFixtureName> Fixtures => FixtureRoots.ModelFixtures();

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void Kernels_equal_the_tensor_path_fp32(ModelFixtureName fixtureName)
    {
        var fx = ModelFixture.Load(fixtureName.Path);
        using var model = JambaForCausalLM.FromPretrained(fx.Folder, new ModelOptions { DType = ComputeDType.Float32 });
        var prompts = fx.Batch2.InputIds.Select((r, b) => r[fx.Batch2.Sequences[b].NumPad..]).ToArray();
        var (kernelLogits, kernelStates) = Decode(model, prompts, kernels: true);
        var (tensorLogits, tensorStates) = Decode(model, prompts, kernels: false);
        float worst = kernelLogits.Zip(tensorLogits).Max(p => p.First.Zip(p.Second).Max(q => Math.Abs(q.First - q.Second)));
        float worstState = kernelStates.Zip(tensorStates).Max(p => p.First.Zip(p.Second).Max(q => Math.Abs(q.First - q.Second)));
        output.WriteLine($"{fx.Name}: largest |Δlogit| {worst:E2}, largest |Δstate| {worstState:E2} over {kernelLogits.Count} steps");
        Assert.True(worst <= 2e-5f, $"{fx.Name}: logits differ by {worst}");
        Assert.True(worstState <= 1e-5f, $"{fx.Name}: Mamba states differ by {worstState}");
    }

    /// <summary>bf16: the tensor path rounds every intermediate to bf16, the kernels keep them in fp32, so neither equals the
    /// other; both are measured against the fp32 model on the same tokens, and the kernels must be no less accurate.</summary>
    [Theory]
    [MemberData(nameof(Fixtures))]
    public void Kernels_in_bf16_are_at_least_as_close_to_fp32_as_the_tensor_path(ModelFixtureName fixtureName)
    {
        var fx = ModelFixture.Load(fixtureName.Path);
        var prompts = fx.Batch2.InputIds.Select((r, b) => r[fx.Batch2.Sequences[b].NumPad..]).ToArray();
        List<float[]> reference, kernel, tensor;
        using (var fp32 = JambaForCausalLM.FromPretrained(fx.Folder, new ModelOptions { DType = ComputeDType.Float32 }))
            reference = Decode(fp32, prompts, kernels: false).Logits;
        using (var bf16 = JambaForCausalLM.FromPretrained(fx.Folder, new ModelOptions { DType = ComputeDType.BFloat16 }))
        {
            kernel = Decode(bf16, prompts, kernels: true).Logits;
            tensor = Decode(bf16, prompts, kernels: false).Logits;
        }
        // The largest difference comes from the rows where bf16 rounding flipped a router's top-k choice; the median row is the
        // stable measure of accuracy.
        float kernelError = MedianRms(kernel, reference), tensorError = MedianRms(tensor, reference);
        output.WriteLine($"{fx.Name} bf16 vs fp32: median row RMS: kernels {kernelError:E2}, tensor path {tensorError:E2}; largest {WorstDifference(kernel, reference):E2} and {WorstDifference(tensor, reference):E2}");
        Assert.True(kernelError <= tensorError * 1.25f + 1e-4f, $"{fx.Name}: bf16 kernels are {kernelError} (median row RMS) from fp32, the tensor path {tensorError}");
    }

    /// <summary>Prefills each prompt alone, then decodes 4 steps of the first prompt alone and 4 steps of both as a ragged
    /// batch, feeding a fixed token sequence so both runs see the same tokens.</summary>
    private static (List<float[]> Logits, List<float[]> States) Decode(JambaForCausalLM model, long[][] prompts, bool kernels)
    {
        bool before = DecodeKernels.Enabled;
        DecodeKernels.Enabled = kernels;
        var logits = new List<float[]>();
        var states = new List<float[]>();
        var caches = prompts.Select(_ => model.CreateCache(1)).ToArray();
        try
        {
            var next = new long[prompts.Length];
            for (int b = 0; b < prompts.Length; b++)
            {
                using var scope = NewDisposeScope();
                var last = model.Forward(Ids([prompts[b]]), null, caches[b], LogitPositions.Last).data<float>().ToArray();
                next[b] = LogitsSampler.ArgMax(last);
            }
            for (int step = 0; step < 4; step++)
            {
                using var scope = NewDisposeScope();
                var row = model.Forward(Ids([[next[0]]]), null, caches[0], LogitPositions.Last).to(ScalarType.Float32).data<float>().ToArray();
                logits.Add(row);
                next[0] = (step * 7919 + 13) % row.Length; // a fixed token sequence, independent of either path's choice
            }
            for (int step = 0; step < 4; step++)
            {
                using var scope = NewDisposeScope();
                var batch = model.Forward(Ids(next.Select(t => new[] { t }).ToArray()), null, new CacheBatch(caches), LogitPositions.Last).to(ScalarType.Float32);
                for (int b = 0; b < prompts.Length; b++)
                {
                    logits.Add(batch[b, 0].data<float>().ToArray());
                    next[b] = (step * 104729 + b * 31 + 5) % batch.shape[^1];
                }
            }
            foreach (var cache in caches) states.AddRange(MambaStateArrays(model, cache));
        }
        finally
        {
            DecodeKernels.Enabled = before;
            foreach (var c in caches) c.Dispose();
        }
        return (logits, states);
    }
}
