using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Kernels;

/// <summary>
/// One query position attending to a cached context on CPU: <c>softmax(q·Kᵀ/√d)·V</c> per head, with each key/value head
/// read once for all the query heads of its group (GQA) straight from the cache's buffer. For a single query libtorch's
/// batched bf16 matmuls over broadcast, transposed views cost ~1 ms at 600 keys for ~1 MFLOP; this kernel streams K and V
/// once. Scores and the softmax are fp32 (the tensor path rounds the scores to bf16 first), so results agree with
/// <see cref="AttentionKernels"/> to summation order in fp32 and are at least as accurate in bf16.
/// </summary>
internal static class DecodeAttention
{
    /// <summary>Whether the kernel handles these tensors: CPU, fp32/bf16, one query position, head size a multiple of 16.</summary>
    public static bool Applies(Tensor q, Tensor keys) =>
        CpuKernels.Enabled && DecodeKernels.Enabled && Avx512F.IsSupported && q.device_type == DeviceType.CPU && q.shape[2] == 1
        && q.dtype == keys.dtype && q.dtype is ScalarType.Float32 or ScalarType.BFloat16 && keys.is_contiguous()
        && q.shape[3] % 16 == 0;


    /// <summary>Attends <paramref name="q"/> <c>[B, H, 1, hd]</c> to the first <paramref name="length"/> positions of the cache
    /// buffers <paramref name="keys"/>/<paramref name="values"/> <c>[B, kvh, capacity, hd]</c>; returns <c>[B, H, 1, hd]</c>.</summary>
    public static unsafe Tensor Attend(Tensor q, Tensor keys, Tensor values, int length)
    {
        int batch = (int)q.shape[0], heads = (int)q.shape[1], hd = (int)q.shape[3];
        int kvHeads = (int)keys.shape[1], capacity = (int)keys.shape[2], groups = heads / kvHeads;
        bool half = q.dtype == ScalarType.BFloat16;
        using var qc = q.contiguous();
        var output = torch.empty([batch, heads, 1, hd], dtype: q.dtype);
        nint pq = SelectiveScan.Address(qc), pk = SelectiveScan.Address(keys), pv = SelectiveScan.Address(values), po = SelectiveScan.Address(output);
        float scale = 1f / MathF.Sqrt(hd);
        int units = batch * kvHeads;
        long work = (long)units * length * hd * groups;
        int threads = KernelThreads.Count;
        if (threads == 1 || units == 1 || work < 1 << 18)
            for (int u = 0; u < units; u++) Unit(u);
        else
            Parallel.For(0, units, new ParallelOptions { MaxDegreeOfParallelism = threads }, Unit);
        return output;

        void Unit(int u)
        {
            int b = u / kvHeads, g = u % kvHeads;
            long kvBase = ((long)b * kvHeads + g) * capacity * hd;
            var scores = ArrayPool<float>.Shared.Rent(groups * length);
            var qBuf = ArrayPool<float>.Shared.Rent(groups * hd);
            var acc = ArrayPool<float>.Shared.Rent(groups * hd);
            try
            {
                for (int h = 0; h < groups; h++)
                    for (int d = 0; d < hd; d++)
                        qBuf[h * hd + d] = BFloat16Bits.Load(pq, ((long)b * heads + g * groups + h) * hd + d, half) * scale;
                Compute(pk + (nint)(kvBase * (half ? 2 : 4)), pv + (nint)(kvBase * (half ? 2 : 4)), half, hd, groups, length, qBuf, scores, acc);
                for (int h = 0; h < groups; h++)
                    for (int d = 0; d < hd; d++)
                        BFloat16Bits.Store(po, ((long)b * heads + g * groups + h) * hd + d, acc[h * hd + d], half);
            }
            finally
            {
                ArrayPool<float>.Shared.Return(scores);
                ArrayPool<float>.Shared.Return(qBuf);
                ArrayPool<float>.Shared.Return(acc);
            }
        }
    }

    /// <summary>One key/value head: scores for its <paramref name="groups"/> query heads, softmax, weighted sum of values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Compute(nint keys, nint values, bool half, int hd, int groups, int length, float[] q, float[] scores, float[] acc)
    {
        int chunks = hd / 16;
        Span<Vector512<float>> row = stackalloc Vector512<float>[chunks];
        fixed (float* pq = q, ps = scores, pa = acc)
        {
            for (int s = 0; s < length; s++)
            {
                LoadRow(keys, (long)s * hd, half, row);
                for (int h = 0; h < groups; h++)
                {
                    var sum = Vector512<float>.Zero;
                    for (int c = 0; c < chunks; c++) sum = Vector512.FusedMultiplyAdd(row[c], Vector512.Load(pq + h * hd + c * 16), sum);
                    ps[h * length + s] = Vector512.Sum(sum);
                }
            }
            for (int h = 0; h < groups; h++)
            {
                float* sc = ps + h * length;
                float max = float.NegativeInfinity;
                for (int s = 0; s < length; s++) max = Math.Max(max, sc[s]);
                float total = 0f;
                int i = 0;
                var vmax = Vector512.Create(max);
                var vtotal = Vector512<float>.Zero;
                for (; i + 16 <= length; i += 16)
                {
                    var e = FastMath.Exp(Vector512.Load(sc + i) - vmax);
                    e.Store(sc + i);
                    vtotal += e;
                }
                for (; i < length; i++)
                {
                    sc[i] = MathF.Exp(sc[i] - max);
                    total += sc[i];
                }
                total += Vector512.Sum(vtotal);
                float inv = 1f / total;
                for (int s = 0; s < length; s++) sc[s] *= inv;
                for (int d = 0; d < hd; d++) pa[h * hd + d] = 0f;
            }
            for (int s = 0; s < length; s++)
            {
                LoadRow(values, (long)s * hd, half, row);
                for (int h = 0; h < groups; h++)
                {
                    var p = Vector512.Create(ps[h * length + s]);
                    for (int c = 0; c < chunks; c++)
                    {
                        float* dst = pa + h * hd + c * 16;
                        Vector512.FusedMultiplyAdd(row[c], p, Vector512.Load(dst)).Store(dst);
                    }
                }
            }
        }
    }

    /// <summary>Row <c>[offset, offset + hd)</c> of a bf16 or fp32 buffer as fp32 vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void LoadRow(nint buffer, long offset, bool half, Span<Vector512<float>> row)
    {
        if (half)
        {
            ushort* src = (ushort*)buffer + offset;
            for (int c = 0; c < row.Length; c++)
                row[c] = Vector512.ShiftLeft(Avx512F.ConvertToVector512UInt32(Vector256.Load(src + c * 16)), 16).AsSingle();
        }
        else
        {
            float* src = (float*)buffer + offset;
            for (int c = 0; c < row.Length; c++) row[c] = Vector512.Load(src + c * 16);
        }
    }
}
