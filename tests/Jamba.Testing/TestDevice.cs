using Jamba.Inference.Modeling;

namespace Jamba.Testing;

/// <summary>The device the device-path model tests run on: <c>JAMBA_TEST_DEVICE</c> (<c>cpu</c>, <c>cuda</c>, <c>cuda:N</c>),
/// <c>cpu</c> when unset. The CPU-kernel rows always run on the CPU; <c>scripts/gpu-check.sh</c> sets <c>cuda</c> to run the
/// Golden and Generation theories' device path on a GPU.</summary>
public static class TestDevice
{
    /// <summary>The environment variable that names the device.</summary>
    public const string Variable = "JAMBA_TEST_DEVICE";

    /// <summary>The device string, validated as <see cref="ModelOptions.Device"/> validates it (lower case, trimmed).</summary>
    /// <exception cref="ArgumentException">The variable names something other than <c>cpu</c>, <c>cuda</c> or <c>cuda:N</c>.</exception>
    public static string Name => Parse(Environment.GetEnvironmentVariable(Variable));

    /// <summary>The device <paramref name="value"/> names (null or blank: <c>cpu</c>).</summary>
    /// <exception cref="ArgumentException"><paramref name="value"/> is not <c>cpu</c>, <c>cuda</c> or <c>cuda:N</c>.</exception>
    public static string Parse(string? value)
    {
        if (string.IsNullOrWhiteSpace(value)) return "cpu";
        try
        {
            return new ModelOptions { Device = value }.Device;
        }
        catch (ArgumentException ex)
        {
            throw new ArgumentException($"{Variable} must be 'cpu', 'cuda' or 'cuda:N'; found '{value}'.", ex);
        }
    }
}
