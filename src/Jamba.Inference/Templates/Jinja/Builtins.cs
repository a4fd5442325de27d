using System.Globalization;
using System.Numerics;
using System.Text;
using System.Text.RegularExpressions;

namespace Jamba.Inference.Templates.Jinja;

/// <summary>jinja2 builtin filters, tests and globals (plus transformers' overrides).</summary>
internal static partial class Builtins
{
    private delegate object? FilterFn(Evaluator ev, object? value, CallArguments a);

    private delegate bool TestFn(Evaluator ev, object? value, CallArguments a);

    private static readonly Dictionary<string, FilterFn> Filters = new(StringComparer.Ordinal)
    {
        ["abs"] = (_, v, _) => v is double d ? Math.Abs(d) : Py.IsInt(v) ? Py.NormalizeInt(BigInteger.Abs(Py.ToBig(v))) : throw BadOperand("abs()", v),
        ["attr"] = (_, v, a) =>
        {
            var name = a.Get(0, "name") as string ?? "";
            if (v is Undefined u) throw u.Fail();
            var r = Methods.GetPythonAttribute(v, name, out bool exists);
            return exists ? r : Undefined.ForAttr(v, name);
        },
        ["batch"] = (_, v, a) => Batch(v, Methods.IntArg(a.Get(0, "linecount")), a.Get(1, "fill_with"), a.Has(1, "fill_with")),
        ["capitalize"] = (_, v, _) => Methods.Capitalize(Py.Str(v)),
        ["center"] = (_, v, a) => Center(Py.Str(v), Methods.IntArg(a.Get(0, "width", 80L))),
        ["count"] = (_, v, _) => Py.Len(v),
        ["d"] = Default,
        ["default"] = Default,
        ["dictsort"] = DictSort,
        ["e"] = (_, v, _) => Escape(v),
        ["escape"] = (_, v, _) => Escape(v),
        ["first"] = (_, v, _) =>
        {
            foreach (var x in Py.Iterate(v)) return x;
            return new Undefined("No first item, sequence was empty.");
        },
        ["float"] = (_, v, a) => ToFloat(v, a.Get(0, "default", 0.0)),
        ["forceescape"] = (_, v, _) => Escape(v),
        ["format"] = (_, v, a) =>
        {
            if (a.Positional.Count > 0 && a.Keywords.Count > 0)
                throw new TemplateException("FilterArgumentError", "can't handle positional and keyword arguments at the same time");
            object? args;
            if (a.Keywords.Count > 0)
            {
                var d = new PyDict();
                foreach (var kv in a.Keywords) d[kv.Key] = kv.Value;
                args = d;
            }
            else args = new PyTuple(a.Positional.ToArray());
            return Format.Percent(Py.Str(v), args);
        },
        ["indent"] = (_, v, a) => Indent(Py.Str(v), a.Get(0, "width", 4L), Py.Truthy(a.Get(1, "first", false)), Py.Truthy(a.Get(2, "blank", false))),
        ["int"] = (_, v, a) => ToInt(v, a.Get(0, "default", 0L), a.Get(1, "base", 10L)),
        ["items"] = (_, v, _) => v switch
        {
            Undefined => new List<object?>(),
            PyDict d => d.Select(kv => (object?)new PyTuple([kv.Key, kv.Value])).ToList(),
            _ => throw TemplateException.Type("Can only get item pairs from a mapping."),
        },
        ["join"] = (ev, v, a) =>
        {
            string sep = Py.Str(a.Get(0, "d", ""));
            var items = Py.Iterate(v);
            var attr = a.Get(1, "attribute");
            if (attr != null) items = items.Select(AttrGetter(attr, null)).ToList();
            var parts = items.Select(Py.Str).ToList();
            long length = parts.Sum(p => (long)p.Length) + (parts.Count > 0 ? (long)sep.Length * (parts.Count - 1) : 0);
            RenderContext.Current.Built(length, "joined string");
            return string.Join(sep, parts);
        },
        ["last"] = (_, v, _) =>
        {
            if (v is string s)
            {
                if (s.Length == 0) return new Undefined("No last item, sequence was empty.");
                return s.Length >= 2 && char.IsSurrogatePair(s[^2], s[^1]) ? s[^2..] : s[^1..];
            }
            var l = Py.ToList(v);
            return l.Count > 0 ? l[^1] : new Undefined("No last item, sequence was empty.");
        },
        ["length"] = (_, v, _) => Py.Len(v),
        ["list"] = (_, v, _) => Py.ToList(v),
        ["lower"] = (_, v, _) => Py.Str(v).ToLowerInvariant(),
        ["map"] = Map,
        ["max"] = (_, v, a) => MinMax(v, a, max: true),
        ["min"] = (_, v, a) => MinMax(v, a, max: false),
        ["pprint"] = (_, v, _) => Py.Repr(v),
        ["reject"] = (ev, v, a) => Select(ev, v, a, attr: false, want: false),
        ["rejectattr"] = (ev, v, a) => Select(ev, v, a, attr: true, want: false),
        ["replace"] = (_, v, a) => Methods.Replace(Py.Str(v), Py.Str(a.Get(0, "old")), Py.Str(a.Get(1, "new")), a.Get(2, "count") is { } c ? Methods.IntArg(c) : -1),
        ["reverse"] = (_, v, _) =>
        {
            if (v is string s) return ReverseString(s);
            var l = Py.ToList(v);
            l.Reverse();
            return l;
        },
        ["round"] = (_, v, a) => Round(v, (int)Methods.IntArg(a.Get(0, "precision", 0L)), Py.Str(a.Get(1, "method", "common"))),
        ["safe"] = (_, v, _) => v,
        ["select"] = (ev, v, a) => Select(ev, v, a, attr: false, want: true),
        ["selectattr"] = (ev, v, a) => Select(ev, v, a, attr: true, want: true),
        ["slice"] = (_, v, a) => SliceFilter(v, Methods.IntArg(a.Get(0, "slices")), a.Get(1, "fill_with"), a.Has(1, "fill_with")),
        ["sort"] = (_, v, a) => Sort(Py.ToList(v), Py.Truthy(a.Get(0, "reverse", false)), Py.Truthy(a.Get(1, "case_sensitive", false)), a.Get(2, "attribute")),
        ["string"] = (_, v, _) => Py.Str(v),
        ["striptags"] = (_, v, _) => string.Join(" ", Methods.Split(StripTags(Py.Str(v)), null, -1).Select(Py.Str)),
        ["sum"] = (_, v, a) =>
        {
            object? total = a.Get(1, "start", 0L);
            if (total is string) throw TemplateException.Type("sum() can't sum strings [use ''.join(seq) instead]");
            var items = Py.Iterate(v);
            var attr = a.Get(0, "attribute");
            if (attr != null) items = items.Select(AttrGetter(attr, null)).ToList();
            foreach (var x in items) total = Py.Add(total, x);
            return total;
        },
        ["title"] = (_, v, _) => Title(Py.Str(v)),
        ["tojson"] = ToJson,
        ["trim"] = (_, v, a) => Methods.Strip(Py.Str(v), a.Get(0, "chars") is { } c ? Py.Str(c) : null, true, true),
        ["truncate"] = (_, v, a) => Truncate(Py.Str(v), Methods.IntArg(a.Get(0, "length", 255L)), Py.Truthy(a.Get(1, "killwords", false)), Py.Str(a.Get(2, "end", "...")), a.Get(3, "leeway") is { } lw ? Methods.IntArg(lw) : 5),
        ["unique"] = (_, v, a) => Unique(Py.ToList(v), Py.Truthy(a.Get(0, "case_sensitive", false)), a.Get(1, "attribute")),
        ["upper"] = (_, v, _) => Py.Str(v).ToUpperInvariant(),
        ["urlencode"] = (_, v, _) => UrlEncode(v),
        ["wordcount"] = (_, v, _) => (long)WordRegex().Matches(Py.Str(v)).Count,
    };

