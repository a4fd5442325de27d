using Jamba.Inference.Config;
using Jamba.Inference.Modeling;
using Jamba.Inference.Tests.Fixtures;
using Xunit;
using Xunit.Abstractions;
using static Jamba.Inference.Tests.Fixtures.ModelTestHelpers;
using static TorchSharp.torch;

namespace Jamba.Inference.Tests;

/// <summary>
/// The channels-last prefill kernels of the Mamba mixer (conv + SiLU, scan + softplus + gate) against the general tensor
/// path: a left-padded batch in one forward (the padding mask inside the conv), and one prompt fed in uneven chunks through a
/// cache — chunks of 1 and 2 positions are shorter than the conv window, so the window carried between calls mixes old and
/// new inputs — comparing the logits at every position and the Mamba states left in the cache. (Golden and generation tests
/// check the kernels against transformers as well, since prefill uses them by default.)
/// </summary>
[Collection(nameof(MambaDecodeKernelTests))] // flips a static switch: keep it away from tests that read it
public sealed class MambaPrefillKernelTests(ITestOutputHelper output)
{
    public static TheoryData<ModelFixtureName> Fixtures => FixtureRoots.ModelFixtures();

    private static readonly int[] Chunks = [3, 1, 2, 5, 1, 64];

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void Kernels_equal_the_tensor_path_fp32(ModelFixtureName fixtureName)
    {
        var fx = ModelFixture.Load(fixtureName.Path);
        using var model = JambaForCausalLM.FromPretrained(fx.Folder, new ModelOptions { DType = ComputeDType.Float32 });
        var kernel = Run(model, fx, kernels: true);
        var tensor = Run(model, fx, kernels: false);
        float worst = WorstDifference(kernel.Logits, tensor.Logits), worstState = WorstDifference(kernel.States, tensor.States);
        output.WriteLine($"{fx.Name}: largest |Δlogit| {worst:E2} over {kernel.Logits.Sum(r => r.Length)} values, largest |Δstate| {worstState:E2}");
        Assert.True(worst <= 2e-5f, $"{fx.Name}: logits differ by {worst}");
        Assert.True(worstState <= 1e-5f, $"{fx.Name}: Mamba states differ by {worstState}");
    }

    /// <summary>bf16: both paths round at the same points but compute exp/softplus/SiLU with different (fp32-accurate)
    /// formulas, so a value can land on the other side of a bf16 rounding boundary; both are measured against the fp32 model
    /// (median over positions of the RMS difference: a few positions jump where rounding flips a router's top-k choice), and the
    /// kernels must be about as accurate as the tensor path.</summary>
    [Theory]
    [MemberData(nameof(Fixtures))]
    public void Kernels_in_bf16_are_at_least_as_close_to_fp32_as_the_tensor_path(ModelFixtureName fixtureName)
    {
        var fx = ModelFixture.Load(fixtureName.Path);
        (List<float[]> Logits, List<float[]> States) reference, kernel, tensor;
        using (var fp32 = JambaForCausalLM.FromPretrained(fx.Folder, new ModelOptions { DType = ComputeDType.Float32 }))
            reference = Run(fp32, fx, kernels: false);
        using (var bf16 = JambaForCausalLM.FromPretrained(fx.Folder, new ModelOptions { DType = ComputeDType.BFloat16 }))
        {
            kernel = Run(bf16, fx, kernels: true);
            tensor = Run(bf16, fx, kernels: false);
        }
        float kernelError = MedianRms(kernel.Logits, reference.Logits), tensorError = MedianRms(tensor.Logits, reference.Logits);
        output.WriteLine($"{fx.Name} bf16 vs fp32: median row RMS: kernels {kernelError:E2}, tensor path {tensorError:E2}; largest {WorstDifference(kernel.Logits, reference.Logits):E2} and {WorstDifference(tensor.Logits, reference.Logits):E2}");
        Assert.True(kernelError <= tensorError * 1.25f + 1e-4f, $"{fx.Name}: bf16 kernels are {kernelError} (median row RMS) from fp32, the tensor path {tensorError}");
    }

    [Fact]
    public void Supports_only_what_the_kernels_implement()
    {
        bool before = MambaPrefillKernel.Enabled;
        MambaPrefillKernel.Enabled = true;
        try
        {
            Check();
        }
        finally
        {
            MambaPrefillKernel.Enabled = before;
        }
        Assert.False(MambaPrefillKernel.Supports(zeros(1, 1, 32), "silu", 32, 4, zeros(1, 32, 3), zeros(1, 32, 16)) && !before);
    }

    private static void Check()
    {
        using var hidden = zeros(1, 4, 32);
        using var window = zeros(1, 32, 3);
        using var state = zeros(1, 32, 16);
        Assert.True(MambaPrefillKernel.Supports(hidden, "silu", 32, 4, window, state) || !System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated);
        Assert.False(MambaPrefillKernel.Supports(hidden, "gelu", 32, 4, window, state));
        Assert.False(MambaPrefillKernel.Supports(hidden, "silu", 24, 4, window, state));     // channels not a multiple of 16
        using var f16 = hidden.to(ScalarType.Float16);
        Assert.False(MambaPrefillKernel.Supports(f16, "silu", 32, 4, window, state));
        using var halfState = state.to(ScalarType.BFloat16);
        Assert.False(MambaPrefillKernel.Supports(hidden, "silu", 32, 4, window, halfState));
    }

    /// <summary>The padded batch in one forward (every position's logits), then the longest prompt in uneven chunks through a
    /// cache (every position's logits, then the cache's Mamba states).</summary>
    private static (List<float[]> Logits, List<float[]> States) Run(JambaForCausalLM model, ModelFixture fx, bool kernels)
    {
        bool before = MambaPrefillKernel.Enabled;
        MambaPrefillKernel.Enabled = kernels;
        var logits = new List<float[]>();
        var states = new List<float[]>();
        try
        {
            using (var scope = NewDisposeScope())
            {
                var batch = fx.Batch2;
                Tensor? mask = batch.HasPadding ? Ids(batch.AttentionMask) : null;
                var all = model.Forward(Ids(batch.InputIds), mask, null, LogitPositions.All).to(ScalarType.Float32);
                for (int b = 0; b < all.shape[0]; b++)
                    for (int t = batch.Sequences[b].NumPad; t < all.shape[1]; t++) logits.Add(all[b, t].data<float>().ToArray());
            }
            var prompt = fx.Batch2.InputIds.Select((r, b) => r[fx.Batch2.Sequences[b].NumPad..]).MaxBy(r => r.Length)!;
            using var cache = model.CreateCache(1);
            int start = 0;
            foreach (int size in Chunks)
            {
                if (start >= prompt.Length) break;
                int take = Math.Min(size, prompt.Length - start);
                using var scope = NewDisposeScope();
                var chunk = model.Forward(Ids([prompt[start..(start + take)]]), null, cache, LogitPositions.All).to(ScalarType.Float32);
                for (int t = 0; t < take; t++) logits.Add(chunk[0, t].data<float>().ToArray());
                start += take;
            }
            states.AddRange(MambaStateArrays(model, cache));
        }
        finally
        {
            MambaPrefillKernel.Enabled = before;
        }
        return (logits, states);
    }
}
