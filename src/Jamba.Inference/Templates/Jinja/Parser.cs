using System.Globalization;
using System.Runtime.CompilerServices;

namespace Jamba.Inference.Templates.Jinja;

/// <summary>
/// Recursive-descent parser mirroring <c>jinja2.parser.Parser</c>. Nesting is bounded by
/// <see cref="TemplateLimits.MaxNestingDepth"/>: the recursion depth of the parser itself (blocks, brackets,
/// unary operators, conditional expressions) and the height of every expression tree it builds (chains such
/// as <c>a + b + c</c> or <c>a.b.c</c> are parsed in a loop but evaluated recursively).
/// </summary>
internal sealed class Parser
{
    private static readonly HashSet<string> CompareOps = ["==", "!=", "<", "<=", ">", ">="];

    private readonly List<Token> _tokens;
    private int _i;
    private readonly Stack<HashSet<string>> _macroNames = new();
    private readonly Stack<string> _openBlocks = new();
    private readonly int _maxDepth;
    private int _depth;

    public Parser(List<Token> tokens, int maxDepth = TemplateLimits.DefaultMaxNestingDepth)
    {
        _tokens = tokens;
        _maxDepth = maxDepth;
    }

    public static List<Stmt> Parse(string source, int maxDepth = TemplateLimits.DefaultMaxNestingDepth)
    {
        var parser = new Parser(new Lexer(source).Tokenize(), maxDepth);
        return parser.Subparse(null);
    }

    // ------------------------------------------------------------------ nesting limit

    private TemplateException TooDeep(int line) =>
        TemplateException.Syntax($"template nesting too deep: more than {_maxDepth.ToString(CultureInfo.InvariantCulture)} levels (TemplateLimits.MaxNestingDepth)", line);

    /// <summary>Enters one level of recursive parsing; pair with <see cref="Leave"/>.</summary>
    private void Enter()
    {
        if (++_depth > _maxDepth) throw TooDeep(Current.Line);
        if (!RuntimeHelpers.TryEnsureSufficientExecutionStack())
            throw Fail("template nesting too deep for the thread's stack");
    }

    private void Leave() => _depth--;

    /// <summary>Rejects an expression tree higher than the nesting limit (the evaluator recurses over it).</summary>
    private T Bounded<T>(T e) where T : Expr
    {
        if (e.Height > _maxDepth) throw TooDeep(e.Line);
        return e;
    }

    // ------------------------------------------------------------------ token stream

    private Token Current => _tokens[_i];
    private Token Look => _tokens[Math.Min(_i + 1, _tokens.Count - 1)];

    private Token Next()
    {
        var t = _tokens[_i];
        if (_i < _tokens.Count - 1) _i++;
        return t;
    }

    private TemplateException Fail(string msg, int? line = null) => TemplateException.Syntax(msg, line ?? Current.Line);

    private bool SkipOp(string op)
    {
        if (!Current.IsOp(op)) return false;
        Next();
        return true;
    }

    private bool SkipName(string name)
    {
        if (!Current.IsName(name)) return false;
        Next();
        return true;
    }

    private Token ExpectOp(string op)
    {
        if (!Current.IsOp(op)) throw UnexpectedToken($"'{op}'");
        return Next();
    }

    private Token Expect(TokenKind kind, string what)
    {
        if (Current.Kind != kind) throw UnexpectedToken(what);
        return Next();
    }

    private Token ExpectName(string? name = null)
    {
        if (Current.Kind != TokenKind.Name || (name != null && Current.Text != name))
            throw UnexpectedToken(name == null ? "name" : $"'{name}'");
        return Next();
    }

    private TemplateException UnexpectedToken(string expected)
    {
        if (Current.Kind == TokenKind.Eof) return FailEof(null);
        return Fail($"expected token {expected}, got {Py.Repr(Current.Describe())}");
    }

    private TemplateException FailEof(string[]? endTokens)
    {
        string msg = "Unexpected end of template.";
        if (endTokens != null && endTokens.Length > 0)
            msg += " Jinja was looking for the following tags: " + string.Join(" or ", endTokens.Select(e => $"'{e}'")) + ".";
        if (_openBlocks.Count > 0)
            msg += $" The innermost block that needs to be closed is '{_openBlocks.Peek()}'.";
        return Fail(msg);
    }

