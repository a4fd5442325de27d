using System.Runtime.Intrinsics;
using Jamba.Inference.Modeling;
using Xunit;

namespace Jamba.Inference.Tests;

/// <summary>The vector <c>exp</c> of the scan and decode kernels against <see cref="Math.Exp"/>.</summary>
public sealed class FastMathTests
{
    [Fact]
    public void Exp_is_within_two_ulp_over_the_float_range()
    {
        var random = new Random(5);
        double worst = 0;
        for (int i = 0; i < 20000; i++)
        {
            var lanes = new float[16];
            for (int k = 0; k < 16; k++) lanes[k] = (float)(random.NextDouble() * 170 - 86); // [-86, 84]
            var e = FastMath.Exp(Vector512.Create(lanes));
            for (int k = 0; k < 16; k++)
            {
                double exact = Math.Exp(lanes[k]);
                worst = Math.Max(worst, Math.Abs(e[k] - exact) / exact);
            }
        }
        Assert.True(worst < 2.4e-7, $"largest relative error {worst:E2}"); // 2 ulp of fp32 = 2.4e-7
    }

    [Fact]
    public void Exp_clamps_instead_of_overflowing()
    {
        var e = FastMath.Exp(Vector512.Create(-1000f));
        Assert.True(e[0] >= 0 && e[0] < 1.2e-38f);
        var big = FastMath.Exp(Vector512.Create(1000f));
        Assert.True(float.IsFinite(big[0]) && big[0] > 1e38f);
        Assert.Equal(1f, FastMath.Exp(Vector512<float>.Zero)[0]);
    }

    [Fact]
    public void Softplus_is_within_three_ulp_and_follows_pytorchs_threshold()
    {
        var random = new Random(7);
        double worst = 0;
        var lanes = new float[16];
        for (int i = 0; i < 20000; i++)
        {
            for (int k = 0; k < 16; k++) lanes[k] = (float)(random.NextDouble() * 60 - 40); // [-40, 20]
            if (i == 0) lanes = [0f, -1e-8f, 1e-8f, -87f, -100f, 19.99f, 20f, 20.01f, 1e6f, -1e-30f, 0.5f, -0.5f, 1f, -1f, 5f, -5f];
            var sp = FastMath.Softplus(Vector512.Create(lanes));
            for (int k = 0; k < 16; k++)
            {
                double x = lanes[k];
                double u = Math.Exp(-Math.Abs(x)), w = 1 + u;
                double log1p = w == 1 ? u : Math.Log(w) * u / (w - 1); // log1p in double, compensated
                double exact = x > 20 ? x : Math.Max(x, 0) + log1p;
                if (exact < 1.2e-38) continue; // below the normal range exp's clamp takes over
                worst = Math.Max(worst, Math.Abs(sp[k] - exact) / exact);
            }
        }
        Assert.True(worst < 3.6e-7, $"largest relative error {worst:E2}"); // 3 ulp of fp32
        var big = FastMath.Softplus(Vector512.Create(25f));
        Assert.Equal(25f, big[0]);
    }
}
