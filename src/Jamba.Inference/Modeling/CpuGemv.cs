using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Modeling;

/// <summary>
/// Matrix–vector products for decode steps on CPU: <c>y = x Wᵀ (+ b)</c> for a handful of rows <c>x</c> against bf16
/// or fp32 weights, reading each weight row once for all rows with AVX-512 (bf16 widened to fp32 in registers) over
/// both cores. libtorch's CPU bf16 GEMV for one row runs far below memory bandwidth; this kernel is what makes a
/// decode step bandwidth-bound. Prefill-sized inputs stay with libtorch's GEMM.
/// </summary>
internal static unsafe class CpuGemv
{
    /// <summary>Split large products over the thread pool (default on; <c>JAMBA_GEMV_PARALLEL=0</c> turns it off).</summary>
    internal static bool Parallelize { get; set; } = Environment.GetEnvironmentVariable("JAMBA_GEMV_PARALLEL") != "0";

    /// <summary>Most rows handled here; larger batches use libtorch's GEMM.</summary>
    public const int MaxRows = 16;

    /// <summary>Computes the projection with the kernel when it applies (CPU, bf16/fp32 contiguous weights, at most
    /// <see cref="MaxRows"/> rows, no autograd); returns null otherwise.</summary>
    public static Tensor? TryLinear(Tensor x, Tensor weight, Tensor? bias)
    {
        if (x.device_type != DeviceType.CPU || weight.device_type != DeviceType.CPU) return null;
        if (weight.dtype is not (ScalarType.BFloat16 or ScalarType.Float32) || !weight.is_contiguous()) return null;
        if (x.dtype is not (ScalarType.BFloat16 or ScalarType.Float32)) return null;
        if (torch.is_grad_enabled() && (x.requires_grad || weight.requires_grad)) return null;
        long inFeatures = weight.shape[1], outFeatures = weight.shape[0];
        if (x.shape[^1] != inFeatures) return null;
        long rows = x.numel() / inFeatures;
        if (rows < 1 || rows > MaxRows || !Vector512.IsHardwareAccelerated) return null;

        // Inputs as fp32 rows (a few KiB).
        int n = (int)inFeatures, o = (int)outFeatures, r = (int)rows;
        var xs = new float[r * n];
        using (var xf = x.to(ScalarType.Float32).contiguous())
            System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(xf.bytes).CopyTo(xs);
        var ys = new float[r * o];
        float* bp = null;
        float[]? biasValues = null;
        if (bias is not null)
        {
            using var bf = bias.to(ScalarType.Float32).contiguous();
            biasValues = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bf.bytes).ToArray();
        }
        nint w = SelectiveScan.Address(weight);
        bool bf16 = weight.dtype == ScalarType.BFloat16;
        const int Block = 64;
        int blocks = (o + Block - 1) / Block;
        fixed (float* xp = xs, yp = ys)
        {
            nint xa = (nint)xp, ya = (nint)yp;
            void Run(int blk)
            {
                int start = blk * Block, end = Math.Min(o, start + Block);
                for (int row = start; row < end; row++)
                {
                    // Up to four input rows per pass over the weight row; further groups re-read it from L1, not memory.
                    for (int g = 0; g < r; g += 4)
                    {
                        int count = Math.Min(4, r - g);
                        float* xg = (float*)xa + (long)g * n, yg = (float*)ya + (long)g * o;
                        if (bf16) DotBf16((ushort*)w + (long)row * n, xg, n, count, yg, row, o);
                        else DotF32((float*)w + (long)row * n, xg, n, count, yg, row, o);
                    }
                }
            }
            if ((long)o * n < 1 << 18 || Environment.ProcessorCount == 1 || !Parallelize) for (int b = 0; b < blocks; b++) Run(b);
            else Parallel.For(0, blocks, Run);
        }
        if (biasValues is not null)
            for (int i = 0; i < r; i++)
                for (int j = 0; j < o; j++) ys[i * o + j] += biasValues[j];

        var shape = x.shape.ToArray();
        shape[^1] = o;
        var y = torch.empty(shape, dtype: x.dtype);
        if (x.dtype == ScalarType.Float32)
        {
            System.Runtime.InteropServices.MemoryMarshal.AsBytes(ys.AsSpan()).CopyTo(y.bytes);
        }
        else
        {
            var dst = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(y.bytes);
            for (int i = 0; i < ys.Length; i++) dst[i] = ToBf16(ys[i]);
        }
        return y;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ushort ToBf16(float f)
    {
        uint bits = BitConverter.SingleToUInt32Bits(f);
        if (float.IsNaN(f)) return (ushort)((bits >> 16) | 0x40);
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16); // round to nearest even
    }

    private static void DotBf16(ushort* w, float* x, int n, int rows, float* y, int outRow, int outFeatures)
    {
        var a0 = Vector512<float>.Zero; var a1 = Vector512<float>.Zero; var a2 = Vector512<float>.Zero; var a3 = Vector512<float>.Zero;
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            var raw = Vector512.Load(w + i);
            var lo = (Vector512.WidenLower(raw) << 16).AsSingle();
            var hi = (Vector512.WidenUpper(raw) << 16).AsSingle();
            a0 = Vector512.FusedMultiplyAdd(lo, Vector512.Load(x + i), a0);
            a0 = Vector512.FusedMultiplyAdd(hi, Vector512.Load(x + i + 16), a0);
            if (rows > 1)
            {
                a1 = Vector512.FusedMultiplyAdd(lo, Vector512.Load(x + n + i), a1);
                a1 = Vector512.FusedMultiplyAdd(hi, Vector512.Load(x + n + i + 16), a1);
                if (rows > 2)
                {
                    a2 = Vector512.FusedMultiplyAdd(lo, Vector512.Load(x + 2 * n + i), a2);
                    a2 = Vector512.FusedMultiplyAdd(hi, Vector512.Load(x + 2 * n + i + 16), a2);
                    if (rows > 3)
                    {
                        a3 = Vector512.FusedMultiplyAdd(lo, Vector512.Load(x + 3 * n + i), a3);
                        a3 = Vector512.FusedMultiplyAdd(hi, Vector512.Load(x + 3 * n + i + 16), a3);
                    }
                }
            }
        }
        Span<float> acc = [Vector512.Sum(a0), Vector512.Sum(a1), Vector512.Sum(a2), Vector512.Sum(a3)];
        for (; i < n; i++)
        {
            float wv = BitConverter.UInt32BitsToSingle((uint)w[i] << 16);
            for (int r = 0; r < rows; r++) acc[r] += wv * x[r * n + i];
        }
        for (int r = 0; r < rows; r++) y[(long)r * outFeatures + outRow] = acc[r];
    }

    private static void DotF32(float* w, float* x, int n, int rows, float* y, int outRow, int outFeatures)
    {
        var a0 = Vector512<float>.Zero; var a1 = Vector512<float>.Zero; var a2 = Vector512<float>.Zero; var a3 = Vector512<float>.Zero;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            var wv = Vector512.Load(w + i);
            a0 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(x + i), a0);
            if (rows > 1) a1 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(x + n + i), a1);
            if (rows > 2) a2 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(x + 2 * n + i), a2);
            if (rows > 3) a3 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(x + 3 * n + i), a3);
        }
        Span<float> acc = [Vector512.Sum(a0), Vector512.Sum(a1), Vector512.Sum(a2), Vector512.Sum(a3)];
        for (; i < n; i++)
            for (int r = 0; r < rows; r++) acc[r] += w[i] * x[r * n + i];
        for (int r = 0; r < rows; r++) y[(long)r * outFeatures + outRow] = acc[r];
    }
}