    // ------------------------------------------------------------------ statements

    private List<Stmt> Subparse(string[]? endTokens)
    {
        var body = new List<Stmt>();
        while (true)
        {
            var t = Current;
            switch (t.Kind)
            {
                case TokenKind.Data:
                    Next();
                    body.Add(new TextStmt(t.Text, t.Line));
                    break;
                case TokenKind.VariableBegin:
                    Next();
                    body.Add(new PrintStmt(ParseTuple(), t.Line));
                    Expect(TokenKind.VariableEnd, "'end of print statement'");
                    break;
                case TokenKind.BlockBegin:
                    Next();
                    if (endTokens != null && Current.Kind == TokenKind.Name && endTokens.Contains(Current.Text))
                        return body;
                    body.Add(ParseStatement());
                    Expect(TokenKind.BlockEnd, "'end of statement block'");
                    break;
                case TokenKind.Eof:
                    if (endTokens != null) throw FailEof(endTokens);
                    return body;
                default:
                    throw Fail($"unexpected {Py.Repr(t.Describe())}");
            }
        }
    }

    private List<Stmt> ParseStatements(string[] endTokens, bool dropNeedle)
    {
        SkipOp(":");
        Expect(TokenKind.BlockEnd, "'end of statement block'");
        var result = Subparse(endTokens);
        if (Current.Kind == TokenKind.Eof) throw FailEof(endTokens);
        if (dropNeedle) Next();
        return result;
    }

    private Stmt ParseStatement()
    {
        Enter();
        try
        {
            return ParseStatementCore();
        }
        finally
        {
            Leave();
        }
    }

    private Stmt ParseStatementCore()
    {
        var token = Current;
        if (token.Kind != TokenKind.Name) throw Fail("tag name expected");
        _openBlocks.Push(token.Text);
        bool pop = true;
        try
        {
            switch (token.Text)
            {
                case "for": return ParseFor();
                case "if": return ParseIf();
                case "set": return ParseSet();
                case "macro": return ParseMacro();
                case "call": return ParseCallBlock();
                case "filter": return ParseFilterBlock();
                case "with": return ParseWith();
                case "block": return ParseBlock();
                case "print":
                    {
                        Next();
                        var items = new List<Expr>();
                        while (Current.Kind != TokenKind.BlockEnd)
                        {
                            if (items.Count > 0) ExpectOp(",");
                            items.Add(ParseExpression());
                        }
                        return new InlineBlockStmt(items.Select(e => (Stmt)new PrintStmt(e, token.Line)).ToList(), false, token.Line);
                    }
                case "break": Next(); return new BreakStmt(token.Line);
                case "continue": Next(); return new ContinueStmt(token.Line);
                case "generation":
                    Next();
                    return new InlineBlockStmt(ParseStatements(["endgeneration"], true), false, token.Line);
                case "autoescape":
                    Next();
                    ParseExpression();
                    return new InlineBlockStmt(ParseStatements(["endautoescape"], true), true, token.Line);
                case "extends" or "include" or "import" or "from":
                    throw Fail($"'{token.Text}' is not supported: chat templates are rendered standalone");
                default:
                    _openBlocks.Pop();
                    pop = false;
                    throw Fail($"Encountered unknown tag {Py.Repr(token.Text)}.");
            }
        }
        finally
        {
            if (pop) _openBlocks.Pop();
        }
    }

    private Stmt ParseFor()
    {
        int line = Next().Line;
        var target = ParseAssignTarget(extraEnd: ["in"]);
        ExpectName("in");
        var iter = ParseTuple(withCondExpr: false, extraEnd: ["recursive"]);
        Expr? filter = null;
        if (SkipName("if")) filter = ParseExpression();
        bool recursive = SkipName("recursive");
        var body = ParseStatements(["endfor", "else"], false);
        List<Stmt>? elseBody = null;
        if (Next().Text != "endfor") elseBody = ParseStatements(["endfor"], true);
        return new ForStmt(target, iter, filter, recursive, body, elseBody, line);
    }

