using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Kernels;

/// <summary>
/// Rooted <see cref="Scalar"/>s and Scalar-safe tensor helpers.
/// </summary>
/// <remarks>
/// TorchSharp 0.107 frees a <see cref="Scalar"/> in its finalizer, and a Scalar made on the fly — the implicit conversion
/// of a number (<c>t * 0.5</c>, <c>masked_fill(m, float.NegativeInfinity)</c>, <c>arange(a, b)</c>) or the <c>alpha = 1</c>
/// that <c>Tensor.add(Tensor)</c> (and so <c>a + b</c>) creates inside TorchSharp — is unreachable once its handle has
/// been read. A garbage collection on any other thread during the native call can then free it while libtorch reads it:
/// "Expected false to be true … toFloat", or silently a wrong value. (The engine's decode under four concurrent long
/// requests hit it.) So the library passes only Scalars that stay reachable for the whole call: the statics here, or a
/// local created with <c>using var s = x.ToScalar()</c>. <c>ScalarLifetimeTests</c> checks the source for violations.
/// </remarks>
internal static class TorchScalars
{
    /// <summary>1 (the <c>alpha</c> of plain additions).</summary>
    public static readonly Scalar One = 1.ToScalar();

    /// <summary>0.</summary>
    public static readonly Scalar Zero = 0.ToScalar();

    /// <summary>−∞ (fp32), for masking scores.</summary>
    public static readonly Scalar NegativeInfinity = float.NegativeInfinity.ToScalar();

    /// <summary>20: the threshold above which <c>softplus(x) = x</c> (PyTorch's default).</summary>
    private static readonly Scalar SoftplusThreshold = 20.0.ToScalar();

    /// <summary><c>a + b</c>.</summary>
    public static Tensor Plus(this Tensor a, Tensor b) => a.add(b, One);

    /// <summary><c>a += b</c>, in place.</summary>
    public static Tensor PlusInPlace(this Tensor a, Tensor b) => a.add_(b, One);

    /// <summary><c>a · value</c>.</summary>
    public static Tensor Times(this Tensor a, double value)
    {
        using var s = value.ToScalar();
        return a.mul(s);
    }

    /// <summary><c>a · value</c>, in place.</summary>
    public static Tensor TimesInPlace(this Tensor a, double value)
    {
        using var s = value.ToScalar();
        return a.mul_(s);
    }

    /// <summary><c>a + value</c>.</summary>
    public static Tensor Plus(this Tensor a, double value)
    {
        using var s = value.ToScalar();
        return a.add(s, One);
    }

    /// <summary><c>a += value</c>, in place.</summary>
    public static Tensor PlusInPlace(this Tensor a, double value)
    {
        using var s = value.ToScalar();
        return a.add_(s, One);
    }

    /// <summary>Elements where <paramref name="mask"/> is true replaced by <paramref name="value"/>.</summary>
    public static Tensor MaskedFill(this Tensor a, Tensor mask, double value)
    {
        using var s = value.ToScalar();
        return a.masked_fill(mask, s);
    }

    /// <summary><c>[start, end)</c> as int64.</summary>
    public static Tensor Arange(long start, long end, Device device)
    {
        using var s = start.ToScalar();
        using var e = end.ToScalar();
        using var step = 1L.ToScalar();
        return torch.arange(s, e, step, ScalarType.Int64, device);
    }

    /// <summary>PyTorch's <c>softplus(x)</c> (β = 1, threshold 20): <c>x</c> above the threshold, else <c>log1p(exp(x))</c>.</summary>
    public static Tensor Softplus(Tensor x)
    {
        using var scope = NewDisposeScope();
        return torch.where(x.gt(SoftplusThreshold), x, torch.log1p(torch.exp(x))).MoveToOuterDisposeScope();
    }
}
