using System.Globalization;
using System.Text;

namespace Jamba.Inference.Templates.Jinja;

/// <summary>A variable scope. Lookups walk up to the parent (template root, then render context, then globals).</summary>
internal sealed class Scope(Scope? parent)
{
    private readonly Dictionary<string, object?> _vars = new(StringComparer.Ordinal);

    public Scope? Parent { get; } = parent;

    public bool TryGet(string name, out object? value)
    {
        for (var s = this; s != null; s = s.Parent)
            if (s._vars.TryGetValue(name, out value)) return true;
        value = null;
        return false;
    }

    public void Set(string name, object? value) => _vars[name] = value;
}

/// <summary>A <c>{% macro %}</c> (or the body of a <c>{% call %}</c> block bound as <c>caller</c>).</summary>
internal sealed class Macro : IPyCallable
{
    public Macro(string name, List<MacroParam> parameters, List<Stmt> body, Scope scope, bool usesCaller, bool catchVarargs, bool catchKwargs)
    {
        Name = name;
        Parameters = parameters;
        Body = body;
        DefScope = scope;
        UsesCaller = usesCaller;
        CatchVarargs = catchVarargs;
        CatchKwargs = catchKwargs;
    }

    public string Name { get; }
    public List<MacroParam> Parameters { get; }
    public IEnumerable<string> Params => Parameters.Select(p => p.Name);
    public List<Stmt> Body { get; }
    public Scope DefScope { get; }
    public bool UsesCaller { get; }
    public bool CatchVarargs { get; }
    public bool CatchKwargs { get; }

    public object? Call(Evaluator ev, CallArguments args)
    {
        var scope = new Scope(DefScope);
        var kwargs = new List<KeyValuePair<string, object?>>(args.Keywords);
        for (int i = 0; i < Parameters.Count; i++)
        {
            var p = Parameters[i];
            int kwIndex = kwargs.FindIndex(kv => kv.Key == p.Name);
            if (i < args.Positional.Count)
            {
                // jinja2 leaves a duplicate keyword in kwargs (-> "takes no keyword argument" or **kwargs).
                scope.Set(p.Name, args.Positional[i]);
            }
            else if (kwIndex >= 0)
            {
                scope.Set(p.Name, kwargs[kwIndex].Value);
                kwargs.RemoveAt(kwIndex);
            }
            else if (p.Default != null) scope.Set(p.Name, ev.Eval(p.Default, scope));
            else scope.Set(p.Name, new Undefined($"parameter {Py.Repr(p.Name)} was not provided", name: p.Name));
        }
        if (UsesCaller)
        {
            int ci = kwargs.FindIndex(kv => kv.Key == "caller");
            if (ci >= 0)
            {
                scope.Set("caller", kwargs[ci].Value);
                kwargs.RemoveAt(ci);
            }
            else scope.Set("caller", new Undefined("No caller defined", name: "caller"));
        }
        if (CatchKwargs)
        {
            var d = new PyDict();
            foreach (var kv in kwargs) d[kv.Key] = kv.Value;
            scope.Set("kwargs", d);
        }
        else if (kwargs.Count > 0)
        {
            if (kwargs[0].Key == "caller" && UsesCaller)
                throw TemplateException.Type($"macro {Py.Repr(Name)} was invoked with two values for the special caller argument. This is most likely a bug.");
            throw TemplateException.Type($"macro {Py.Repr(Name)} takes no keyword argument {Py.Repr(kwargs[0].Key)}");
        }
        if (CatchVarargs)
            scope.Set("varargs", new PyTuple(args.Positional.Skip(Parameters.Count).ToArray()));
        else if (args.Positional.Count > Parameters.Count)
            throw TemplateException.Type($"macro {Py.Repr(Name)} takes not more than {Parameters.Count} argument(s)");
        return ev.RenderMacroBody(this, scope);
    }
}

