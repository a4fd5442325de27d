using System.Globalization;
using System.Numerics;
using System.Text;

namespace Jamba.Inference.Templates.Jinja;

/// <summary>Python value semantics (str, repr, truthiness, equality, arithmetic, indexing).</summary>
internal static class Py
{
    // ---------------------------------------------------------------- type info

    public static string TypeName(object? o) => o switch
    {
        null => "NoneType",
        bool => "bool",
        long or BigInteger => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        PyTuple => "tuple",
        PyDict => "dict",
        Undefined => "Undefined",
        Namespace => "Namespace",
        Macro => "Macro",
        LoopContext => "LoopContext",
        BoundMethod => "builtin_function_or_method",
        BuiltinFunction => "function",
        Cycler => "Cycler",
        _ => o.GetType().Name,
    };

    /// <summary>jinja2.utils.object_type_repr.</summary>
    public static string ObjectTypeRepr(object? o) => o switch
    {
        null => "None",
        Namespace => "jinja2.utils.Namespace object",
        Macro => "jinja2.runtime.Macro object",
        LoopContext => "jinja2.runtime.LoopContext object",
        Undefined => "jinja2.runtime.Undefined object",
        Cycler => "jinja2.utils.Cycler object",
        _ => TypeName(o) + " object",
    };

    public static bool IsInt(object? o) => o is long or BigInteger or bool;
    public static bool IsNumber(object? o) => o is long or BigInteger or bool or double;

    // ---------------------------------------------------------------- truthiness / str / repr

    public static bool Truthy(object? o) => o switch
    {
        null => false,
        bool b => b,
        long l => l != 0,
        BigInteger bi => !bi.IsZero,
        double d => d != 0.0,
        string s => s.Length > 0,
        List<object?> l => l.Count > 0,
        PyTuple t => t.Items.Length > 0,
        PyDict d => d.Count > 0,
        Undefined => false,
        _ => true,
    };

    public static string Str(object? o) => o switch
    {
        null => "None",
        string s => s,
        bool b => b ? "True" : "False",
        Undefined => "",
        _ => Repr(o),
    };

    public static string Repr(object? o)
    {
        switch (o)
        {
            case null: return "None";
            case bool b: return b ? "True" : "False";
            case long l: return l.ToString(CultureInfo.InvariantCulture);
        }
        var sb = new StringBuilder();
        AppendRepr(sb, o, 0, null);
        return sb.ToString();
    }

