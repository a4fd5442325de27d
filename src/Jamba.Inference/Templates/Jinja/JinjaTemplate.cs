namespace Jamba.Inference.Templates.Jinja;

/// <summary>
/// A compiled jinja2 template rendered as transformers does:
/// <c>ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, loopcontrols])</c>
/// with HF's <c>tojson</c>, <c>raise_exception</c> and <c>strftime_now</c>.
/// </summary>
internal sealed class JinjaTemplate
{
    private readonly List<Stmt> _body;

    private JinjaTemplate(List<Stmt> body) => _body = body;

    public static JinjaTemplate Parse(string source, TemplateLimits? limits = null) =>
        new(Parser.Parse(source, (limits ?? TemplateLimits.Default).MaxNestingDepth));

    /// <summary>Renders with the given (already converted) Python values as template variables.</summary>
    public string Render(IEnumerable<KeyValuePair<string, object?>> variables, Func<DateTime>? now = null,
        TemplateLimits? limits = null, CancellationToken cancellationToken = default)
    {
        var ctx = new RenderContext(limits ?? TemplateLimits.Default, cancellationToken);
        return Render(variables, now, ctx);
    }

    /// <summary>Renders within the budgets of <paramref name="ctx"/> (which keeps the counts afterwards).</summary>
    public string Render(IEnumerable<KeyValuePair<string, object?>> variables, Func<DateTime>? now, RenderContext ctx)
    {
        ctx.Token.ThrowIfCancellationRequested();
        using var active = ctx.Activate();
        var globals = new Scope(null);
        Builtins.AddGlobals(globals, now ?? (() => DateTime.Now));
        var context = new Scope(globals);
        foreach (var kv in variables) context.Set(kv.Key, kv.Value);
        var root = new Scope(context);
        return new Evaluator(ctx).Render(_body, root);
    }
}