/// <summary>
/// Executes a parsed template with jinja2 scoping rules and Python value semantics, within the budgets of a
/// <see cref="RenderContext"/>: every statement, expression and loop iteration is a step, output buffers are
/// bounded, macro and recursive-loop calls are bounded by <see cref="TemplateLimits.MaxRecursionDepth"/>, and
/// the evaluator stops with a <c>RecursionError</c> before the thread's stack runs out.
/// </summary>
internal sealed class Evaluator
{
    private readonly RenderContext _ctx;
    private readonly TemplateLimits _limits;
    private int _callDepth;
    private StringBuilder? _root;

    public Evaluator(RenderContext ctx)
    {
        _ctx = ctx;
        _limits = ctx.Limits;
    }

    private enum Flow
    {
        Normal,
        Break,
        Continue,
    }

    public string Render(List<Stmt> body, Scope root)
    {
        var sb = new StringBuilder();
        _root = sb;
        ExecBlock(body, root, sb);
        return sb.ToString();
    }

    internal string RenderMacroBody(Macro macro, Scope scope)
    {
        EnterCall();
        try
        {
            var sb = new StringBuilder();
            ExecBlock(macro.Body, scope, sb);
            return sb.ToString();
        }
        finally
        {
            _callDepth--;
        }
    }

    /// <summary>One more active macro / caller / recursive-loop call (bounded by MaxRecursionDepth).</summary>
    private void EnterCall()
    {
        if (_callDepth >= _limits.MaxRecursionDepth)
            throw new TemplateException("RecursionError",
                $"maximum recursion depth exceeded (more than {_limits.MaxRecursionDepth.ToString(CultureInfo.InvariantCulture)} nested macro, caller or recursive loop calls; TemplateLimits.MaxRecursionDepth)");
        _callDepth++;
    }

    /// <summary>Appends to an output buffer: the rendered output is bounded by MaxOutputLength, captured output by MaxStringLength.</summary>
    private void Append(StringBuilder o, string text)
    {
        if (text.Length == 0) return;
        long length = (long)o.Length + text.Length;
        if (ReferenceEquals(o, _root))
        {
            if (length > _limits.MaxOutputLength)
                throw new TemplateException("OverflowError",
                    $"rendered output too long: {length.ToString(CultureInfo.InvariantCulture)} characters, more than TemplateLimits.MaxOutputLength ({_limits.MaxOutputLength.ToString(CultureInfo.InvariantCulture)})");
        }
        else if (length > _limits.MaxStringLength)
            throw new TemplateException("OverflowError",
                $"captured output (macro, call, filter or set block) too long: {length.ToString(CultureInfo.InvariantCulture)} characters, more than TemplateLimits.MaxStringLength ({_limits.MaxStringLength.ToString(CultureInfo.InvariantCulture)})");
        _ctx.Allocate(text.Length);
        o.Append(text);
    }

    private Flow ExecBlock(List<Stmt> body, Scope scope, StringBuilder o)
    {
        RenderContext.EnsureStack();
        foreach (var s in body)
        {
            var f = Exec(s, scope, o);
            if (f != Flow.Normal) return f;
        }
        return Flow.Normal;
    }

    private Flow Exec(Stmt stmt, Scope scope, StringBuilder o)
    {
        _ctx.Step();
        try
        {
            return ExecCore(stmt, scope, o);
        }
        catch (TemplateException ex) when (ex.Line == 0)
        {
            ex.Line = stmt.Line;
            throw;
        }
        catch (Exception ex) when (ex is InvalidOperationException or InvalidCastException or ArgumentException or OverflowException or FormatException)
        {
            throw new TemplateException(ex is OverflowException ? "OverflowError" : "TemplateRuntimeError", ex.Message, stmt.Line, ex);
        }
    }