    private static readonly Dictionary<string, TestFn> Tests = new(StringComparer.Ordinal)
    {
        ["boolean"] = (_, v, _) => v is bool,
        ["callable"] = (_, v, _) => v is IPyCallable or Undefined,
        ["defined"] = (_, v, _) => v is not Undefined,
        ["divisibleby"] = (_, v, a) => Py.Equal(Py.Mod(v, a.Get(0, "num")), 0L),
        ["eq"] = (_, v, a) => Py.Equal(v, a.Get(0, "other")),
        ["equalto"] = (_, v, a) => Py.Equal(v, a.Get(0, "other")),
        ["=="] = (_, v, a) => Py.Equal(v, a.Get(0, "other")),
        ["escaped"] = (_, _, _) => false,
        ["even"] = (_, v, _) => Py.Equal(Py.Mod(v, 2L), 0L),
        ["false"] = (_, v, _) => v is false,
        ["filter"] = (_, v, _) => v is string s && Filters.ContainsKey(s),
        ["float"] = (_, v, _) => v is double,
        ["ge"] = (_, v, a) => Evaluator.CompareOp(">=", v, a.Get(0, "other")),
        [">="] = (_, v, a) => Evaluator.CompareOp(">=", v, a.Get(0, "other")),
        ["gt"] = (_, v, a) => Evaluator.CompareOp(">", v, a.Get(0, "other")),
        [">"] = (_, v, a) => Evaluator.CompareOp(">", v, a.Get(0, "other")),
        ["greaterthan"] = (_, v, a) => Evaluator.CompareOp(">", v, a.Get(0, "other")),
        ["in"] = (_, v, a) => Py.Contains(a.Get(0, "seq"), v),
        ["integer"] = (_, v, _) => v is long or BigInteger,
        ["iterable"] = (_, v, _) => v is string or List<object?> or PyTuple or PyDict or Undefined,
        ["le"] = (_, v, a) => Evaluator.CompareOp("<=", v, a.Get(0, "other")),
        ["<="] = (_, v, a) => Evaluator.CompareOp("<=", v, a.Get(0, "other")),
        ["lower"] = (_, v, _) => Py.Str(v) is var s && s.Any(char.IsLetter) && !s.Any(char.IsUpper),
        ["lt"] = (_, v, a) => Evaluator.CompareOp("<", v, a.Get(0, "other")),
        ["<"] = (_, v, a) => Evaluator.CompareOp("<", v, a.Get(0, "other")),
        ["lessthan"] = (_, v, a) => Evaluator.CompareOp("<", v, a.Get(0, "other")),
        ["mapping"] = (_, v, _) => v is PyDict,
        ["ne"] = (_, v, a) => !Py.Equal(v, a.Get(0, "other")),
        ["!="] = (_, v, a) => !Py.Equal(v, a.Get(0, "other")),
        ["none"] = (_, v, _) => v is null,
        ["number"] = (_, v, _) => Py.IsNumber(v),
        ["odd"] = (_, v, _) => Py.Equal(Py.Mod(v, 2L), 1L),
        ["sameas"] = (_, v, a) => SameAs(v, a.Get(0, "other")),
        ["sequence"] = (_, v, _) => v is string or List<object?> or PyTuple or PyDict or Undefined,
        ["string"] = (_, v, _) => v is string,
        ["test"] = (_, v, _) => v is string s && Tests!.ContainsKey(s),
        ["true"] = (_, v, _) => v is true,
        ["undefined"] = (_, v, _) => v is Undefined,
        ["upper"] = (_, v, _) => Py.Str(v) is var s && s.Any(char.IsLetter) && !s.Any(char.IsLower),
    };