    /// <summary>
    /// Python repr. Like CPython, a list, dict or namespace met again while it is being printed prints as
    /// <c>[...]</c>, <c>{...}</c> or <c>&lt;Namespace {...}&gt;</c>; nesting deeper than
    /// <see cref="RenderContext.MaxValueDepth"/> is a RecursionError, and the text is bounded by
    /// <see cref="TemplateLimits.MaxStringLength"/> (a list holding one long string many times).
    /// </summary>
    private static void AppendRepr(StringBuilder sb, object? o, int depth, HashSet<object>? active)
    {
        switch (o)
        {
            case null: sb.Append("None"); return;
            case bool b: sb.Append(b ? "True" : "False"); return;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); return;
            case BigInteger bi: sb.Append(IntToDecimal(bi)); CheckReprLength(sb); return;
            case double d: sb.Append(FloatRepr(d)); return;
            case string s:
                if ((long)sb.Length + s.Length > RenderContext.Current.Limits.MaxStringLength) CheckReprLength(sb, s.Length);
                AppendStringRepr(sb, s);
                CheckReprLength(sb);
                return;
            case List<object?> or PyTuple or PyDict or Namespace:
                break;
            default:
                AppendLeafRepr(sb, o);
                return;
        }
        RenderContext.EnsureValueDepth(depth, " while getting the repr of an object");
        active ??= new HashSet<object>(ReferenceEqualityComparer.Instance);
        if (o is not PyTuple && !active.Add(o))
        {
            sb.Append(o switch { List<object?> => "[...]", PyDict => "{...}", _ => "<Namespace {...}>" });
            return;
        }
        var ctx = RenderContext.Current;
        try
        {
            switch (o)
            {
                case List<object?> list:
                    ctx.Charge(list.Count);
                    sb.Append('[');
                    for (int i = 0; i < list.Count; i++)
                    {
                        if (i > 0) sb.Append(", ");
                        AppendRepr(sb, list[i], depth + 1, active);
                    }
                    sb.Append(']');
                    break;
                case PyTuple t:
                    ctx.Charge(t.Items.Length);
                    sb.Append('(');
                    for (int i = 0; i < t.Items.Length; i++)
                    {
                        if (i > 0) sb.Append(", ");
                        AppendRepr(sb, t.Items[i], depth + 1, active);
                    }
                    if (t.Items.Length == 1) sb.Append(',');
                    sb.Append(')');
                    break;
                case PyDict d:
                    ctx.Charge(d.Count);
                    sb.Append('{');
                    bool first = true;
                    foreach (var kv in d)
                    {
                        if (!first) sb.Append(", ");
                        first = false;
                        AppendRepr(sb, kv.Key, depth + 1, active);
                        sb.Append(": ");
                        AppendRepr(sb, kv.Value, depth + 1, active);
                    }
                    sb.Append('}');
                    break;
                case Namespace ns:
                    ctx.Charge(ns.Order.Count);
                    sb.Append("<Namespace {");
                    for (int i = 0; i < ns.Order.Count; i++)
                    {
                        if (i > 0) sb.Append(", ");
                        AppendStringRepr(sb, ns.Order[i]);
                        sb.Append(": ");
                        AppendRepr(sb, ns.Attrs[ns.Order[i]], depth + 1, active);
                    }
                    sb.Append("}>");
                    break;
            }
        }
        finally
        {
            if (o is not PyTuple) active.Remove(o);
        }
    }

    private static void CheckReprLength(StringBuilder sb, long extra = 0)
    {
        long length = sb.Length + extra;
        if (length > RenderContext.Current.Limits.MaxStringLength) RenderContext.Current.Built(length, "repr of a value");
    }

    /// <summary>Decimal text of an int; CPython (3.11+) refuses more than 4300 digits.</summary>
    public static string IntToDecimal(BigInteger v)
    {
        long bits = RenderContext.BitLength(v);
        if (bits > 64) RenderContext.Current.CheckIntBits(bits);
        // 4300 decimal digits need at least 14282 bits; cheaper than converting first.
        if (RenderContext.BitLength(v) > 14280)
        {
            string text = BigInteger.Abs(v).ToString(CultureInfo.InvariantCulture);
            if (text.Length > RenderContext.MaxIntDigits)
                throw TemplateException.Value($"Exceeds the limit ({RenderContext.MaxIntDigits} digits) for integer string conversion; use sys.set_int_max_str_digits() to increase the limit");
            return v.Sign < 0 ? "-" + text : text;
        }
        return v.ToString(CultureInfo.InvariantCulture);
    }

    private static void AppendLeafRepr(StringBuilder sb, object? o)
    {
        switch (o)
        {
            case Undefined: sb.Append("Undefined"); break;
            case Macro m: sb.Append("<Macro ").Append(Repr(m.Name)).Append('>'); break;
            case LoopContext lc: sb.Append("<LoopContext ").Append(lc.Index0 + 1).Append('/').Append(lc.Items.Count).Append('>'); break;
            case BoundMethod bm: sb.Append("<built-in method ").Append(bm.Name).Append(" of ").Append(TypeName(bm.Target)).Append(" object>"); break;
            case BuiltinFunction bf: sb.Append("<function ").Append(bf.Name).Append('>'); break;
            default: sb.Append('<').Append(TypeName(o)).Append(" object>"); break;
        }
    }

    public static void AppendStringRepr(StringBuilder sb, string s)
    {
        char quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        sb.Append(quote);
        foreach (Rune r in s.EnumerateRunes())
        {
            int c = r.Value;
            if (c == quote || c == '\\') sb.Append('\\').Append((char)c);
            else if (c == '\t') sb.Append("\\t");
            else if (c == '\n') sb.Append("\\n");
            else if (c == '\r') sb.Append("\\r");
            else if (c < 0x20 || c == 0x7f) sb.Append("\\x").Append(c.ToString("x2", CultureInfo.InvariantCulture));
            else if (c < 0x7f) sb.Append((char)c);
            else if (IsPrintable(r)) sb.Append(r.ToString());
            else if (c <= 0xff) sb.Append("\\x").Append(c.ToString("x2", CultureInfo.InvariantCulture));
            else if (c <= 0xffff) sb.Append("\\u").Append(c.ToString("x4", CultureInfo.InvariantCulture));
            else sb.Append("\\U").Append(c.ToString("x8", CultureInfo.InvariantCulture));
        }
        sb.Append(quote);
    }

    private static bool IsPrintable(Rune r)
    {
        if (r.Value == ' ') return true;
        switch (Rune.GetUnicodeCategory(r))
        {
            case UnicodeCategory.Control:
            case UnicodeCategory.Format:
            case UnicodeCategory.Surrogate:
            case UnicodeCategory.PrivateUse:
            case UnicodeCategory.OtherNotAssigned:
            case UnicodeCategory.LineSeparator:
            case UnicodeCategory.ParagraphSeparator:
            case UnicodeCategory.SpaceSeparator:
                return false;
            default:
                return true;
        }
    }

    /// <summary>Python <c>repr(float)</c>: shortest round-trip digits, Python exponent rules.</summary>
    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";
        string s = Math.Abs(d).ToString("R", CultureInfo.InvariantCulture);
        int ePos = s.IndexOfAny(['E', 'e']);
        string mant = ePos < 0 ? s : s[..ePos];
        int exp = ePos < 0 ? 0 : int.Parse(s[(ePos + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
        int dot = mant.IndexOf('.');
        string digits = mant.Replace(".", "", StringComparison.Ordinal);
        int intLen = dot < 0 ? mant.Length : dot;
        int lead = 0;
        while (lead < digits.Length - 1 && digits[lead] == '0') lead++;
        digits = digits[lead..];
        int decpt = intLen - lead + exp;
        digits = digits.TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        string sign = d < 0 ? "-" : "";
        if (decpt > 16 || decpt < -3)
        {
            int e = decpt - 1;
            string m = digits.Length > 1 ? digits[0] + "." + digits[1..] : digits;
            return sign + m + "e" + (e < 0 ? "-" : "+") + Math.Abs(e).ToString("00", CultureInfo.InvariantCulture);
        }
        if (decpt <= 0) return sign + "0." + new string('0', -decpt) + digits;
        if (decpt >= digits.Length) return sign + digits + new string('0', decpt - digits.Length) + ".0";
        return sign + digits[..decpt] + "." + digits[decpt..];
    }

    // ---------------------------------------------------------------- numbers

    public static object NormalizeInt(BigInteger v) =>
        v >= long.MinValue && v <= long.MaxValue ? (long)v : v;

    /// <summary>An arithmetic result: bounded to <see cref="RenderContext.MaxIntBits"/> bits.</summary>
    private static object IntResult(BigInteger v)
    {
        if (v >= long.MinValue && v <= long.MaxValue) return (long)v;
        RenderContext.Current.CheckIntBits(RenderContext.BitLength(v));
        return v;
    }

    /// <summary>
    /// An int used as a size or index (Python's <c>Py_ssize_t</c>); beyond 64 bits, Python's OverflowError
    /// <paramref name="overflowMessage"/>.
    /// </summary>
    public static long ToSsize(object? o, string overflowMessage = "Python int too large to convert to C ssize_t")
    {
        var v = ToBig(o);
        if (v < long.MinValue || v > long.MaxValue) throw new TemplateException("OverflowError", overflowMessage);
        return (long)v;
    }

    public static BigInteger ToBig(object? o) => o switch
    {
        bool b => b ? 1 : 0,
        long l => l,
        BigInteger bi => bi,
        _ => throw new InvalidOperationException("not an int"),
    };

    public static double ToDouble(object? o) => o switch
    {
        bool b => b ? 1 : 0,
        long l => l,
        BigInteger bi => (double)bi,
        double d => d,
        _ => throw new InvalidOperationException("not a number"),
    };

    private static TemplateException Unsupported(string op, object? a, object? b) =>
        TemplateException.Type($"unsupported operand type(s) for {op}: {Repr(TypeName(a))} and {Repr(TypeName(b))}");

    private static void CheckUndefined(object? a, object? b)
    {
        if (a is Undefined ua) throw ua.Fail();
        if (b is Undefined ub) throw ub.Fail();
    }

    public static object? Add(object? a, object? b)
    {
        CheckUndefined(a, b);
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a) + ToDouble(b);
            if (a is long x && b is long y)
            {
                long r = unchecked(x + y);
                if (((x ^ r) & (y ^ r)) >= 0) return r;
            }
            return IntResult(ToBig(a) + ToBig(b));
        }
        switch (a)
        {
            case string sa when b is string sb:
                RenderContext.Current.Built((long)sa.Length + sb.Length, "concatenated string");
                return sa + sb;
            case string: throw TemplateException.Type($"can only concatenate str (not {Quote2(TypeName(b))}) to str");
            case List<object?> la when b is List<object?> lb:
                RenderContext.Current.Built((long)la.Count + lb.Count, "concatenated list", "items");
                var res = new List<object?>(la.Count + lb.Count);
                res.AddRange(la);
                res.AddRange(lb);
                return res;
            case List<object?>: throw TemplateException.Type($"can only concatenate list (not {Quote2(TypeName(b))}) to list");
            case PyTuple ta when b is PyTuple tb:
                RenderContext.Current.Built((long)ta.Items.Length + tb.Items.Length, "concatenated tuple", "items");
                return new PyTuple([.. ta.Items, .. tb.Items]);
            case PyTuple: throw TemplateException.Type($"can only concatenate tuple (not {Quote2(TypeName(b))}) to tuple");
        }
        throw Unsupported("+", a, b);
    }

    private static string Quote2(string s) => "\"" + s + "\"";

    public static object? Sub(object? a, object? b)
    {
        CheckUndefined(a, b);
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a) - ToDouble(b);
            return IntResult(ToBig(a) - ToBig(b));
        }
        throw Unsupported("-", a, b);
    }

    public static object? Mul(object? a, object? b)
    {
        CheckUndefined(a, b);
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a) * ToDouble(b);
            if (a is long x && b is long y)
            {
                long r = unchecked(x * y);
                if (Math.BigMul(x, y, out long low) == (low < 0 ? -1 : 0) && low == r) return r;
            }
            var ba = ToBig(a);
            var bb = ToBig(b);
            RenderContext.Current.CheckIntBits(RenderContext.BitLength(ba) + RenderContext.BitLength(bb) - 1);
            return IntResult(ba * bb);
        }
        if (IsInt(b) && a is string or List<object?> or PyTuple) return Repeat(a, ToSsize(b, "cannot fit 'int' into an index-sized integer"));
        if (IsInt(a) && b is string or List<object?> or PyTuple) return Repeat(b, ToSsize(a, "cannot fit 'int' into an index-sized integer"));
        throw Unsupported("*", a, b);
    }

    private static object Repeat(object? seq, long n)
    {
        if (n < 0) n = 0;
        var ctx = RenderContext.Current;
        switch (seq)
        {
            case string s:
                {
                    if (n == 0 || s.Length == 0) return "";
                    if (n == 1) return s;
                    long total = n > long.MaxValue / s.Length ? long.MaxValue : n * s.Length;
                    ctx.Built(total, "repeated string");
                    var sb = new StringBuilder((int)total);
                    for (long i = 0; i < n; i++) sb.Append(s);
                    return sb.ToString();
                }
            case List<object?> l:
                {
                    if (n == 0 || l.Count == 0) return new List<object?>();
                    long total = n > long.MaxValue / l.Count ? long.MaxValue : n * l.Count;
                    ctx.Built(total, "repeated list", "items");
                    var r = new List<object?>((int)total);
                    for (long i = 0; i < n; i++) r.AddRange(l);
                    return r;
                }
            case PyTuple t:
                {
                    if (n == 0 || t.Items.Length == 0) return new PyTuple([]);
                    long total = n > long.MaxValue / t.Items.Length ? long.MaxValue : n * t.Items.Length;
                    ctx.Built(total, "repeated tuple", "items");
                    var rt = new List<object?>((int)total);
                    for (long i = 0; i < n; i++) rt.AddRange(t.Items);
                    return new PyTuple(rt.ToArray());
                }
        }
        throw new InvalidOperationException();
    }

    public static object? TrueDiv(object? a, object? b)
    {
        CheckUndefined(a, b);
        if (IsNumber(a) && IsNumber(b))
        {
            double y = ToDouble(b);
            if (y == 0) throw new TemplateException("ZeroDivisionError", IsInt(a) && IsInt(b) ? "division by zero" : "float division by zero");
            return ToDouble(a) / y;
        }
        throw Unsupported("/", a, b);
    }

    public static object? FloorDiv(object? a, object? b)
    {
        CheckUndefined(a, b);
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double)
            {
                double y = ToDouble(b);
                if (y == 0) throw new TemplateException("ZeroDivisionError", "float floor division by zero");
                return Math.Floor(ToDouble(a) / y);
            }
            var bb = ToBig(b);
            if (bb.IsZero) throw new TemplateException("ZeroDivisionError", "integer division or modulo by zero");
            var ba = ToBig(a);
            RenderContext.Current.CheckIntBits(RenderContext.BitLength(ba));
            var q = BigInteger.DivRem(ba, bb, out var rem);
            if (!rem.IsZero && (rem.Sign < 0) != (bb.Sign < 0)) q -= 1;
            return IntResult(q);
        }
        throw Unsupported("//", a, b);
    }

    public static object? Mod(object? a, object? b)
    {
        CheckUndefined(a, b);
        if (a is string fmt) return Format.Percent(fmt, b);
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double)
            {
                double x = ToDouble(a), y = ToDouble(b);
                if (y == 0) throw new TemplateException("ZeroDivisionError", "float modulo");
                double m = x % y;
                if (m != 0 && (m < 0) != (y < 0)) m += y;
                return m;
            }
            var bb = ToBig(b);
            if (bb.IsZero) throw new TemplateException("ZeroDivisionError", "integer division or modulo by zero");
            var r = BigInteger.Remainder(ToBig(a), bb);
            if (!r.IsZero && (r.Sign < 0) != (bb.Sign < 0)) r += bb;
            return NormalizeInt(r);
        }
        throw Unsupported("%", a, b);
    }

    public static object? Pow(object? a, object? b)
    {
        CheckUndefined(a, b);
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double || ToBig(b).Sign < 0) return Math.Pow(ToDouble(a), ToDouble(b));
            var bas = ToBig(a);
            var exp = ToBig(b);
            if (exp.IsZero) return 1L;
            if (bas.IsZero || bas.IsOne || bas == BigInteger.MinusOne)
                return bas.IsZero ? 0L : bas.IsOne || exp.IsEven ? 1L : -1L;
            // |a| >= 2, so the result has at least (bits(a) - 1) * b + 1 bits: refuse before computing it.
            long baseBits = RenderContext.BitLength(bas);
            if (exp > RenderContext.MaxIntBits || (baseBits - 1) * (long)exp + 1 > RenderContext.MaxIntBits)
                throw new TemplateException("OverflowError",
                    $"integer too large: the power has more than the {RenderContext.MaxIntBits} bits this renderer computes");
            return IntResult(BigInteger.Pow(bas, (int)exp));
        }
        throw Unsupported("** or pow()", a, b);
    }

    public static object? Neg(object? a)
    {
        if (a is Undefined u) throw u.Fail();
        if (a is double d) return -d;
        if (a is long l && l != long.MinValue) return -l;
        if (IsInt(a)) return NormalizeInt(-ToBig(a));
        throw TemplateException.Type($"bad operand type for unary -: {Repr(TypeName(a))}");
    }

    public static object? Pos(object? a)
    {
        if (a is Undefined u) throw u.Fail();
        if (a is double) return a;
        if (IsInt(a)) return NormalizeInt(ToBig(a));
        throw TemplateException.Type($"bad operand type for unary +: {Repr(TypeName(a))}");
    }

    // ---------------------------------------------------------------- comparison

    public static bool Equal(object? a, object? b) => Equal(a, b, 0);

    private static bool Equal(object? a, object? b, int depth)
    {
        if (ReferenceEquals(a, b)) return true;
        if (a == null || b == null) return false;
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a) == ToDouble(b);
            return ToBig(a) == ToBig(b);
        }
        switch (a)
        {
            case string sa:
                if (b is not string sb) return false;
                if (sa.Length == sb.Length && sa.Length > 64) RenderContext.Current.ChargeChars(sa.Length);
                return string.Equals(sa, sb, StringComparison.Ordinal);
            case List<object?> la:
                if (b is not List<object?> lb || la.Count != lb.Count) return false;
                EnterCompare(depth, la.Count);
                for (int i = 0; i < la.Count; i++) if (!Equal(la[i], lb[i], depth + 1)) return false;
                return true;
            case PyTuple ta:
                if (b is not PyTuple tb || ta.Items.Length != tb.Items.Length) return false;
                EnterCompare(depth, ta.Items.Length);
                for (int i = 0; i < ta.Items.Length; i++) if (!Equal(ta.Items[i], tb.Items[i], depth + 1)) return false;
                return true;
            case PyDict da:
                if (b is not PyDict db || da.Count != db.Count) return false;
                EnterCompare(depth, da.Count);
                foreach (var kv in da)
                    if (!db.TryGetValue(kv.Key, out var v) || !Equal(kv.Value, v, depth + 1)) return false;
                return true;
            case Undefined: return b is Undefined;
        }
        return false;
    }

    private static void EnterCompare(int depth, int items)
    {
        RenderContext.EnsureValueDepth(depth, " in comparison");
        RenderContext.Current.Charge(items);
    }

    public static int CompareStrings(string a, string b)
    {
        // Python compares by code point; UTF-16 ordinal differs only for surrogates vs U+E000..U+FFFF.
        if (a.Length > 64 && b.Length > 64) RenderContext.Current.ChargeChars(Math.Min(a.Length, b.Length));
        var ea = a.EnumerateRunes().GetEnumerator();
        var eb = b.EnumerateRunes().GetEnumerator();
        while (true)
        {
            bool ha = ea.MoveNext(), hb = eb.MoveNext();
            if (!ha || !hb) return ha ? 1 : hb ? -1 : 0;
            int c = ea.Current.Value.CompareTo(eb.Current.Value);
            if (c != 0) return c;
        }
    }

    /// <summary>Ordering comparison; throws TypeError like Python for unorderable types.</summary>
    public static int Compare(object? a, object? b, string op) => Compare(a, b, op, 0);

    private static int Compare(object? a, object? b, string op, int depth)
    {
        CheckUndefined(a, b);
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a).CompareTo(ToDouble(b));
            return ToBig(a).CompareTo(ToBig(b));
        }
        if (a is string sa && b is string sb) return CompareStrings(sa, sb);
        if ((a is List<object?> && b is List<object?>) || (a is PyTuple && b is PyTuple))
        {
            var la = AsSequence(a)!;
            var lb = AsSequence(b)!;
            EnterCompare(depth, Math.Min(la.Count, lb.Count));
            for (int i = 0; i < Math.Min(la.Count, lb.Count); i++)
            {
                if (Equal(la[i], lb[i], depth + 1)) continue;
                return Compare(la[i], lb[i], op, depth + 1);
            }
            return la.Count.CompareTo(lb.Count);
        }
        throw TemplateException.Type($"{Repr(op)} not supported between instances of {Repr(TypeName(a))} and {Repr(TypeName(b))}");
    }

    /// <summary>
    /// <see cref="List{T}.Sort(Comparison{T})"/> with a Python comparison: a TemplateException raised while
    /// comparing (TypeError for unorderable items) comes out as itself, not wrapped in the framework's
    /// InvalidOperationException ("Failed to compare two elements in the array").
    /// </summary>
    public static void Sort<T>(List<T> items, Comparison<T> comparison)
    {
        RenderContext.Current.Charge(items.Count * (long)Math.Max(1, System.Numerics.BitOperations.Log2((uint)Math.Max(1, items.Count))));
        try
        {
            items.Sort(comparison);
        }
        catch (InvalidOperationException e) when (e.InnerException is TemplateException or OperationCanceledException)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e.InnerException);
        }
    }

    public static IReadOnlyList<object?>? AsSequence(object? o) => o switch
    {
        List<object?> l => l,
        PyTuple t => t.Items,
        _ => null,
    };

    public static bool Contains(object? container, object? item)
    {
        switch (container)
        {
            case string s:
                RenderContext.Current.ChargeChars(s.Length);
                if (item is string sub) return s.Contains(sub, StringComparison.Ordinal);
                if (item is Undefined) throw TemplateException.Type("'in <string>' requires string as left operand, not Undefined");
                throw TemplateException.Type($"'in <string>' requires string as left operand, not {TypeName(item)}");
            case List<object?> l:
                RenderContext.Current.Charge(l.Count);
                return l.Any(x => Equal(x, item));
            case PyTuple t:
                RenderContext.Current.Charge(t.Items.Length);
                return t.Items.Any(x => Equal(x, item));
            case PyDict d: return item != null && IsHashable(item) ? d.ContainsKey(item) : throw TemplateException.Type($"unhashable type: {Repr(TypeName(item))}");
            case Undefined: return false;
        }
        throw TemplateException.Type($"argument of type {Repr(TypeName(container))} is not iterable");
    }

    public static bool IsHashable(object? o) => o is not (List<object?> or PyDict);

    // ---------------------------------------------------------------- iteration / length

    /// <summary>Python <c>iter()</c> (a snapshot for lists and dicts); charges one step per item.</summary>
    public static IEnumerable<object?> Iterate(object? o)
    {
        var ctx = RenderContext.Current;
        switch (o)
        {
            case List<object?> l: ctx.Charge(l.Count); return l.ToArray();
            case PyTuple t: ctx.Charge(t.Items.Length); return t.Items;
            case PyDict d: ctx.Charge(d.Count); return d.Keys.ToArray();
            case string s:
                ctx.Charge(s.Length);
                ctx.Allocate(16L * s.Length);
                return CodePoints(s);
            case Undefined: return [];
            case Namespace: throw TemplateException.Type("'Namespace' object is not iterable");
        }
        throw TemplateException.Type($"{Repr(TypeName(o))} object is not iterable");
    }

    public static List<object?> ToList(object? o) => new(Iterate(o));

    public static long Len(object? o) => o switch
    {
        string s => StrLen(s),
        List<object?> l => l.Count,
        PyTuple t => t.Items.Length,
        PyDict d => d.Count,
        Undefined => 0,
        _ => throw TemplateException.Type($"object of type {Repr(TypeName(o))} has no len()"),
    };

    // ---------------------------------------------------------------- strings as code points

    public static bool HasSurrogates(string s)
    {
        if (s.Length > 64) RenderContext.Current.ChargeChars(s.Length);
        return s.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') >= 0;
    }

    public static long StrLen(string s) => HasSurrogates(s) ? s.EnumerateRunes().Count() : s.Length;

    /// <summary>The code points of a string as one-character strings (about 16 characters' worth of memory each).</summary>
    public static IEnumerable<object?> CodePoints(string s)
    {
        foreach (Rune r in s.EnumerateRunes()) yield return r.ToString();
    }

    public static string[] Runes(string s)
    {
        RenderContext.Current.Allocate(16L * s.Length);
        return s.EnumerateRunes().Select(r => r.ToString()).ToArray();
    }

    /// <summary>The code point at index <paramref name="i"/> (negative counts from the end), or null.</summary>
    public static string? RuneAt(string s, long i)
    {
        if (i < 0) i += StrLen(s);
        if (i < 0) return null;
        long k = 0;
        foreach (Rune r in s.EnumerateRunes())
            if (k++ == i) return r.ToString();
        return null;
    }

    // ---------------------------------------------------------------- indexing and slicing

    /// <summary>Python slice.indices: the list of indices selected.</summary>
    public static List<int> SliceIndices(int len, object? start, object? stop, object? step)
    {
        long st = step == null ? 1 : ToIndex(step);
        if (st == 0) throw TemplateException.Value("slice step cannot be zero");
        long lo, hi;
        if (st > 0)
        {
            lo = start == null ? 0 : Clamp(ToIndex(start), len, 0, len);
            hi = stop == null ? len : Clamp(ToIndex(stop), len, 0, len);
        }
        else
        {
            lo = start == null ? len - 1 : Clamp(ToIndex(start), len, -1, len - 1);
            hi = stop == null ? -1 : Clamp(ToIndex(stop), len, -1, len - 1);
        }
        var res = new List<int>();
        if (st > 0) for (long i = lo; i < hi; i += st) res.Add((int)i);
        else for (long i = lo; i > hi; i += st) res.Add((int)i);
        return res;
    }

    private static long Clamp(long v, int len, long min, long max)
    {
        if (v < 0) v += len;
        return Math.Min(Math.Max(v, min), max);
    }

    private static long ToIndex(object? o)
    {
        if (o is Undefined u) throw u.Fail();
        if (o is long l) return l;
        if (IsInt(o))
        {
            // Python clamps slice bounds of any size (sequences are shorter than 2**62 anyway).
            var v = ToBig(o);
            return v > long.MaxValue / 2 ? long.MaxValue / 2 : v < long.MinValue / 2 ? long.MinValue / 2 : (long)v;
        }
        throw TemplateException.Type("slice indices must be integers or None or have an __index__ method");
    }

    public static object? Slice(object? obj, object? start, object? stop, object? step)
    {
        switch (obj)
        {
            case string s:
                if (!HasSurrogates(s) && (step == null || step is long l1 && l1 == 1))
                {
                    var idx = SliceIndices(s.Length, start, stop, step);
                    return idx.Count == 0 ? "" : s.Substring(idx[0], idx.Count);
                }
                var runes = Runes(s);
                var sb = new StringBuilder();
                foreach (int i in SliceIndices(runes.Length, start, stop, step)) sb.Append(runes[i]);
                return sb.ToString();
            case List<object?> list:
                return SliceIndices(list.Count, start, stop, step).Select(i => list[i]).ToList();
            case PyTuple t:
                return new PyTuple(SliceIndices(t.Items.Length, start, stop, step).Select(i => t.Items[i]).ToArray());
            case Undefined u:
                throw u.Fail();
        }
        return Undefined.ForAttr(obj, new SliceRepr(start, stop, step));
    }

    /// <summary>Placeholder name used in messages for a slice subscript.</summary>
    internal sealed record SliceRepr(object? Start, object? Stop, object? Step)
    {
        public override string ToString() => $"slice({Repr(Start)}, {Repr(Stop)}, {Repr(Step)})";
    }

    /// <summary>jinja2 sandbox <c>getitem</c>: item first, then attribute.</summary>
    public static object? GetItem(object? obj, object? key)
    {
        switch (obj)
        {
            case Undefined u: throw u.Fail();
            case PyDict d:
                if (key != null && IsHashable(key) && d.TryGetValue(key, out var v)) return v;
                break;
            case List<object?> or PyTuple or string when IsInt(key):
                {
                    var bigIndex = ToBig(key);
                    if (bigIndex < int.MinValue || bigIndex > int.MaxValue) break; // out of range: undefined
                    long i = (long)bigIndex;
                    if (obj is string s)
                    {
                        if (!HasSurrogates(s))
                        {
                            if (i < 0) i += s.Length;
                            if (i >= 0 && i < s.Length) return s[(int)i].ToString();
                        }
                        else if (RuneAt(s, i) is { } rune) return rune;
                    }
                    else
                    {
                        var seq = AsSequence(obj)!;
                        if (i < 0) i += seq.Count;
                        if (i >= 0 && i < seq.Count) return seq[(int)i];
                    }
                    break;
                }
        }
        if (key is string name)
        {
            var attr = Methods.GetPythonAttribute(obj, name, out bool exists);
            if (exists) return attr;
        }
        return Undefined.ForAttr(obj, key);
    }

    private static readonly HashSet<string> UndefinedInstanceAttrs =
    [
        "__class__", "__doc__", "__module__", "__slots__", "__init__", "__new__", "__str__", "__repr__", "__eq__",
        "__ne__", "__hash__", "__iter__", "__aiter__", "__len__", "__bool__", "__getattr__", "__getitem__", "__call__",
        "__reduce__", "__reduce_ex__", "__sizeof__", "__dir__", "__format__", "__getattribute__", "__setattr__",
        "__delattr__", "__init_subclass__", "__subclasshook__", "__lt__", "__le__", "__gt__", "__ge__", "__add__",
        "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__", "__floordiv__",
        "__rfloordiv__", "__mod__", "__rmod__", "__pos__", "__neg__", "__int__", "__float__", "__complex__",
        "__pow__", "__rpow__",
    ];

    /// <summary>jinja2 sandbox <c>getattr</c>: attribute first, then item.</summary>
    public static object? GetAttr(object? obj, string name)
    {
        if (obj is Undefined u)
        {
            // Real (dunder) attributes of the Undefined object exist and are blocked by the sandbox.
            if (UndefinedInstanceAttrs.Contains(name)) return Undefined.Unsafe(obj, name);
            throw u.Fail();
        }
        var attr = Methods.GetPythonAttribute(obj, name, out bool exists);
        if (exists) return attr;
        if (obj is PyDict d && d.TryGetValue(name, out var v)) return v;
        return Undefined.ForAttr(obj, name);
    }

    public static bool IsPySpace(char c) => char.IsWhiteSpace(c) || (c >= '\x1c' && c <= '\x1f');
}