    private Flow ExecCore(Stmt stmt, Scope scope, StringBuilder o)
    {
        switch (stmt)
        {
            case TextStmt t:
                Append(o, t.Text);
                return Flow.Normal;
            case PrintStmt p:
                Append(o, Py.Str(Eval(p.Value, scope)));
                return Flow.Normal;
            case IfStmt i:
                foreach (var (test, body) in i.Branches)
                    if (Py.Truthy(Eval(test, scope))) return ExecBlock(body, scope, o);
                return i.Else != null ? ExecBlock(i.Else, scope, o) : Flow.Normal;
            case ForStmt f:
                RunLoop(f, scope, o, Eval(f.Iter, scope), 0);
                return Flow.Normal;
            case SetStmt s:
                Assign(s.Target, Eval(s.Value, scope), scope);
                return Flow.Normal;
            case SetBlockStmt sb:
                {
                    var buf = new StringBuilder();
                    ExecBlock(sb.Body, new Scope(scope), buf);
                    object? value = buf.ToString();
                    if (sb.Filter != null) value = ApplyFilterChain(sb.Filter, value, scope);
                    Assign(sb.Target, value, scope);
                    return Flow.Normal;
                }
            case MacroStmt m:
                scope.Set(m.Name, new Macro(m.Name, m.Params, m.Body, scope, m.UsesCaller, m.UsesVarargs, m.UsesKwargs));
                return Flow.Normal;
            case CallBlockStmt cb:
                {
                    var caller = new Macro("caller", cb.Params, cb.Body, scope, cb.UsesCaller, cb.UsesVarargs, cb.UsesKwargs);
                    var func = Eval(cb.Call.Func, scope);
                    var args = EvalArgs(cb.Call.Args, scope);
                    args.Keywords.Add(new("caller", caller));
                    Append(o, Py.Str(Invoke(func, args)));
                    return Flow.Normal;
                }
            case FilterBlockStmt fb:
                {
                    var buf = new StringBuilder();
                    ExecBlock(fb.Body, new Scope(scope), buf);
                    Append(o, Py.Str(ApplyFilterChain(fb.Filter, buf.ToString(), scope)));
                    return Flow.Normal;
                }
            case WithStmt w:
                {
                    var inner = new Scope(scope);
                    foreach (var (target, value) in w.Assignments) Assign(target, Eval(value, scope), inner);
                    return ExecBlock(w.Body, inner, o);
                }
            case InlineBlockStmt ib:
                return ExecBlock(ib.Body, ib.NewScope ? new Scope(scope) : scope, o);
            case BreakStmt:
                return Flow.Break;
            case ContinueStmt:
                return Flow.Continue;
        }
        throw new InvalidOperationException("unknown statement " + stmt.GetType().Name);
    }

    private object? ApplyFilterChain(FilterExpr f, object? value, Scope scope)
    {
        RenderContext.EnsureStack();
        object? inner = f.Value is FilterExpr prev ? ApplyFilterChain(prev, value, scope) : value;
        return Builtins.CallFilter(this, f.Name, inner, EvalArgs(f.Args, scope));
    }

    private void RunLoop(ForStmt f, Scope scope, StringBuilder o, object? iterable, int depth0)
    {
        var items = Py.ToList(iterable);
        if (f.Filter != null)
        {
            var kept = new List<object?>();
            foreach (var item in items)
            {
                _ctx.Step();
                var fs = new Scope(scope);
                Assign(f.Target, item, fs);
                if (Py.Truthy(Eval(f.Filter, fs))) kept.Add(item);
            }
            items = kept;
        }
        if (items.Count == 0)
        {
            if (f.Else != null) ExecBlock(f.Else, new Scope(scope), o);
            return;
        }
        Func<object?, object?>? recurse = null;
        if (f.Recursive)
            recurse = it =>
            {
                EnterCall();
                try
                {
                    var buf = new StringBuilder();
                    RunLoop(f, scope, buf, it, depth0 + 1);
                    return buf.ToString();
                }
                finally
                {
                    _callDepth--;
                }
            };
        var loop = new LoopContext(items, depth0, recurse);
        for (int i = 0; i < items.Count; i++)
        {
            _ctx.Step();
            loop.Index0 = i;
            var iterScope = new Scope(scope);
            Assign(f.Target, items[i], iterScope);
            iterScope.Set("loop", loop);
            if (ExecBlock(f.Body, iterScope, o) == Flow.Break) break;
        }
    }

