using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Kernels;

/// <summary>The RMSNorm of HF's <c>JambaRMSNorm</c> (<c>x · rsqrt(mean(x²) + ε)</c> in fp32, rounded to the dtype, times the
/// weight) in one pass over raw memory on CPU; <c>Modeling.RMSNorm</c> falls back to tensor ops wherever
/// <see cref="Applies"/> is false.</summary>
internal static class RmsNormKernel
{
    /// <summary>Whether the kernel runs this input: inference on CPU, fp32/bf16 matching the weight, contiguous, and either
    /// small or AVX-512-friendly rows (see <see cref="CpuKernels.Enabled"/>).</summary>
    public static bool Applies(Tensor input, Tensor weight) =>
        CpuKernels.Enabled && !weight.requires_grad && !input.requires_grad && input.device_type == DeviceType.CPU
        && input.dtype == weight.dtype && input.dtype is ScalarType.Float32 or ScalarType.BFloat16 && input.is_contiguous()
        && (input.numel() < ParallelElements || Vectorized(input.shape[^1]));

    /// <summary>Whether rows of <paramref name="width"/> take the AVX-512 loop (large inputs without it stay with libtorch's
    /// vectorised ops; small ones take the scalar loop, still cheaper than eight dispatches).</summary>
    internal static bool Vectorized(long width) =>
        width % 16 == 0 && System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Avx512F.IsSupported;

    /// <summary>Rows per parallel part: below this many elements the norm runs on the calling thread alone.</summary>
    private const long ParallelElements = 1 << 16;

    /// <summary>
    /// The same computation in one pass over raw memory on CPU (inference): the eight tensor ops above cost more in
    /// dispatch than in arithmetic for a decode step's few rows, and ~1–4 ms for a 512-token chunk (fp32 temporaries of the
    /// whole input) where this takes a fraction of that. Rows are split over <see cref="KernelThreads"/> when large. Rounding
    /// points match the tensor path: fp32 statistics, <c>x·rsqrt</c> rounded to the dtype, then the product with the
    /// weight rounded again.
    /// </summary>
    public static unsafe Tensor Run(Tensor input, Tensor weight, double epsilon)
    {
        bool half = input.dtype == ScalarType.BFloat16;
        int width = (int)input.shape[^1];
        long rows = input.numel() / width;
        var output = torch.empty(input.shape, dtype: input.dtype);
        nint src = SelectiveScan.Address(input), dst = SelectiveScan.Address(output), w = SelectiveScan.Address(weight);
        float eps = (float)epsilon;
        int parts = input.numel() < ParallelElements ? 1 : (int)Math.Min(KernelThreads.Count, rows);
        if (parts <= 1) Rows(src, dst, w, width, 0, rows, eps, half);
        else KernelThreads.Run(parts, part => Rows(src, dst, w, width, rows * part / parts, rows * (part + 1) / parts, eps, half));
        return output;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Rows(nint src, nint dst, nint w, int width, long from, long to, float eps, bool half)
    {
        bool vector = Vectorized(width);
        for (long r = from; r < to; r++)
        {
            long o = r * width;
            float inverse;
            if (vector)
            {
                var acc = System.Runtime.Intrinsics.Vector512<float>.Zero;
                for (int i = 0; i < width; i += 16)
                {
                    var v = BFloat16Bits.Load16(src, o + i, half);
                    acc = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(v, v, acc);
                }
                inverse = 1f / MathF.Sqrt(System.Runtime.Intrinsics.Vector512.Sum(acc) / width + eps);
                for (int i = 0; i < width; i += 16)
                {
                    var normed = BFloat16Bits.Load16(src, o + i, half) * inverse;
                    if (half) normed = BFloat16Bits.Round16(normed);
                    BFloat16Bits.Store16(dst, o + i, normed * BFloat16Bits.Load16(w, i, half), half);
                }
                continue;
            }
            float sum = 0f;
            for (int i = 0; i < width; i++)
            {
                float v = BFloat16Bits.Load(src, o + i, half);
                sum += v * v;
            }
            inverse = 1f / MathF.Sqrt(sum / width + eps);
            for (int i = 0; i < width; i++)
            {
                float normed = BFloat16Bits.Load(src, o + i, half) * inverse;
                if (half) normed = BFloat16Bits.Round(normed);
                BFloat16Bits.Store(dst, o + i, normed * BFloat16Bits.Load(w, i, half), half);
            }
        }
    }
}