    public static bool HasFilter(string name) => Filters.ContainsKey(name);

    public static bool HasTest(string name) => Tests.ContainsKey(name);

    public static object? CallFilter(Evaluator ev, string name, object? value, CallArguments args)
    {
        if (!Filters.TryGetValue(name, out var f))
            throw new TemplateException("TemplateRuntimeError", $"No filter named {Py.Repr(name)}.");
        var result = f(ev, value, args);
        if (!ReferenceEquals(result, value)) RenderContext.Current.BuiltValue(result);
        return result;
    }

    public static bool CallTest(Evaluator ev, string name, object? value, CallArguments args) =>
        Tests.TryGetValue(name, out var t)
            ? t(ev, value, args)
            : throw new TemplateException("TemplateRuntimeError", $"No test named {Py.Repr(name)}.");

    // ------------------------------------------------------------------ globals

    /// <summary>The globals of transformers' chat-template environment.</summary>
    public static void AddGlobals(Scope scope, Func<DateTime> now)
    {
        scope.Set("range", new BuiltinFunction("range", (_, a) => Range(a)));
        scope.Set("dict", new BuiltinFunction("dict", (_, a) =>
        {
            var d = new PyDict();
            if (a.Positional.Count > 0) FillDict(d, a.Positional[0]);
            foreach (var kv in a.Keywords) d[kv.Key] = kv.Value;
            return d;
        }));
        scope.Set("namespace", new BuiltinFunction("namespace", (_, a) =>
        {
            var ns = new Namespace();
            if (a.Positional.Count > 0)
            {
                var d = new PyDict();
                FillDict(d, a.Positional[0]);
                foreach (var kv in d) ns.Set(Py.Str(kv.Key), kv.Value);
            }
            foreach (var kv in a.Keywords) ns.Set(kv.Key, kv.Value);
            return ns;
        }));
        scope.Set("raise_exception", new BuiltinFunction("raise_exception", (_, a) =>
            throw new TemplateException("TemplateError", Py.Str(a.Get(0, "message")))));
        scope.Set("strftime_now", new BuiltinFunction("strftime_now", (_, a) =>
            StrFTime.Format(now(), Py.Str(a.Get(0, "format")))));
        scope.Set("cycler", new BuiltinFunction("cycler", (_, a) => a.Positional.Count == 0
            ? throw new TemplateException("RuntimeError", "at least one item has to be provided")
            : new Cycler(new List<object?>(a.Positional))));
        scope.Set("joiner", new BuiltinFunction("joiner", (_, a) =>
        {
            string sep = Py.Str(a.Get(0, "sep", ", "));
            bool used = false;
            return new BuiltinFunction("joiner", (_, _) =>
            {
                if (!used) { used = true; return ""; }
                return sep;
            });
        }));
    }

    private static void FillDict(PyDict d, object? src)
    {
        if (src is PyDict pd)
        {
            foreach (var kv in pd) d[kv.Key] = kv.Value;
            return;
        }
        foreach (var pair in Py.Iterate(src))
        {
            var kv = Py.ToList(pair);
            if (kv.Count != 2) throw TemplateException.Value($"dictionary update sequence element has length {kv.Count}; 2 is required");
            var key = kv[0] ?? throw TemplateException.Type("None keys are not supported");
            if (!Py.IsHashable(key)) throw TemplateException.Type($"unhashable type: {Py.Repr(Py.TypeName(key))}");
            d[key] = kv[1];
        }
    }

