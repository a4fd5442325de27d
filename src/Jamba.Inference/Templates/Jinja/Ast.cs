namespace Jamba.Inference.Templates.Jinja;

// ------------------------------------------------------------------ expressions

/// <summary>
/// An expression. <see cref="Height"/> is the depth of the tree below it (1 for a leaf), computed when the
/// node is built so that the parser can bound it (left-associative chains such as <c>a + b + c</c> are
/// built iteratively but evaluated recursively) without walking the tree.
/// </summary>
internal abstract record Expr(int Line)
{
    public virtual int Height => 1;

    protected static int Max(Expr? a, Expr? b = null, Expr? c = null) =>
        Math.Max(a?.Height ?? 0, Math.Max(b?.Height ?? 0, c?.Height ?? 0));

    protected static int Max(IEnumerable<Expr> items)
    {
        int h = 0;
        foreach (var e in items) h = Math.Max(h, e.Height);
        return h;
    }
}

internal sealed record ConstExpr(object? Value, int Line) : Expr(Line);

internal sealed record NameExpr(string Name, int Line) : Expr(Line);

/// <summary><c>ns.attr</c> as an assignment target.</summary>
internal sealed record NsRefExpr(string Name, string Attr, int Line) : Expr(Line);

internal sealed record GetAttrExpr(Expr Obj, string Attr, int Line) : Expr(Line)
{
    public override int Height { get; } = Obj.Height + 1;
}

internal sealed record GetItemExpr(Expr Obj, Expr Key, int Line) : Expr(Line)
{
    public override int Height { get; } = Max(Obj, Key) + 1;
}

internal sealed record SliceExpr(Expr? Start, Expr? Stop, Expr? Step, int Line) : Expr(Line)
{
    public override int Height { get; } = Max(Start, Stop, Step) + 1;
}

internal sealed record ListExpr(List<Expr> Items, int Line) : Expr(Line)
{
    public override int Height { get; } = Max(Items) + 1;
}

internal sealed record TupleExpr(List<Expr> Items, int Line) : Expr(Line)
{
    public override int Height { get; } = Max(Items) + 1;
}

internal sealed record DictExpr(List<(Expr Key, Expr Value)> Items, int Line) : Expr(Line)
{
    public override int Height { get; } = Max(Items.Select(kv => kv.Key).Concat(Items.Select(kv => kv.Value))) + 1;
}

internal sealed record CallArgsExpr(List<Expr> Args, List<(string Name, Expr Value)> Kwargs, Expr? DynArgs, Expr? DynKwargs)
{
    public static readonly CallArgsExpr Empty = new([], [], null, null);

    /// <summary>Deepest argument expression (0 without arguments).</summary>
    public int Height { get; } = Math.Max(
        Math.Max(Args.Count == 0 ? 0 : Args.Max(a => a.Height), Kwargs.Count == 0 ? 0 : Kwargs.Max(k => k.Value.Height)),
        Math.Max(DynArgs?.Height ?? 0, DynKwargs?.Height ?? 0));
}

internal sealed record CallExpr(Expr Func, CallArgsExpr Args, int Line) : Expr(Line)
{
    public override int Height { get; } = Math.Max(Func.Height, Args.Height) + 1;
}

internal sealed record FilterExpr(Expr? Value, string Name, CallArgsExpr Args, int Line) : Expr(Line)
{
    public override int Height { get; } = Math.Max(Value?.Height ?? 0, Args.Height) + 1;
}

internal sealed record TestExpr(Expr Value, string Name, CallArgsExpr Args, int Line) : Expr(Line)
{
    public override int Height { get; } = Math.Max(Value.Height, Args.Height) + 1;
}

internal sealed record UnaryExpr(string Op, Expr Operand, int Line) : Expr(Line)
{
    public override int Height { get; } = Operand.Height + 1;
}

internal sealed record BinaryExpr(string Op, Expr Left, Expr Right, int Line) : Expr(Line)
{
    public override int Height { get; } = Max(Left, Right) + 1;
}

internal sealed record CompareExpr(Expr First, List<(string Op, Expr Operand)> Ops, int Line) : Expr(Line)
{
    public override int Height { get; } = Math.Max(First.Height, Max(Ops.Select(o => o.Operand))) + 1;
}

internal sealed record ConcatExpr(List<Expr> Parts, int Line) : Expr(Line)
{
    public override int Height { get; } = Max(Parts) + 1;
}

internal sealed record CondExpr(Expr Test, Expr Then, Expr? Else, int Line) : Expr(Line)
{
    public override int Height { get; } = Max(Test, Then, Else) + 1;
}

// ------------------------------------------------------------------ statements

internal abstract record Stmt(int Line);

internal sealed record TextStmt(string Text, int Line) : Stmt(Line);

internal sealed record PrintStmt(Expr Value, int Line) : Stmt(Line);

internal sealed record IfStmt(List<(Expr Test, List<Stmt> Body)> Branches, List<Stmt>? Else, int Line) : Stmt(Line);

internal sealed record ForStmt(Expr Target, Expr Iter, Expr? Filter, bool Recursive, List<Stmt> Body, List<Stmt>? Else, int Line) : Stmt(Line);

internal sealed record SetStmt(Expr Target, Expr Value, int Line) : Stmt(Line);

internal sealed record SetBlockStmt(Expr Target, FilterExpr? Filter, List<Stmt> Body, int Line) : Stmt(Line);

internal sealed record MacroParam(string Name, Expr? Default);

internal sealed record MacroStmt(string Name, List<MacroParam> Params, List<Stmt> Body, bool UsesCaller, bool UsesVarargs, bool UsesKwargs, int Line) : Stmt(Line);

internal sealed record CallBlockStmt(CallExpr Call, List<MacroParam> Params, List<Stmt> Body, bool UsesCaller, bool UsesVarargs, bool UsesKwargs, int Line) : Stmt(Line);

internal sealed record FilterBlockStmt(FilterExpr Filter, List<Stmt> Body, int Line) : Stmt(Line);

internal sealed record WithStmt(List<(Expr Target, Expr Value)> Assignments, List<Stmt> Body, int Line) : Stmt(Line);

/// <summary>Statements rendered in place in the current scope (<c>block</c>, <c>generation</c>).</summary>
internal sealed record InlineBlockStmt(List<Stmt> Body, bool NewScope, int Line) : Stmt(Line);

internal sealed record BreakStmt(int Line) : Stmt(Line);

internal sealed record ContinueStmt(int Line) : Stmt(Line);