    private void Assign(Expr target, object? value, Scope scope)
    {
        switch (target)
        {
            case NameExpr n:
                scope.Set(n.Name, value);
                return;
            case TupleExpr t:
                {
                    var items = Py.ToList(value);
                    if (items.Count < t.Items.Count)
                        throw TemplateException.Value($"not enough values to unpack (expected {t.Items.Count}, got {items.Count})");
                    if (items.Count > t.Items.Count)
                        throw TemplateException.Value($"too many values to unpack (expected {t.Items.Count})");
                    for (int i = 0; i < items.Count; i++) Assign(t.Items[i], items[i], scope);
                    return;
                }
            case NsRefExpr ns:
                {
                    if (!scope.TryGet(ns.Name, out var obj) || obj is not Namespace nso)
                        throw TemplateException.Runtime("cannot assign attribute on non-namespace object");
                    nso.Set(ns.Attr, value);
                    return;
                }
        }
        throw TemplateException.Runtime("invalid assignment target");
    }

    public object? Lookup(string name, Scope scope) =>
        scope.TryGet(name, out var v) ? v : Undefined.ForName(name);

    public object? Eval(Expr e, Scope scope)
    {
        _ctx.Step();
        RenderContext.EnsureStack();
        switch (e)
        {
            case ConstExpr c: return c.Value;
            case NameExpr n: return Lookup(n.Name, scope);
            case GetAttrExpr ga: return Py.GetAttr(Eval(ga.Obj, scope), ga.Attr);
            case GetItemExpr gi:
                {
                    var obj = Eval(gi.Obj, scope);
                    if (gi.Key is SliceExpr sl)
                    {
                        if (obj is Undefined u) throw u.Fail();
                        return Py.Slice(obj, Opt(sl.Start, scope), Opt(sl.Stop, scope), Opt(sl.Step, scope));
                    }
                    return Py.GetItem(obj, Eval(gi.Key, scope));
                }
            case ListExpr l: return l.Items.Select(x => Eval(x, scope)).ToList();
            case TupleExpr t: return new PyTuple(t.Items.Select(x => Eval(x, scope)).ToArray());
            case DictExpr d:
                {
                    var dict = new PyDict();
                    foreach (var (k, v) in d.Items)
                    {
                        var key = Eval(k, scope);
                        if (key == null || !Py.IsHashable(key) || key is Undefined)
                            throw TemplateException.Type(key == null ? "None keys are not supported by this renderer" : $"unhashable type: {Py.Repr(Py.TypeName(key))}");
                        dict[key] = Eval(v, scope);
                    }
                    return dict;
                }
            case CallExpr call: return Invoke(Eval(call.Func, scope), EvalArgs(call.Args, scope));
            case FilterExpr f: return Builtins.CallFilter(this, f.Name, f.Value == null ? null : Eval(f.Value, scope), EvalArgs(f.Args, scope));
            case TestExpr t: return Builtins.CallTest(this, t.Name, Eval(t.Value, scope), EvalArgs(t.Args, scope));
            case UnaryExpr u:
                {
                    var v = Eval(u.Operand, scope);
                    return u.Op switch
                    {
                        "not" => !Py.Truthy(v),
                        "-" => Py.Neg(v),
                        _ => Py.Pos(v),
                    };
                }
            case BinaryExpr b:
                {
                    var left = Eval(b.Left, scope);
                    switch (b.Op)
                    {
                        case "and": return Py.Truthy(left) ? Eval(b.Right, scope) : left;
                        case "or": return Py.Truthy(left) ? left : Eval(b.Right, scope);
                    }
                    var right = Eval(b.Right, scope);
                    return b.Op switch
                    {
                        "+" => Py.Add(left, right),
                        "-" => Py.Sub(left, right),
                        "*" => Py.Mul(left, right),
                        "/" => Py.TrueDiv(left, right),
                        "//" => Py.FloorDiv(left, right),
                        "%" => Py.Mod(left, right),
                        "**" => Py.Pow(left, right),
                        _ => throw new InvalidOperationException("bad operator " + b.Op),
                    };
                }
            case CompareExpr c:
                {
                    var left = Eval(c.First, scope);
                    foreach (var (op, operand) in c.Ops)
                    {
                        var right = Eval(operand, scope);
                        if (!CompareOp(op, left, right)) return false;
                        left = right;
                    }
                    return true;
                }
            case ConcatExpr cc:
                {
                    var parts = new string[cc.Parts.Count];
                    long length = 0;
                    for (int i = 0; i < parts.Length; i++)
                    {
                        parts[i] = Py.Str(Eval(cc.Parts[i], scope));
                        length += parts[i].Length;
                    }
                    _ctx.Built(length, "concatenated string");
                    return string.Concat(parts);
                }
            case CondExpr ce:
                if (Py.Truthy(Eval(ce.Test, scope))) return Eval(ce.Then, scope);
                return ce.Else != null
                    ? Eval(ce.Else, scope)
                    : new Undefined($"the inline if-expression on line {ce.Line} evaluated to false and no else section was defined.");
            case NsRefExpr ns:
                return Py.GetAttr(Lookup(ns.Name, scope), ns.Attr);
            case SliceExpr:
                throw TemplateException.Runtime("slice outside of a subscript");
        }
        throw new InvalidOperationException("unknown expression " + e.GetType().Name);
    }