    private static object Range(CallArguments a)
    {
        long start = 0, stop, step = 1;
        var p = a.Positional;
        if (p.Count == 0) throw TemplateException.Type("range expected at least 1 argument, got 0");
        if (p.Count == 1) stop = Methods.IntArg(p[0]);
        else
        {
            start = Methods.IntArg(p[0]);
            stop = Methods.IntArg(p[1]);
            if (p.Count > 2) step = Methods.IntArg(p[2]);
        }
        if (step == 0) throw TemplateException.Value("range() arg 3 must not be zero");
        // Int128: the distance between two 64-bit bounds does not fit in a long.
        Int128 span = step > 0 ? (Int128)stop - start : (Int128)start - stop;
        Int128 absStep = Int128.Abs(step);
        Int128 count128 = span <= 0 ? 0 : (span + absStep - 1) / absStep;
        if (count128 > 100000)
            throw new TemplateException("OverflowError", "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
        long count = (long)count128;
        var r = new List<object?>((int)count);
        for (long i = 0; i < count; i++) r.Add(start + i * step);
        return r;
    }

    // ------------------------------------------------------------------ filter implementations

    private static TemplateException BadOperand(string what, object? v) =>
        TemplateException.Type($"bad operand type for {what}: {Py.Repr(Py.TypeName(v))}");

    private static object? Default(Evaluator ev, object? v, CallArguments a)
    {
        var def = a.Get(0, "default_value", "");
        bool boolean = Py.Truthy(a.Get(1, "boolean", false));
        return v is Undefined || (boolean && !Py.Truthy(v)) ? def : v;
    }

    private static object? ToJson(Evaluator ev, object? v, CallArguments a)
    {
        bool ensureAscii = Py.Truthy(a.Get(0, "ensure_ascii", false));
        var indentArg = a.Get(1, "indent");
        var separators = a.Get(2, "separators");
        bool sortKeys = Py.Truthy(a.Get(3, "sort_keys", false));
        string? indent = indentArg switch
        {
            null => null,
            string s => s,
            _ when Py.IsInt(indentArg) => new string(' ', Format.CheckCount(Math.Max(0, Py.ToSsize(indentArg, "cannot fit 'int' into an index-sized integer")), "indent")),
            _ => throw TemplateException.Type("indent must be an int or str"),
        };
        string itemSep = indent == null ? ", " : ",", keySep = ": ";
        if (separators != null)
        {
            var seps = Py.ToList(separators);
            if (seps.Count != 2) throw TemplateException.Value("separators must be a (item_separator, key_separator) pair");
            itemSep = Py.Str(seps[0]);
            keySep = Py.Str(seps[1]);
        }
        return PyJson.Dumps(v, ensureAscii, indent, itemSep, keySep, sortKeys);
    }

    private static object? ToInt(object? v, object? def, object? baseArg)
    {
        // jinja2 3.1 do_int: int(value, base); on TypeError/ValueError int(float(value)), and on
        // TypeError/ValueError/OverflowError there the default. An invalid base is a ValueError.
        if (v is Undefined u) throw u.Fail();
        long lb = Methods.IntArg(baseArg);
        int b = lb is 0 or (>= 2 and <= 36) ? (int)lb : -1;
        if (v is string s)
        {
            if (b >= 0 && TryParsePyInt(s, b, out var iv)) return iv;
            if (TryParsePyFloat(s, out var fv) && double.IsFinite(fv)) return Py.NormalizeInt(new BigInteger(Math.Truncate(fv)));
            return def;
        }
        if (Py.IsInt(v)) return Py.NormalizeInt(Py.ToBig(v));
        if (v is double d)
        {
            if (double.IsInfinity(d)) throw new TemplateException("OverflowError", "cannot convert float infinity to integer");
            if (double.IsNaN(d)) return def;
            return Py.NormalizeInt(new BigInteger(Math.Truncate(d)));
        }
        return def;
    }

    private static object? ToFloat(object? v, object? def)
    {
        if (v is Undefined u) throw u.Fail();
        if (v is string s) return TryParsePyFloat(s, out var f) ? f : def;
        if (Py.IsNumber(v)) return Py.ToDouble(v);
        return def;
    }

