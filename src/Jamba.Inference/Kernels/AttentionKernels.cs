using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Kernels;

/// <summary>
/// Causal grouped-query attention for the attention layers: queries <c>[B, H, L, hd]</c> at absolute positions
/// <c>S−L … S−1</c> over keys/values <c>[B, kvh, S, hd]</c>. Key/value heads are shared by broadcasting (never
/// copied per query head), and keys are processed in blocks with an online softmax, so memory stays
/// <c>O(L · block)</c> instead of <c>O(L · S)</c> — a 256K-token context never materialises its score matrix.
/// </summary>
public static class AttentionKernels
{
    /// <summary>Most keys per block of the online softmax.</summary>
    public const int KeyBlock = 4096;

    /// <summary>Bytes of fp32 scores one block may hold (the block shrinks for long query chunks). Kept well below glibc's
    /// largest dynamic mmap threshold (32 MiB): larger per-block temporaries were a fresh <c>mmap</c> every block, and the
    /// page faults took 38 s of system time in a 62 s 32K-token prefill (4.5 s of 40 s at 8 MiB).</summary>
    public const long ScoreBudgetBytes = 8L << 20;

    /// <summary>Attends <paramref name="q"/> to <paramref name="k"/>/<paramref name="v"/>; <paramref name="mask"/> (additive,
    /// <c>[B, 1, L, S]</c>) replaces the implicit causal rule when given (padded batches).</summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? mask) => Attend(q, k, v, mask, allowFused: true);

    /// <summary>Most query × key pairs for which a multi-query chunk goes through libtorch's fused attention; beyond it the
    /// blockwise path below keeps memory flat (the fused kernel's buffers grow with <c>L·S</c>: +328 MiB measured at
    /// 512 × 65,536).</summary>
    public const long FusedMaxPairs = 8L << 20;

    /// <summary><see cref="Attend(Tensor, Tensor, Tensor, Tensor?)"/>; <paramref name="allowFused"/> = false forces the
    /// blockwise path (tests compare both).</summary>
    internal static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? mask, bool allowFused)
    {
        using var scope = NewDisposeScope();
        long b = q.shape[0], heads = q.shape[1], l = q.shape[2], hd = q.shape[3];
        long kvHeads = k.shape[1], s = k.shape[2];
        long groups = heads / kvHeads;
        double scale = 1.0 / Math.Sqrt(hd);
        long past = s - l;
        if (allowFused && mask is null && l > 1 && l * s <= FusedMaxPairs)
        {
            // Prefill chunks: libtorch's fused (flash) attention, 8–20× faster here than the blockwise matmuls over
            // broadcast, transposed bf16 views. K/V heads are repeated per query head (GQA; a chunk-sized copy), and after
            // a cached prefix the causal rule is an explicit [L, S] mask (is_causal aligns it to the wrong corner then).
            var ke = groups == 1 ? k : k.repeat_interleave(groups, dim: 1);
            var ve = groups == 1 ? v : v.repeat_interleave(groups, dim: 1);
            if (past == 0)
                return nn.functional.scaled_dot_product_attention(q, ke, ve, is_casual: true).MoveToOuterDisposeScope();
            var allowed = TorchScalars.Arange(0, s, q.device).view(1, s).le(TorchScalars.Arange(past, s, q.device).view(l, 1));
            return nn.functional.scaled_dot_product_attention(q, ke, ve, attn_mask: allowed).MoveToOuterDisposeScope();
        }

        // [B, kvh, g, L, hd] queries against [B, kvh, 1, S, hd] keys: broadcasting shares each K/V head.
        var qg = q.view(b, kvHeads, groups, l, hd).Times(scale);
        var kg = k.unsqueeze(2);
        var vg = v.unsqueeze(2);
        var maskG = mask?.unsqueeze(1);                                           // [B, 1, 1, L, S]
        Tensor? acc = null, rowMax = null, rowSum = null;
        long block = Math.Clamp(ScoreBudgetBytes / Math.Max(1, b * heads * l * 4), 64, KeyBlock);
        for (long start = 0; start < s; start += block)
        {
            long n = Math.Min(block, s - start);
            if (mask is null && start > past + l - 1) break;                      // every key here is in the future
            // Each block's temporaries (scores, probabilities: L × block floats per head) are freed before the next block,
            // so memory stays O(L · block) however long the context.
            using var blockScope = NewDisposeScope();
            var scores = torch.matmul(qg, kg.narrow(3, start, n).transpose(-1, -2)).to(ScalarType.Float32); // [B,kvh,g,L,n]
            if (maskG is not null)
                scores = scores.Plus(maskG.narrow(4, start, n).to(ScalarType.Float32));
            else if (start + n - 1 > past)
            {
                // causal: query i (position past+i) sees key j iff j <= past+i
                var qi = TorchScalars.Arange(past, past + l, q.device).view(l, 1);
                var kj = TorchScalars.Arange(start, start + n, q.device).view(1, n);
                scores = scores.masked_fill(kj.gt(qi), TorchScalars.NegativeInfinity);
            }
            var blockMax = scores.amax([-1], keepdim: true);
            Tensor newMax, newSum, newAcc;
            if (rowMax is null)
            {
                newMax = blockMax;
                var p = torch.exp(scores - newMax);
                newSum = p.sum([-1], keepdim: true);
                newAcc = torch.matmul(p.to(v.dtype), vg.narrow(3, start, n)).to(ScalarType.Float32);
            }
            else
            {
                newMax = torch.maximum(rowMax, blockMax);
                var correction = torch.exp(rowMax - newMax);
                var p = torch.exp(scores - newMax);
                newSum = (rowSum! * correction).Plus(p.sum([-1], keepdim: true));
                newAcc = (acc! * correction).Plus(torch.matmul(p.to(v.dtype), vg.narrow(3, start, n)).to(ScalarType.Float32));
            }
            // The running state moves to the enclosing scope; the previous state is released at once.
            acc?.Dispose();
            rowMax?.Dispose();
            rowSum?.Dispose();
            acc = newAcc.MoveToOuterDisposeScope();
            rowMax = newMax.MoveToOuterDisposeScope();
            rowSum = newSum.MoveToOuterDisposeScope();
        }
        var output = (acc! / rowSum!).to(q.dtype).view(b, heads, l, hd);
        return output.MoveToOuterDisposeScope();
    }
}
