namespace Jamba.Inference.Templates;

/// <summary>
/// Resource limits applied while parsing and rendering a <see cref="ChatTemplate"/>. A chat template comes
/// from a downloaded checkpoint and is untrusted: these bounds turn a hostile or broken template (deep
/// nesting, runaway recursion, exponential string growth, endless loops) into a <see cref="TemplateException"/>
/// instead of a stack overflow, an out-of-memory condition or a hang. The defaults are far above what real
/// chat templates need (they nest fewer than 20 levels and render a 1000-message conversation in well under
/// 1% of <see cref="MaxSteps"/>); raise them with <c>new TemplateLimits { ... }</c> and
/// <see cref="ChatTemplate.WithLimits"/> or <see cref="ChatTemplate.Parse(string, TemplateLimits?)"/>.
/// </summary>
/// <remarks>
/// Error types: nesting beyond <see cref="MaxNestingDepth"/> is a <c>TemplateSyntaxError</c> raised by
/// <c>Parse</c>; recursion beyond <see cref="MaxRecursionDepth"/> (and values nested too deeply to print,
/// compare or serialise) a <c>RecursionError</c>; a string, sequence or output over its length limit an
/// <c>OverflowError</c> (the error jinja2's sandbox raises for <c>range</c> beyond its <c>MAX_RANGE</c>);
/// a render that exceeds <see cref="MaxSteps"/> a <c>TimeoutError</c>. Independently of these counters the
/// engine stops with a <c>RecursionError</c> before the thread's stack runs out, so rendering on a thread
/// with a small stack fails cleanly too. Instances are immutable and may be shared between threads.
/// </remarks>
public sealed class TemplateLimits
{
    /// <summary>Default value of <see cref="MaxNestingDepth"/>: 200.</summary>
    public const int DefaultMaxNestingDepth = 200;

    /// <summary>Default value of <see cref="MaxRecursionDepth"/>: 100.</summary>
    public const int DefaultMaxRecursionDepth = 100;

    /// <summary>Default value of <see cref="MaxOutputLength"/>: 16 Mi characters (16,777,216).</summary>
    public const int DefaultMaxOutputLength = 16 * 1024 * 1024;

    /// <summary>Default value of <see cref="MaxStringLength"/>: 16 Mi characters or items (16,777,216).</summary>
    public const int DefaultMaxStringLength = 16 * 1024 * 1024;

    /// <summary>Default value of <see cref="MaxAllocatedLength"/>: 256 Mi characters or items (268,435,456).</summary>
    public const long DefaultMaxAllocatedLength = 256L * 1024 * 1024;

    /// <summary>Default value of <see cref="MaxSteps"/>: 10,000,000.</summary>
    public const long DefaultMaxSteps = 10_000_000;

    /// <summary>The default limits (the values of the <c>Default…</c> constants).</summary>
    public static TemplateLimits Default { get; } = new();

    /// <summary>
    /// Deepest nesting the parser accepts: block statements inside each other (<c>{% if %}</c>,
    /// <c>{% for %}</c>, <c>{% macro %}</c>, ...), brackets, calls, subscripts, unary operators and conditional
    /// expressions, and the length of left-associative chains (<c>a + b + c</c>, <c>a.b.c</c>,
    /// <c>x|f|g</c>), which the evaluator walks recursively. Default 200: real templates nest fewer than 20
    /// levels, and 200 keeps parsing and rendering well inside a default 1 MB thread stack.
    /// </summary>
    public int MaxNestingDepth { get; init; } = DefaultMaxNestingDepth;

    /// <summary>
    /// Deepest chain of macro calls (including <c>caller()</c>) and recursive-loop calls (<c>loop(...)</c>)
    /// that may be active at once. Default 100: recursive macros in chat templates follow the nesting of a
    /// JSON value (a tool's parameter schema), a few levels deep.
    /// </summary>
    public int MaxRecursionDepth { get; init; } = DefaultMaxRecursionDepth;

    /// <summary>
    /// Longest rendered output, in UTF-16 characters. Default 16 Mi (about 4 million tokens): 16 times the
    /// largest Jamba context (256K tokens, roughly 1 MB of text), so no usable prompt comes close.
    /// </summary>
    public int MaxOutputLength { get; init; } = DefaultMaxOutputLength;

    /// <summary>
    /// Longest single string (UTF-16 characters) or list/tuple/dict (items) a template may build by
    /// concatenation, repetition (<c>'a' * n</c>), padding (<c>center</c>, <c>ljust</c>, <c>zfill</c>,
    /// <c>indent</c>, format widths and precisions), <c>join</c>, <c>replace</c>, <c>tojson</c> or
    /// capturing output (<c>{% set %}…{% endset %}</c>, macro bodies). Default 16 Mi, as
    /// <see cref="MaxOutputLength"/>: a part of a prompt is never longer than the prompt.
    /// </summary>
    public int MaxStringLength { get; init; } = DefaultMaxStringLength;

    /// <summary>
    /// Budget for the sum of the lengths of every string and sequence built during one render (the values
    /// counted by <see cref="MaxStringLength"/> plus the text written to the output), which bounds the
    /// memory a render can tie up even when each value is under <see cref="MaxStringLength"/>.
    /// Default 256 Mi (at most about 512 MB of UTF-16 text): 16 times <see cref="MaxOutputLength"/>, room for
    /// a maximal prompt built through several macro levels and string accumulation.
    /// </summary>
    public long MaxAllocatedLength { get; init; } = DefaultMaxAllocatedLength;

    /// <summary>
    /// Work budget of one render: one step per executed statement, evaluated expression and loop iteration,
    /// plus one per sequence item that a filter, test, method or operator visits (one per 64 characters of
    /// strings it scans, and (n/64)²/16 for big-integer arithmetic on n bits). Default 10,000,000, which a
    /// 1000-message conversation uses a few percent of, and which ends runaway loops
    /// (<c>{% for a in range(100000) %}{% for b in range(100000) %}</c>) within a second or two.
    /// </summary>
    public long MaxSteps { get; init; } = DefaultMaxSteps;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> when a limit is not positive.</summary>
    internal TemplateLimits Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxNestingDepth, 1, nameof(MaxNestingDepth));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRecursionDepth, 1, nameof(MaxRecursionDepth));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxOutputLength, 1, nameof(MaxOutputLength));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxStringLength, 1, nameof(MaxStringLength));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxAllocatedLength, 1, nameof(MaxAllocatedLength));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxSteps, 1, nameof(MaxSteps));
        return this;
    }
}