    public static bool TryParsePyInt(string s, int b, out object value)
    {
        value = 0L;
        string t = s.Trim().Replace("_", "", StringComparison.Ordinal);
        if (s.Trim().StartsWith('_') || s.Trim().EndsWith('_') || s.Contains("__", StringComparison.Ordinal)) return false;
        bool neg = false;
        if (t.StartsWith('+') || t.StartsWith('-')) { neg = t[0] == '-'; t = t[1..]; }
        if (b == 0 || b == 16 || b == 8 || b == 2)
        {
            string lower = t.ToLowerInvariant();
            if ((b is 0 or 16) && lower.StartsWith("0x", StringComparison.Ordinal)) { b = 16; t = t[2..]; }
            else if ((b is 0 or 8) && lower.StartsWith("0o", StringComparison.Ordinal)) { b = 8; t = t[2..]; }
            else if ((b is 0 or 2) && lower.StartsWith("0b", StringComparison.Ordinal)) { b = 2; t = t[2..]; }
            else if (b == 0) b = 10;
        }
        if (t.Length == 0) return false;
        RenderContext.Current.Charge(t.Length);
        bool powerOfTwo = (b & (b - 1)) == 0;
        // CPython refuses decimal (non power-of-two base) text over 4300 digits: a ValueError, so the default.
        if (!powerOfTwo && t.Length > RenderContext.MaxIntDigits) return false;
        if (powerOfTwo && (long)t.Length * System.Numerics.BitOperations.Log2((uint)b) > RenderContext.MaxIntBits)
        {
            if (!t.All(c => char.IsAsciiLetterOrDigit(c) && (c <= '9' ? c - '0' : char.ToLowerInvariant(c) - 'a' + 10) < b)) return false;
            throw new TemplateException("OverflowError", $"integer too large: more than the {RenderContext.MaxIntBits} bits this renderer computes");
        }
        if (b == 10 && t.All(char.IsAsciiDigit))
        {
            var dec = BigInteger.Parse(t, CultureInfo.InvariantCulture);
            value = Py.NormalizeInt(neg ? -dec : dec);
            return true;
        }
        BigInteger acc = 0;
        foreach (char c in t)
        {
            int dgt = c >= '0' && c <= '9' ? c - '0' : char.ToLowerInvariant(c) is >= 'a' and <= 'z' ? char.ToLowerInvariant(c) - 'a' + 10 : 99;
            if (dgt >= b) return false;
            acc = acc * b + dgt;
        }
        value = Py.NormalizeInt(neg ? -acc : acc);
        return true;
    }

    public static bool TryParsePyFloat(string s, out double value)
    {
        string t = s.Trim().Replace("_", "", StringComparison.Ordinal).ToLowerInvariant();
        string body = t.TrimStart('+', '-');
        bool neg = t.StartsWith('-');
        if (body is "inf" or "infinity") { value = neg ? double.NegativeInfinity : double.PositiveInfinity; return true; }
        if (body == "nan") { value = double.NaN; return true; }
        if (body.Length == 0 || !body.All(c => char.IsAsciiDigit(c) || c is '.' or 'e' or '+' or '-')) { value = 0; return false; }
        return double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out value);
    }

    private static object Round(object? v, int precision, string method)
    {
        if (!Py.IsNumber(v)) throw TemplateException.Type($"type {Py.TypeName(v)} doesn't define __round__ method");
        double d = Py.ToDouble(v);
        double m = Math.Pow(10, precision);
        return method switch
        {
            "common" => Math.Round(d, Math.Max(0, Math.Min(15, precision)), MidpointRounding.ToEven),
            "ceil" => Math.Ceiling(d * m) / m,
            "floor" => Math.Floor(d * m) / m,
            _ => throw new TemplateException("FilterArgumentError", "method must be common, ceil or floor"),
        };
    }

    private static string Escape(object? v)
    {
        var s = Py.Str(v);
        return s.Replace("&", "&amp;", StringComparison.Ordinal).Replace("<", "&lt;", StringComparison.Ordinal)
            .Replace(">", "&gt;", StringComparison.Ordinal).Replace("\"", "&#34;", StringComparison.Ordinal)
            .Replace("'", "&#39;", StringComparison.Ordinal);
    }

    private static string Center(string s, long width)
    {
        long len = Py.StrLen(s);
        if (width <= len) return s;
        long total = width - len;
        RenderContext.Current.Built(s.Length + total, "centered string");
        long left = total / 2 + (total & width & 1);
        return new string(' ', (int)left) + s + new string(' ', (int)(total - left));
    }

    /// <summary>Code points in reverse order (a surrogate pair stays a pair).</summary>
    private static string ReverseString(string s)
    {
        var chars = new char[s.Length];
        int w = s.Length;
        for (int i = 0; i < s.Length; i++)
        {
            if (i + 1 < s.Length && char.IsSurrogatePair(s[i], s[i + 1]))
            {
                chars[w - 2] = s[i];
                chars[w - 1] = s[i + 1];
                w -= 2;
                i++;
            }
            else chars[--w] = s[i];
        }
        return new string(chars);
    }