    private Stmt ParseIf()
    {
        int line = Next().Line;
        var branches = new List<(Expr, List<Stmt>)>();
        List<Stmt>? elseBody = null;
        while (true)
        {
            var test = ParseTuple(withCondExpr: false);
            var body = ParseStatements(["elif", "else", "endif"], false);
            branches.Add((test, body));
            var t = Next();
            if (t.Text == "elif") continue;
            if (t.Text == "else") elseBody = ParseStatements(["endif"], true);
            break;
        }
        return new IfStmt(branches, elseBody, line);
    }

    private Stmt ParseSet()
    {
        int line = Next().Line;
        var target = ParseAssignTarget(withNamespace: true);
        if (SkipOp("=")) return new SetStmt(target, ParseTuple(), line);
        FilterExpr? filter = Current.IsOp("|") ? Bounded((FilterExpr)ParseFilter(null, false)!) : null;
        var body = ParseStatements(["endset"], true);
        return new SetBlockStmt(target, filter, body, line);
    }

    private List<MacroParam> ParseSignature()
    {
        var ps = new List<MacroParam>();
        ExpectOp("(");
        bool sawDefault = false;
        while (!Current.IsOp(")"))
        {
            if (ps.Count > 0) ExpectOp(",");
            var name = ExpectName().Text;
            Expr? def = null;
            if (SkipOp("=")) { def = ParseExpression(); sawDefault = true; }
            else if (sawDefault) throw Fail("non-default argument follows default argument");
            ps.Add(new MacroParam(name, def));
        }
        ExpectOp(")");
        return ps;
    }

    private Stmt ParseMacro()
    {
        int line = Next().Line;
        string name = ExpectName().Text;
        _macroNames.Push(new HashSet<string>());
        var ps = ParseSignature();
        var body = ParseStatements(["endmacro"], true);
        var used = _macroNames.Pop();
        return new MacroStmt(name, ps, body, used.Contains("caller"), used.Contains("varargs"), used.Contains("kwargs"), line);
    }

    private Stmt ParseCallBlock()
    {
        int line = Next().Line;
        _macroNames.Push(new HashSet<string>());
        var ps = Current.IsOp("(") ? ParseSignature() : new List<MacroParam>();
        var saved = _macroNames.Pop();
        var call = ParseExpression() as CallExpr ?? throw Fail("expected call", line);
        _macroNames.Push(saved);
        var body = ParseStatements(["endcall"], true);
        var used = _macroNames.Pop();
        return new CallBlockStmt(call, ps, body, used.Contains("caller"), used.Contains("varargs"), used.Contains("kwargs"), line);
    }

    private Stmt ParseFilterBlock()
    {
        int line = Next().Line;
        var filter = Bounded((FilterExpr)ParseFilter(null, true)!);
        var body = ParseStatements(["endfilter"], true);
        return new FilterBlockStmt(filter, body, line);
    }

    private Stmt ParseWith()
    {
        int line = Next().Line;
        var assigns = new List<(Expr, Expr)>();
        while (Current.Kind != TokenKind.BlockEnd)
        {
            if (assigns.Count > 0) ExpectOp(",");
            var target = ParseAssignTarget();
            ExpectOp("=");
            assigns.Add((target, ParseExpression()));
        }
        var body = ParseStatements(["endwith"], true);
        return new WithStmt(assigns, body, line);
    }

    private Stmt ParseBlock()
    {
        int line = Next().Line;
        string name = ExpectName().Text;
        SkipName("scoped");
        SkipName("required");
        var body = ParseStatements(["endblock"], true);
        SkipName(name);
        return new InlineBlockStmt(body, true, line);
    }

    private Expr ParseAssignTarget(string[]? extraEnd = null, bool withNamespace = false)
    {
        var target = ParseTuple(simplified: true, extraEnd: extraEnd, withNamespace: withNamespace);
        bool ok = target switch
        {
            NameExpr or NsRefExpr => true,
            TupleExpr t => t.Items.All(x => x is NameExpr),
            _ => false,
        };
        if (!ok) throw Fail($"can't assign to {Py.Repr(target.GetType().Name.Replace("Expr", "", StringComparison.Ordinal))}", target.Line);
        if (target is NameExpr n && n.Name is "true" or "false" or "none" or "True" or "False" or "None")
            throw Fail($"can't assign to {Py.Repr(n.Name)}", target.Line);
        return target;
    }

    // ------------------------------------------------------------------ expressions