    private object? Opt(Expr? e, Scope scope) => e == null ? null : Eval(e, scope);

    public static bool CompareOp(string op, object? a, object? b) => op switch
    {
        "==" => Py.Equal(a, b),
        "!=" => !Py.Equal(a, b),
        "<" => Py.Compare(a, b, "<") < 0,
        "<=" => Py.Compare(a, b, "<=") <= 0,
        ">" => Py.Compare(a, b, ">") > 0,
        ">=" => Py.Compare(a, b, ">=") >= 0,
        "in" => Py.Contains(b, a),
        "notin" => !Py.Contains(b, a),
        _ => throw new InvalidOperationException("bad comparison " + op),
    };

    public CallArguments EvalArgs(CallArgsExpr a, Scope scope)
    {
        var args = new CallArguments();
        foreach (var x in a.Args) args.Positional.Add(Eval(x, scope));
        if (a.DynArgs != null) args.Positional.AddRange(Py.Iterate(Eval(a.DynArgs, scope)));
        foreach (var (name, value) in a.Kwargs) args.Keywords.Add(new(name, Eval(value, scope)));
        if (a.DynKwargs != null)
        {
            var d = Eval(a.DynKwargs, scope);
            if (d is not PyDict dict) throw TemplateException.Type($"argument after ** must be a mapping, not {Py.TypeName(d)}");
            foreach (var kv in dict)
            {
                if (kv.Key is not string k) throw TemplateException.Type("keywords must be strings");
                args.Keywords.Add(new(k, kv.Value));
            }
        }
        return args;
    }

    public object? Invoke(object? func, CallArguments args)
    {
        if (func is Undefined u) throw u.Fail();
        if (func is Macro or LoopContext) return ((IPyCallable)func).Call(this, args); // output already counted
        if (func is IPyCallable c)
        {
            var result = c.Call(this, args);
            if (func is not BoundMethod bm || !ReferenceEquals(result, bm.Target)) _ctx.BuiltValue(result);
            return result;
        }
        throw TemplateException.Type($"{Py.Repr(Py.TypeName(func))} object is not callable");
    }
}