    /// <summary>jinja2 <c>do_title</c>: split on runs of <c>-</c>, whitespace, <c>( { [ &lt;</c>.</summary>
    public static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        foreach (var item in TitleSplitRegex().Split(s))
        {
            bool first = true;
            foreach (Rune r in item.EnumerateRunes())
            {
                sb.Append((first ? Rune.ToUpperInvariant(r) : Rune.ToLowerInvariant(r)).ToString());
                first = false;
            }
        }
        return sb.ToString();
    }

    private static string Indent(string s, object? width, bool first, bool blank)
    {
        string indention = width is string ws
            ? ws
            : new string(' ', Format.CheckCount(Math.Max(0, width is Undefined u ? throw u.Fail() : Py.IsInt(width)
                ? Py.ToSsize(width, "cannot fit 'int' into an index-sized integer")
                : throw TemplateException.Type($"can't multiply sequence by non-int of type {Py.Repr(Py.TypeName(width))}")), "indent width"));
        s += "\n";
        string rv;
        var lines = Methods.SplitLines(s, false);
        RenderContext.Current.Built(s.Length + (long)(lines.Count + 1) * indention.Length, "indented string");
        if (blank) rv = string.Join("\n" + indention, lines);
        else
        {
            rv = lines[0];
            if (lines.Count > 1)
                rv += "\n" + string.Join("\n", lines.Skip(1).Select(l => l.Length > 0 ? indention + l : l));
        }
        if (first) rv = indention + rv;
        return rv;
    }

    private static string Truncate(string s, long length, bool killwords, string end, long leeway)
    {
        if (length < end.Length) throw new TemplateException("AssertionError", $"expected length >= {end.Length}, got {length}");
        if (leeway < 0) throw new TemplateException("AssertionError", $"expected leeway >= 0, got {leeway}");
        long count = Py.StrLen(s);
        if (count <= length || count - length <= leeway) return s;
        string head = Py.HasSurrogates(s)
            ? string.Concat(Py.Runes(s).Take((int)(length - end.Length)))
            : s[..(int)(length - end.Length)];
        if (killwords) return head + end;
        int sp = head.LastIndexOf(' ');
        return (sp >= 0 ? head[..sp] : head) + end;
    }

    /// <summary>jinja2 <c>make_attrgetter</c>: dotted path, integer parts index, sandbox getitem.</summary>
    private static Func<object?, object?> AttrGetter(object? attribute, object? defaultValue)
    {
        object?[] parts = attribute is string s
            ? s.Split('.').Select(p => p.Length > 0 && p.All(char.IsAsciiDigit) ? (object?)long.Parse(p, CultureInfo.InvariantCulture) : p).ToArray()
            : [attribute];
        return item =>
        {
            foreach (var p in parts)
            {
                item = Py.GetItem(item, p);
                if (defaultValue != null && item is Undefined) item = defaultValue;
            }
            return item;
        };
    }

    private static object? Map(Evaluator ev, object? v, CallArguments a)
    {
        var items = Py.Iterate(v);
        if (a.Positional.Count == 0 && a.Keywords.Any(kv => kv.Key == "attribute"))
        {
            var attribute = a.Keywords.First(kv => kv.Key == "attribute").Value;
            var def = a.Keywords.FirstOrDefault(kv => kv.Key == "default").Value;
            var getter = AttrGetter(attribute, def);
            return items.Select(getter).ToList();
        }
        if (a.Positional.Count == 0) throw new TemplateException("FilterArgumentError", "map requires a filter argument");
        string name = Py.Str(a.Positional[0]);
        var rest = new CallArguments();
        rest.Positional.AddRange(a.Positional.Skip(1));
        rest.Keywords.AddRange(a.Keywords);
        return items.Select(x => CallFilter(ev, name, x, rest)).ToList();
    }

    private static object? Select(Evaluator ev, object? v, CallArguments a, bool attr, bool want)
    {
        int off = 0;
        Func<object?, object?> transform = x => x;
        if (attr)
        {
            transform = AttrGetter(a.Get(0, "attribute"), null);
            off = 1;
        }
        Func<object?, bool> test;
        if (a.Positional.Count > off)
        {
            string name = Py.Str(a.Positional[off]);
            var rest = new CallArguments();
            rest.Positional.AddRange(a.Positional.Skip(off + 1));
            rest.Keywords.AddRange(a.Keywords.Where(kv => kv.Key != "attribute"));
            if (!Tests.ContainsKey(name)) throw new TemplateException("TemplateRuntimeError", $"No test named {Py.Repr(name)}.");
            test = x => CallTest(ev, name, x, rest);
        }
        else test = Py.Truthy;
        return Py.Iterate(v).Where(x => test(transform(x)) == want).ToList();
    }

    private static object? SortKey(object? x, bool caseSensitive) =>
        !caseSensitive && x is string s ? s.ToLowerInvariant() : x;

    private static List<object?> Sort(List<object?> items, bool reverse, bool caseSensitive, object? attribute)
    {
        var getters = attribute == null
            ? [x => x]
            : (attribute is string s ? s.Split(',').Select(p => AttrGetter(p.Trim(), null)).ToArray() : [AttrGetter(attribute, null)]);
        int Cmp(object? x, object? y)
        {
            foreach (var g in getters)
            {
                int c = Py.Compare(SortKey(g(x), caseSensitive), SortKey(g(y), caseSensitive), "<");
                if (c != 0) return c;
            }
            return 0;
        }
        var keyed = items.Select((x, i) => (x, i)).ToList();
        Py.Sort(keyed, (p, q) =>
        {
            int c = Cmp(p.x, q.x);
            if (reverse) c = -c;
            return c != 0 ? c : p.i.CompareTo(q.i);
        });
        return keyed.Select(p => p.x).ToList();
    }

    private static object? DictSort(Evaluator ev, object? v, CallArguments a)
    {
        if (v is not PyDict d) throw TemplateException.Type("Can only sort mappings.");
        bool cs = Py.Truthy(a.Get(0, "case_sensitive", false));
        string by = Py.Str(a.Get(1, "by", "key"));
        bool reverse = Py.Truthy(a.Get(2, "reverse", false));
        int pos = by switch
        {
            "key" => 0,
            "value" => 1,
            _ => throw new TemplateException("FilterArgumentError", "You can only sort by either \"key\" or \"value\""),
        };
        var items = d.Select(kv => (object?)new PyTuple([kv.Key, kv.Value])).ToList();
        var sorted = items.Select((x, i) => (x, i)).ToList();
        Py.Sort(sorted, (p, q) =>
        {
            int c = Py.Compare(SortKey(((PyTuple)p.x!).Items[pos], cs), SortKey(((PyTuple)q.x!).Items[pos], cs), "<");
            if (reverse) c = -c;
            return c != 0 ? c : p.i.CompareTo(q.i);
        });
        return sorted.Select(p => p.x).ToList();
    }

    private static List<object?> Unique(List<object?> items, bool caseSensitive, object? attribute)
    {
        // jinja2 keeps the keys it has seen in a set: linear time, and unhashable keys are a TypeError.
        var getter = attribute == null ? (x => x) : AttrGetter(attribute, null);
        var seen = new HashSet<object>(PyKeyComparer.Instance);
        bool seenNone = false;
        var res = new List<object?>();
        foreach (var x in items)
        {
            var key = SortKey(getter(x), caseSensitive);
            if (key == null)
            {
                if (seenNone) continue;
                seenNone = true;
            }
            else
            {
                if (!Py.IsHashable(key)) throw TemplateException.Type($"unhashable type: {Py.Repr(Py.TypeName(key))}");
                if (!seen.Add(key)) continue;
            }
            res.Add(x);
        }
        return res;
    }

    private static object? MinMax(object? v, CallArguments a, bool max)
    {
        bool cs = Py.Truthy(a.Get(0, "case_sensitive", false));
        var attribute = a.Get(1, "attribute");
        var getter = attribute == null ? (x => x) : AttrGetter(attribute, null);
        var items = Py.ToList(v);
        if (items.Count == 0) return new Undefined("No aggregated item, sequence was empty.");
        var best = items[0];
        foreach (var x in items.Skip(1))
        {
            int c = Py.Compare(SortKey(getter(x), cs), SortKey(getter(best), cs), "<");
            if (max ? c > 0 : c < 0) best = x;
        }
        return best;
    }

    private static List<object?> Batch(object? v, long n, object? fill, bool hasFill)
    {
        if (n <= 0) throw TemplateException.Value("batch size must be positive");
        if (hasFill && fill != null) RenderContext.Current.Built(n, "batch", "items");
        var res = new List<object?>();
        List<object?>? cur = null;
        foreach (var x in Py.Iterate(v))
        {
            cur ??= new List<object?>();
            cur.Add(x);
            if (cur.Count == n) { res.Add(cur); cur = null; }
        }
        if (cur != null)
        {
            if (hasFill && fill != null) while (cur.Count < n) cur.Add(fill);
            res.Add(cur);
        }
        return res;
    }

    private static List<object?> SliceFilter(object? v, long slices, object? fill, bool hasFill)
    {
        if (slices == 0) throw new TemplateException("ZeroDivisionError", "integer division or modulo by zero");
        if (slices < 0) return new List<object?>();
        RenderContext.Current.Built(slices, "list of slices", "items");
        var seq = Py.ToList(v);
        int length = seq.Count;
        long perSlice = length / slices, withExtra = length % slices;
        long offset = 0;
        var res = new List<object?>();
        for (long i = 0; i < slices; i++)
        {
            long start = offset + i * perSlice;
            if (i < withExtra) offset++;
            long end = offset + (i + 1) * perSlice;
            var tmp = seq.Skip((int)start).Take((int)(end - start)).ToList();
            if (hasFill && fill != null && i >= withExtra) tmp.Add(fill);
            res.Add(tmp);
        }
        return res;
    }

    private static string UrlEncode(object? v)
    {
        static string Q(object? x, bool forQs)
        {
            string e = Uri.EscapeDataString(Py.Str(x));
            return forQs ? e.Replace("%20", "+", StringComparison.Ordinal) : e.Replace("%2F", "/", StringComparison.Ordinal);
        }
        if (v is not (List<object?> or PyTuple or PyDict or Undefined)) return Q(v, false);
        IEnumerable<object?> pairs = v is PyDict d ? d.Select(kv => (object?)new PyTuple([kv.Key, kv.Value])) : Py.Iterate(v);
        return string.Join("&", pairs.Select(p =>
        {
            if (p is not (string or List<object?> or PyTuple or PyDict))
                throw TemplateException.Type($"cannot unpack non-iterable {Py.TypeName(p)} object");
            var kv = Py.ToList(p);
            if (kv.Count < 2) throw TemplateException.Value($"not enough values to unpack (expected 2, got {kv.Count})");
            if (kv.Count > 2) throw TemplateException.Value("too many values to unpack (expected 2)");
            return Q(kv[0], true) + "=" + Q(kv[1], true);
        }));
    }

    private static bool SameAs(object? a, object? b)
    {
        if (a == null || b == null) return a == null && b == null;
        if (a is bool || a is long || a is string) return a.GetType() == b.GetType() && Py.Equal(a, b);
        return ReferenceEquals(a, b);
    }

    [GeneratedRegex(@"([-\s({\[<]+)")]
    private static partial Regex TitleSplitRegex();

    [GeneratedRegex(@"\w+")]
    private static partial Regex WordRegex();

    /// <summary>
    /// Removes what the regex <c>(&lt;!--.*?--&gt;|&lt;[^&gt;]*&gt;)</c> (jinja2's striptags) matches, in linear time: the
    /// regex rescans to the end of the text for every unclosed <c>&lt;</c>, quadratic on hostile input.
    /// </summary>
    private static string StripTags(string s)
    {
        var sb = new StringBuilder(s.Length);
        int nextGt = -2, nextComment = -2; // cached searches: positions only move forward
        int i = 0;
        while (i < s.Length)
        {
            int lt = s.IndexOf('<', i);
            if (lt < 0) break;
            sb.Append(s, i, lt - i);
            int end = -1;
            if (string.CompareOrdinal(s, lt, "<!--", 0, 4) == 0)
            {
                if (nextComment != -1 && nextComment < lt + 4) nextComment = s.IndexOf("-->", lt + 4, StringComparison.Ordinal);
                if (nextComment >= 0) end = nextComment + 3;
            }
            if (end < 0)
            {
                if (nextGt != -1 && nextGt <= lt) nextGt = s.IndexOf('>', lt + 1);
                if (nextGt >= 0) end = nextGt + 1;
            }
            if (end < 0)
            {
                sb.Append('<');
                i = lt + 1;
            }
            else i = end;
        }
        if (i < s.Length) sb.Append(s, i, s.Length - i);
        return sb.ToString();
    }
}