    private bool IsTupleEnd(string[]? extraEnd) =>
        Current.Kind is TokenKind.VariableEnd or TokenKind.BlockEnd || Current.IsOp(")") ||
        (extraEnd != null && Current.Kind == TokenKind.Name && extraEnd.Contains(Current.Text));

    private Expr ParseTuple(bool simplified = false, bool withCondExpr = true, string[]? extraEnd = null,
        bool explicitParens = false, bool withNamespace = false)
    {
        int line = Current.Line;
        var args = new List<Expr>();
        bool isTuple = false;
        while (true)
        {
            if (args.Count > 0) ExpectOp(",");
            if (IsTupleEnd(extraEnd)) break;
            args.Add(simplified ? ParsePrimary(withNamespace) : ParseExpression(withCondExpr));
            if (Current.IsOp(",")) isTuple = true;
            else break;
        }
        if (!isTuple)
        {
            if (args.Count > 0) return args[0];
            if (!explicitParens) throw Fail($"Expected an expression, got {Py.Repr(Current.Describe())}");
        }
        return Bounded(new TupleExpr(args, line));
    }

    private Expr ParseExpression(bool withCondExpr = true) => Bounded(withCondExpr ? ParseCondExpr() : ParseOr());

    private Expr ParseCondExpr()
    {
        int line = Current.Line;
        var expr1 = ParseOr();
        while (SkipName("if"))
        {
            var expr2 = ParseOr();
            Expr? expr3 = null;
            if (SkipName("else"))
            {
                Enter();
                try
                {
                    expr3 = ParseCondExpr();
                }
                finally
                {
                    Leave();
                }
            }
            expr1 = new CondExpr(expr2, expr1, expr3, line);
            line = Current.Line;
        }
        return expr1;
    }

    private Expr ParseOr()
    {
        int line = Current.Line;
        var left = ParseAnd();
        while (SkipName("or")) left = new BinaryExpr("or", left, ParseAnd(), line);
        return left;
    }

    private Expr ParseAnd()
    {
        int line = Current.Line;
        var left = ParseNot();
        while (SkipName("and")) left = new BinaryExpr("and", left, ParseNot(), line);
        return left;
    }

    private Expr ParseNot()
    {
        if (Current.IsName("not"))
        {
            int line = Next().Line;
            Enter();
            try
            {
                return new UnaryExpr("not", ParseNot(), line);
            }
            finally
            {
                Leave();
            }
        }
        return ParseCompare();
    }

    private Expr ParseCompare()
    {
        int line = Current.Line;
        var expr = ParseMath1();
        var ops = new List<(string, Expr)>();
        while (true)
        {
            if (Current.Kind == TokenKind.Operator && CompareOps.Contains(Current.Text))
            {
                string op = Next().Text;
                ops.Add((op, ParseMath1()));
            }
            else if (SkipName("in")) ops.Add(("in", ParseMath1()));
            else if (Current.IsName("not") && Look.IsName("in"))
            {
                Next();
                Next();
                ops.Add(("notin", ParseMath1()));
            }
            else break;
        }
        return ops.Count == 0 ? expr : new CompareExpr(expr, ops, line);
    }

    private Expr ParseMath1()
    {
        int line = Current.Line;
        var left = ParseConcat();
        while (Current.IsOp("+") || Current.IsOp("-"))
        {
            string op = Next().Text;
            left = new BinaryExpr(op, left, ParseConcat(), line);
        }
        return left;
    }

    private Expr ParseConcat()
    {
        int line = Current.Line;
        var args = new List<Expr> { ParseMath2() };
        while (SkipOp("~")) args.Add(ParseMath2());
        return args.Count == 1 ? args[0] : new ConcatExpr(args, line);
    }

    private Expr ParseMath2()
    {
        int line = Current.Line;
        var left = ParsePow();
        while (Current.Kind == TokenKind.Operator && Current.Text is "*" or "/" or "//" or "%")
        {
            string op = Next().Text;
            left = new BinaryExpr(op, left, ParsePow(), line);
        }
        return left;
    }

    private Expr ParsePow()
    {
        int line = Current.Line;
        var left = ParseUnary();
        while (SkipOp("**")) left = new BinaryExpr("**", left, ParseUnary(), line);
        return left;
    }

