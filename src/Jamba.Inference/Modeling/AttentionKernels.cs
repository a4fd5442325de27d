using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Modeling;

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

    /// <summary>Bytes of fp32 scores one block may hold (the block shrinks for long query chunks).</summary>
    public const long ScoreBudgetBytes = 32L << 20;

    /// <summary>Attends <paramref name="q"/> to <paramref name="k"/>/<paramref name="v"/>; <paramref name="mask"/> (additive,
    /// <c>[B, 1, L, S]</c>) replaces the implicit causal rule when given (padded batches).</summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        long b = q.shape[0], heads = q.shape[1], l = q.shape[2], hd = q.shape[3];
        long kvHeads = k.shape[1], s = k.shape[2];
        long groups = heads / kvHeads;
        double scale = 1.0 / Math.Sqrt(hd);
        long past = s - l;
        if (mask is null && past == 0 && l > 1 && groups == 1)
            return nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true).MoveToOuterDisposeScope();

        // [B, kvh, g, L, hd] queries against [B, kvh, 1, S, hd] keys: broadcasting shares each K/V head.
        var qg = q.view(b, kvHeads, groups, l, hd).Times(scale);
        var kg = k.unsqueeze(2);
        var vg = v.unsqueeze(2);
        var maskG = mask?.unsqueeze(1);                                           // [B, 1, 1, L, S]
        Tensor? acc = null, rowMax = null, rowSum = null;
        long block = Math.Clamp(ScoreBudgetBytes / Math.Max(1, b * heads * l * 4), 256, KeyBlock);
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