/// <summary>Python <c>datetime.strftime</c> (C locale).</summary>
internal static class StrFTime
{
    public static string Format(DateTime t, string fmt)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        for (int i = 0; i < fmt.Length; i++)
        {
            char c = fmt[i];
            if (c != '%' || i + 1 >= fmt.Length) { sb.Append(c); continue; }
            char d = fmt[++i];
            bool noPad = false;
            if (d == '-' && i + 1 < fmt.Length) { noPad = true; d = fmt[++i]; }
            string Pad(int v, int w) => noPad ? v.ToString(inv) : v.ToString(new string('0', w), inv);
            switch (d)
            {
                case 'a': sb.Append(t.ToString("ddd", inv)); break;
                case 'A': sb.Append(t.ToString("dddd", inv)); break;
                case 'w': sb.Append((int)t.DayOfWeek); break;
                case 'd': sb.Append(Pad(t.Day, 2)); break;
                case 'e': sb.Append(t.Day.ToString(inv).PadLeft(2)); break;
                case 'b' or 'h': sb.Append(t.ToString("MMM", inv)); break;
                case 'B': sb.Append(t.ToString("MMMM", inv)); break;
                case 'm': sb.Append(Pad(t.Month, 2)); break;
                case 'y': sb.Append(Pad(t.Year % 100, 2)); break;
                case 'Y': sb.Append(t.Year.ToString(inv)); break;
                case 'H': sb.Append(Pad(t.Hour, 2)); break;
                case 'I': sb.Append(Pad(t.Hour % 12 == 0 ? 12 : t.Hour % 12, 2)); break;
                case 'p': sb.Append(t.Hour < 12 ? "AM" : "PM"); break;
                case 'M': sb.Append(Pad(t.Minute, 2)); break;
                case 'S': sb.Append(Pad(t.Second, 2)); break;
                case 'f': sb.Append((t.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", inv)); break;
                case 'z': break;
                case 'Z': break;
                case 'j': sb.Append(Pad(t.DayOfYear, 3)); break;
                case 'U': sb.Append(Pad((t.DayOfYear + 6 - (int)t.DayOfWeek) / 7, 2)); break;
                case 'W': sb.Append(Pad((t.DayOfYear + 6 - ((int)t.DayOfWeek + 6) % 7) / 7, 2)); break;
                case 'c': sb.Append(t.ToString("ddd MMM ", inv)).Append(t.Day.ToString(inv).PadLeft(2)).Append(t.ToString(" HH:mm:ss yyyy", inv)); break;
                case 'x': sb.Append(t.ToString("MM/dd/yy", inv)); break;
                case 'X': sb.Append(t.ToString("HH:mm:ss", inv)); break;
                case 'D': sb.Append(t.ToString("MM/dd/yy", inv)); break;
                case 'F': sb.Append(t.ToString("yyyy-MM-dd", inv)); break;
                case 'T': sb.Append(t.ToString("HH:mm:ss", inv)); break;
                case 'R': sb.Append(t.ToString("HH:mm", inv)); break;
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case '%': sb.Append('%'); break;
                default: sb.Append('%').Append(d); break;
            }
        }
        return sb.ToString();
    }
}