    private Expr ParseUnary(bool withFilter = true)
    {
        Enter();
        try
        {
            return ParseUnaryCore(withFilter);
        }
        finally
        {
            Leave();
        }
    }

    private Expr ParseUnaryCore(bool withFilter)
    {
        int line = Current.Line;
        Expr node;
        if (SkipOp("-")) node = new UnaryExpr("-", ParseUnary(false), line);
        else if (SkipOp("+")) node = new UnaryExpr("+", ParseUnary(false), line);
        else node = ParsePrimary();
        node = ParsePostfix(node);
        if (withFilter) node = ParseFilterExpr(node);
        return node;
    }

    private Expr ParsePrimary(bool withNamespace = false)
    {
        var token = Current;
        switch (token.Kind)
        {
            case TokenKind.Name:
                Next();
                switch (token.Text)
                {
                    case "true" or "True": return new ConstExpr(true, token.Line);
                    case "false" or "False": return new ConstExpr(false, token.Line);
                    case "none" or "None": return new ConstExpr(null, token.Line);
                }
                if (withNamespace && Current.IsOp("."))
                {
                    Next();
                    return new NsRefExpr(token.Text, ExpectName().Text, token.Line);
                }
                if (_macroNames.Count > 0) _macroNames.Peek().Add(token.Text);
                return new NameExpr(token.Text, token.Line);
            case TokenKind.String:
                {
                    Next();
                    var s = (string)token.Value!;
                    if (Current.Kind != TokenKind.String) return new ConstExpr(s, token.Line);
                    var sb = new System.Text.StringBuilder(s); // adjacent literals concatenate (linear time)
                    while (Current.Kind == TokenKind.String) sb.Append((string)Next().Value!);
                    return new ConstExpr(sb.ToString(), token.Line);
                }
            case TokenKind.Integer or TokenKind.Float:
                Next();
                return new ConstExpr(token.Value, token.Line);
            case TokenKind.Operator when token.Text == "(":
                {
                    Next();
                    var node = ParseTuple(explicitParens: true);
                    ExpectOp(")");
                    return node;
                }
            case TokenKind.Operator when token.Text == "[":
                {
                    Next();
                    var items = new List<Expr>();
                    while (!Current.IsOp("]"))
                    {
                        if (items.Count > 0) ExpectOp(",");
                        if (Current.IsOp("]")) break;
                        items.Add(ParseExpression());
                    }
                    ExpectOp("]");
                    return new ListExpr(items, token.Line);
                }
            case TokenKind.Operator when token.Text == "{":
                {
                    Next();
                    var items = new List<(Expr, Expr)>();
                    while (!Current.IsOp("}"))
                    {
                        if (items.Count > 0) ExpectOp(",");
                        if (Current.IsOp("}")) break;
                        var key = ParseExpression();
                        ExpectOp(":");
                        items.Add((key, ParseExpression()));
                    }
                    ExpectOp("}");
                    return new DictExpr(items, token.Line);
                }
        }
        if (token.Kind == TokenKind.Eof) throw FailEof(null);
        throw Fail($"unexpected {Py.Repr(token.Describe())}");
    }

    private Expr ParsePostfix(Expr node)
    {
        while (true)
        {
            if (Current.IsOp(".") || Current.IsOp("[")) node = ParseSubscript(node);
            else if (Current.IsOp("("))
            {
                int line = Current.Line;
                node = new CallExpr(node, ParseCallArgs(), line);
            }
            else return node;
        }
    }

    private Expr ParseFilterExpr(Expr node)
    {
        while (true)
        {
            if (Current.IsOp("|")) node = ParseFilter(node, false)!;
            else if (Current.IsName("is")) node = ParseTest(node);
            else if (Current.IsOp("("))
            {
                int line = Current.Line;
                node = new CallExpr(node, ParseCallArgs(), line);
            }
            else return node;
        }
    }

    private Expr ParseSubscript(Expr node)
    {
        var token = Next();
        if (token.Text == ".")
        {
            var attr = Next();
            if (attr.Kind == TokenKind.Name) return new GetAttrExpr(node, attr.Text, token.Line);
            if (attr.Kind != TokenKind.Integer) throw Fail("expected name or number", attr.Line);
            return new GetItemExpr(node, new ConstExpr(attr.Value, attr.Line), token.Line);
        }
        var args = new List<Expr>();
        while (!Current.IsOp("]"))
        {
            if (args.Count > 0) ExpectOp(",");
            args.Add(ParseSubscribed());
        }
        ExpectOp("]");
        return new GetItemExpr(node, args.Count == 1 ? args[0] : new TupleExpr(args, token.Line), token.Line);
    }

