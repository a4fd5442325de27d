using System.Globalization;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace Jamba.Inference.Templates.Jinja;

/// <summary>
/// Budgets of one render (see <see cref="TemplateLimits"/>): steps, built lengths, cancellation. The render
/// in progress on a thread is <see cref="Current"/>, so that the static Python helpers (<see cref="Py"/>,
/// <see cref="Methods"/>, <see cref="Builtins"/>) can charge work without threading the evaluator through
/// every call. Outside a render, <see cref="Current"/> is a shared instance that only checks per-value
/// limits (with the default limits) and counts nothing.
/// </summary>
internal sealed class RenderContext
{
    /// <summary>Deepest nesting of values that repr, str, tojson, comparison and hashing follow (Python's recursion limit).</summary>
    public const int MaxValueDepth = 1000;

    /// <summary>CPython's <c>sys.get_int_max_str_digits()</c> default: longest decimal int text converted either way.</summary>
    public const int MaxIntDigits = 4300;

    /// <summary>Largest integer the arithmetic operators produce, in bits (about 9864 digits: any int Python would still print can be computed).</summary>
    public const int MaxIntBits = 32768;

    [ThreadStatic]
    private static RenderContext? t_current;

    private static readonly RenderContext Idle = new(TemplateLimits.Default, CancellationToken.None, counting: false);

    private readonly bool _counting;
    private long _steps;
    private long _allocated;
    private long _nextCancelCheck = 1024;

    public RenderContext(TemplateLimits limits, CancellationToken token, bool counting = true)
    {
        Limits = limits;
        Token = token;
        _counting = counting;
    }

    public TemplateLimits Limits { get; }

    public CancellationToken Token { get; }

    public long Steps => _steps;

    public long Allocated => _allocated;

    public static RenderContext Current => t_current ?? Idle;

    /// <summary>Makes this the current render of the thread until the returned scope is disposed.</summary>
    public ActiveScope Activate()
    {
        var previous = t_current;
        t_current = this;
        return new ActiveScope(previous);
    }

    internal readonly struct ActiveScope(RenderContext? previous) : IDisposable
    {
        public void Dispose() => t_current = previous;
    }

    // ---------------------------------------------------------------- steps

    /// <summary>One unit of work (a statement, an expression, a loop iteration).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Step()
    {
        if (!_counting) return;
        if (++_steps >= _nextCancelCheck) CheckSteps();
    }

    /// <summary><paramref name="n"/> units of work (items visited by a builtin).</summary>
    public void Charge(long n)
    {
        if (!_counting || n <= 0) return;
        _steps += n;
        if (_steps >= _nextCancelCheck) CheckSteps();
    }

    /// <summary>Work of scanning a string of <paramref name="length"/> characters (one step per 64).</summary>
    public void ChargeChars(long length) => Charge(length >> 6);

    private void CheckSteps()
    {
        _nextCancelCheck = _steps + 1024;
        Token.ThrowIfCancellationRequested();
        if (_steps > Limits.MaxSteps)
            throw new TemplateException("TimeoutError",
                $"template render exceeded {Limits.MaxSteps.ToString(CultureInfo.InvariantCulture)} steps (TemplateLimits.MaxSteps); the template loops too long or without end");
    }

    // ---------------------------------------------------------------- lengths

    /// <summary>
    /// Checks, before it is built, a string of <paramref name="length"/> characters (or a sequence of that many
    /// items) against <see cref="TemplateLimits.MaxStringLength"/> and charges it to
    /// <see cref="TemplateLimits.MaxAllocatedLength"/>. <paramref name="what"/> names the value ("repeated string").
    /// </summary>
    public void Built(long length, string what, string unit = "characters")
    {
        if (length > Limits.MaxStringLength)
            throw new TemplateException("OverflowError",
                $"{what} too long: {length.ToString(CultureInfo.InvariantCulture)} {unit}, more than TemplateLimits.MaxStringLength ({Limits.MaxStringLength.ToString(CultureInfo.InvariantCulture)})");
        Allocate(length);
    }

    /// <summary>Charges <paramref name="length"/> to <see cref="TemplateLimits.MaxAllocatedLength"/>.</summary>
    public void Allocate(long length)
    {
        if (!_counting || length <= 0) return;
        _allocated += length;
        if (_allocated > Limits.MaxAllocatedLength)
            throw new TemplateException("OverflowError",
                $"template built more than {Limits.MaxAllocatedLength.ToString(CultureInfo.InvariantCulture)} characters and items of strings and sequences in total (TemplateLimits.MaxAllocatedLength)");
    }

    /// <summary><see cref="Built(long, string, string)"/> for a value just produced by a filter, method or operator.</summary>
    public void BuiltValue(object? value)
    {
        switch (value)
        {
            case string s: Built(s.Length, "string"); break;
            case List<object?> l: Built(l.Count, "list", "items"); break;
            case PyTuple t: Built(t.Items.Length, "tuple", "items"); break;
            case PyDict d: Built(d.Count, "dict", "items"); break;
        }
    }

    // ---------------------------------------------------------------- integers

    /// <summary>Fails when an integer result would have more than <see cref="MaxIntBits"/> bits; charges big-integer work.</summary>
    public void CheckIntBits(long bits)
    {
        if (bits > MaxIntBits)
            throw new TemplateException("OverflowError",
                $"integer too large: {bits.ToString(CultureInfo.InvariantCulture)} bits, more than the {MaxIntBits.ToString(CultureInfo.InvariantCulture)} this renderer computes");
        // Big-integer multiplication and conversion are superlinear: charge (limbs^2)/16 steps.
        if (bits > 64) Charge(Math.Max(1, (bits >> 6) * (bits >> 6) >> 4));
    }

    public static long BitLength(BigInteger v) => v.IsZero ? 0 : (long)BigInteger.Abs(v).GetBitLength();

    // ---------------------------------------------------------------- stack

    /// <summary>Stops before the thread's stack runs out (whatever its size): a <c>RecursionError</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void EnsureStack()
    {
        if (!RuntimeHelpers.TryEnsureSufficientExecutionStack()) throw StackExhausted();
    }

    public static TemplateException StackExhausted() =>
        new("RecursionError", "maximum recursion depth exceeded (the template nests too deeply for the thread's stack)");

    /// <summary>The value-nesting guard of repr / tojson / comparison: Python's RecursionError text.</summary>
    public static void EnsureValueDepth(int depth, string where)
    {
        if (depth > MaxValueDepth || !RuntimeHelpers.TryEnsureSufficientExecutionStack())
            throw new TemplateException("RecursionError", "maximum recursion depth exceeded" + where);
    }
}
