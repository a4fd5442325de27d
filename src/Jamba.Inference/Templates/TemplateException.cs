namespace Jamba.Inference.Templates;

/// <summary>
/// Raised when a chat template fails to parse or to render. Mirrors the Python exception that
/// jinja2 (inside Hugging Face transformers) would raise for the same template and inputs.
/// </summary>
public sealed class TemplateException : Exception
{
    /// <summary>Creates a template exception.</summary>
    /// <param name="errorType">Python exception class name (see <see cref="ErrorType"/>).</param>
    /// <param name="rawMessage">The message exactly as Python's <c>str(exc)</c> would give it.</param>
    /// <param name="line">1-based template line, or 0 when unknown.</param>
    /// <param name="inner">Optional inner exception.</param>
    public TemplateException(string errorType, string rawMessage, int line = 0, Exception? inner = null)
        : base(rawMessage, inner)
    {
        ErrorType = errorType;
        RawMessage = rawMessage;
        Line = line;
    }

    /// <summary>
    /// The Python exception class this corresponds to: <c>TemplateSyntaxError</c>,
    /// <c>TemplateError</c> (from <c>raise_exception</c>), <c>UndefinedError</c>, <c>TypeError</c>,
    /// <c>SecurityError</c>, <c>ValueError</c>, <c>ZeroDivisionError</c>, <c>TemplateRuntimeError</c>, ...
    /// Exceeding a <see cref="TemplateLimits"/> bound gives <c>TemplateSyntaxError</c> (nesting),
    /// <c>RecursionError</c> (recursion, value nesting, thread stack), <c>OverflowError</c> (lengths, integer
    /// sizes) or <c>TimeoutError</c> (steps); their messages name the limit.
    /// </summary>
    public string ErrorType { get; }

    /// <summary>The bare message, identical to Python's <c>str(exc)</c> (no line information).</summary>
    public string RawMessage { get; }

    /// <summary>1-based line of the template where the error was detected; 0 if unknown.</summary>
    public int Line { get; internal set; }

    /// <summary>Message including the error type and, when known, the template line ("line N").</summary>
    public override string Message =>
        Line > 0 ? $"{ErrorType}: {RawMessage} (template line {Line})" : $"{ErrorType}: {RawMessage}";

    internal static TemplateException Syntax(string message, int line) => new("TemplateSyntaxError", message, line);
    internal static TemplateException Type(string message) => new("TypeError", message);
    internal static TemplateException Value(string message) => new("ValueError", message);
    internal static TemplateException Runtime(string message) => new("TemplateRuntimeError", message);
}