    private Expr ParseSubscribed()
    {
        int line = Current.Line;
        Expr? start;
        if (Current.IsOp(":"))
        {
            Next();
            start = null;
        }
        else
        {
            var node = ParseExpression();
            if (!Current.IsOp(":")) return node;
            Next();
            start = node;
        }
        Expr? stop = null, step = null;
        if (!Current.IsOp(":") && !Current.IsOp("]") && !Current.IsOp(",")) stop = ParseExpression();
        if (Current.IsOp(":"))
        {
            Next();
            if (!Current.IsOp("]") && !Current.IsOp(",")) step = ParseExpression();
        }
        return new SliceExpr(start, stop, step, line);
    }

    private CallArgsExpr ParseCallArgs()
    {
        var token = ExpectOp("(");
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        Expr? dynArgs = null, dynKwargs = null;
        bool requireComma = false;
        void Ensure(bool ok)
        {
            if (!ok) throw Fail("invalid syntax for function call expression", token.Line);
        }
        while (!Current.IsOp(")"))
        {
            if (requireComma)
            {
                ExpectOp(",");
                if (Current.IsOp(")")) break;
            }
            if (Current.IsOp("*"))
            {
                Ensure(dynArgs == null && dynKwargs == null);
                Next();
                dynArgs = ParseExpression();
            }
            else if (Current.IsOp("**"))
            {
                Ensure(dynKwargs == null);
                Next();
                dynKwargs = ParseExpression();
            }
            else if (Current.Kind == TokenKind.Name && Look.IsOp("="))
            {
                Ensure(dynKwargs == null);
                string key = Next().Text;
                Next();
                kwargs.Add((key, ParseExpression()));
            }
            else
            {
                Ensure(dynArgs == null && dynKwargs == null && kwargs.Count == 0);
                args.Add(ParseExpression());
            }
            requireComma = true;
        }
        ExpectOp(")");
        return new CallArgsExpr(args, kwargs, dynArgs, dynKwargs);
    }

    private Expr? ParseFilter(Expr? node, bool startInline)
    {
        while (Current.IsOp("|") || startInline)
        {
            if (!startInline) Next();
            var token = ExpectName();
            string name = token.Text;
            while (Current.IsOp("."))
            {
                Next();
                name += "." + ExpectName().Text;
            }
            if (!Builtins.HasFilter(name)) throw new TemplateException("TemplateAssertionError", $"No filter named {Py.Repr(name)}.", token.Line);
            var args = Current.IsOp("(") ? ParseCallArgs() : CallArgsExpr.Empty;
            node = new FilterExpr(node, name, args, token.Line);
            startInline = false;
        }
        return node;
    }

    private Expr ParseTest(Expr node)
    {
        var token = Next();
        bool negated = SkipName("not");
        var nameTok = ExpectName();
        string name = nameTok.Text;
        while (Current.IsOp("."))
        {
            Next();
            name += "." + ExpectName().Text;
        }
        if (!Builtins.HasTest(name)) throw new TemplateException("TemplateAssertionError", $"No test named {Py.Repr(name)}.", nameTok.Line);
        CallArgsExpr args;
        if (Current.IsOp("(")) args = ParseCallArgs();
        else if ((Current.Kind is TokenKind.Name or TokenKind.String or TokenKind.Integer or TokenKind.Float ||
                  Current.IsOp("(") || Current.IsOp("[") || Current.IsOp("{")) &&
                 !(Current.IsName("else") || Current.IsName("or") || Current.IsName("and")))
        {
            if (Current.IsName("is")) throw Fail("You cannot chain multiple tests with is");
            var arg = ParsePostfix(ParsePrimary());
            args = new CallArgsExpr([arg], [], null, null);
        }
        else args = CallArgsExpr.Empty;
        Expr result = new TestExpr(node, name, args, token.Line);
        if (negated) result = new UnaryExpr("not", result, token.Line);
        return result;
    }
}
