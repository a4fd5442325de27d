using System.Globalization;
using System.Text;

namespace Jamba.Inference.Templates.Jinja;

/// <summary>Python attributes and methods of builtin values, with the immutable sandbox rules.</summary>
internal static class Methods
{
    private static readonly HashSet<string> StrMethods =
    [
        "capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find", "format",
        "format_map", "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier",
        "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper", "join", "ljust", "lower",
        "lstrip", "maketrans", "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex",
        "rjust", "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip", "swapcase",
        "title", "translate", "upper", "zfill",
    ];

    private static readonly HashSet<string> DictSafe = ["copy", "fromkeys", "get", "items", "keys", "values"];
    private static readonly HashSet<string> DictUnsafe = ["clear", "pop", "popitem", "setdefault", "update"];
    private static readonly HashSet<string> ListSafe = ["copy", "count", "index"];
    private static readonly HashSet<string> ListUnsafe = ["append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort"];
    private static readonly HashSet<string> TupleSafe = ["count", "index"];

    /// <summary>
    /// Python <c>getattr(obj, name)</c> under ImmutableSandboxedEnvironment. <paramref name="exists"/> is
    /// false when Python would raise AttributeError (the caller then falls back to item lookup).
    /// </summary>
    public static object? GetPythonAttribute(object? obj, string name, out bool exists)
    {
        exists = true;
        if (name.StartsWith("__", StringComparison.Ordinal) && name.EndsWith("__", StringComparison.Ordinal) && name.Length > 4)
            return Undefined.Unsafe(obj, name);
        switch (obj)
        {
            case string s when StrMethods.Contains(name): return new BoundMethod(s, name);
            case PyDict d when DictSafe.Contains(name): return new BoundMethod(d, name);
            case PyDict d when DictUnsafe.Contains(name): return Undefined.Unsafe(d, name);
            case List<object?> l when ListSafe.Contains(name): return new BoundMethod(l, name);
            case List<object?> l when ListUnsafe.Contains(name): return Undefined.Unsafe(l, name);
            case PyTuple t when TupleSafe.Contains(name): return new BoundMethod(t, name);
            case Namespace ns when ns.Attrs.TryGetValue(name, out var v): return v;
            case LoopContext lc when lc.TryGetAttr(name, out var lv): return lv;
            case Cycler c:
                switch (name)
                {
                    case "current": return c.Items.Count == 0 ? null : c.Items[c.Pos];
                    case "next":
                        return new BuiltinFunction("next", (_, _) =>
                        {
                            if (c.Items.Count == 0) throw new TemplateException("IndexError", "list index out of range");
                            var rv = c.Items[c.Pos];
                            c.Pos = (c.Pos + 1) % c.Items.Count;
                            return rv;
                        });
                    case "reset": return new BuiltinFunction("reset", (_, _) => { c.Pos = 0; return null; });
                }
                break;
            case Macro m:
                switch (name)
                {
                    case "name": return m.Name;
                    case "arguments": return new PyTuple(m.Params.Select(p => (object?)p).ToArray());
                    case "catch_kwargs": return m.CatchKwargs;
                    case "catch_varargs": return m.CatchVarargs;
                    case "caller": return m.UsesCaller;
                }
                break;
            case long or System.Numerics.BigInteger or bool when name is "real" or "numerator": return Py.NormalizeInt(Py.ToBig(obj));
            case long or System.Numerics.BigInteger or bool when name is "imag": return 0L;
            case double d when name is "real": return d;
            case double when name is "imag": return 0.0;
        }
        exists = false;
        return null;
    }

    public static object? Invoke(Evaluator ev, object target, string name, CallArguments a)
    {
        // Every method scans its receiver at most a few times: charge that work up front.
        var ctx = RenderContext.Current;
        switch (target)
        {
            case string str: ctx.ChargeChars(str.Length); break;
            case List<object?> list: ctx.Charge(list.Count); break;
            case PyDict dict: ctx.Charge(dict.Count); break;
            case PyTuple tuple: ctx.Charge(tuple.Items.Length); break;
        }
        switch (target)
        {
            case string s: return StrMethod(ev, s, name, a);
            case PyDict d:
                switch (name)
                {
                    case "items": return d.Select(kv => (object?)new PyTuple([kv.Key, kv.Value])).ToList();
                    case "keys": return d.Keys.Cast<object?>().ToList();
                    case "values": return d.Values.ToList();
                    case "get":
                        {
                            var k = a.Get(0, "key");
                            return k != null && Py.IsHashable(k) && d.TryGetValue(k, out var v) ? v : a.Get(1, "default");
                        }
                    case "copy":
                        {
                            var c = new PyDict();
                            foreach (var kv in d) c[kv.Key] = kv.Value;
                            return c;
                        }
                }
                break;
            case List<object?> l:
                switch (name)
                {
                    case "copy": return new List<object?>(l);
                    case "count": return (long)l.Count(x => Py.Equal(x, a.Get(0, "value")));
                    case "index":
                        {
                            var x = a.Get(0, "value");
                            int i = l.FindIndex(y => Py.Equal(x, y));
                            if (i < 0) throw TemplateException.Value($"{Py.Repr(x)} is not in list");
                            return (long)i;
                        }
                }
                break;
            case PyTuple t:
                switch (name)
                {
                    case "count": return (long)t.Items.Count(x => Py.Equal(x, a.Get(0, "value")));
                    case "index":
                        {
                            var x = a.Get(0, "value");
                            int i = Array.FindIndex(t.Items, y => Py.Equal(x, y));
                            if (i < 0) throw TemplateException.Value("tuple.index(x): x not in tuple");
                            return (long)i;
                        }
                }
                break;
        }
        throw new TemplateException("TemplateRuntimeError", $"method {Py.TypeName(target)}.{name}() is not supported by this renderer");
    }

    private static string ArgStr(object? o, string method)
    {
        if (o is string s) return s;
        if (o is Undefined u) throw u.Fail();
        throw TemplateException.Type($"{method} arg must be None or str");
    }

    private static string? OptChars(CallArguments a, string method)
    {
        var c = a.Get(0, "chars");
        return c == null ? null : ArgStr(c, method);
    }

    public static string Strip(string s, string? chars, bool left, bool right)
    {
        int start = 0, end = s.Length;
        if (chars == null)
        {
            if (left) while (start < end && Py.IsPySpace(s[start])) start++;
            if (right) while (end > start && Py.IsPySpace(s[end - 1])) end--;
            return s[start..end];
        }
        if (Py.HasSurrogates(chars) || Py.HasSurrogates(s))
        {
            var set = new HashSet<string>(Py.Runes(chars));
            var runes = Py.Runes(s);
            int a = 0, b = runes.Length;
            if (left) while (a < b && set.Contains(runes[a])) a++;
            if (right) while (b > a && set.Contains(runes[b - 1])) b--;
            return string.Concat(runes[a..b]);
        }
        if (left) while (start < end && chars.Contains(s[start])) start++;
        if (right) while (end > start && chars.Contains(s[end - 1])) end--;
        return s[start..end];
    }

    public static List<object?> Split(string s, string? sep, long maxsplit)
    {
        var res = new List<object?>();
        if (sep == null)
        {
            int i = 0, n = s.Length;
            while (true)
            {
                while (i < n && Py.IsPySpace(s[i])) i++;
                if (i >= n) break;
                if (maxsplit >= 0 && res.Count >= maxsplit)
                {
                    int e = n;
                    while (e > i && Py.IsPySpace(s[e - 1])) e--;
                    res.Add(s[i..e]);
                    break;
                }
                int j = i;
                while (j < n && !Py.IsPySpace(s[j])) j++;
                res.Add(s[i..j]);
                i = j;
            }
            return res;
        }
        if (sep.Length == 0) throw TemplateException.Value("empty separator");
        int pos = 0;
        while (maxsplit < 0 || res.Count < maxsplit)
        {
            int k = s.IndexOf(sep, pos, StringComparison.Ordinal);
            if (k < 0) break;
            res.Add(s[pos..k]);
            pos = k + sep.Length;
        }
        res.Add(s[pos..]);
        return res;
    }

    private static List<object?> RSplit(string s, string? sep, long maxsplit)
    {
        if (maxsplit < 0) return Split(s, sep, -1);
        if (sep == null)
        {
            var res = new List<object?>();
            int end = s.Length;
            while (true)
            {
                while (end > 0 && Py.IsPySpace(s[end - 1])) end--;
                if (end <= 0) break;
                if (res.Count >= maxsplit)
                {
                    int b = 0;
                    while (b < end && Py.IsPySpace(s[b])) b++;
                    res.Add(s[b..end]);
                    break;
                }
                int j = end;
                while (j > 0 && !Py.IsPySpace(s[j - 1])) j--;
                res.Add(s[j..end]);
                end = j;
            }
            res.Reverse();
            return res;
        }
        if (sep.Length == 0) throw TemplateException.Value("empty separator");
        var parts = new List<object?>();
        int pos = s.Length;
        while (parts.Count < maxsplit)
        {
            int k = pos - sep.Length < 0 ? -1 : s.LastIndexOf(sep, pos - 1, pos, StringComparison.Ordinal);
            if (k < 0) break;
            parts.Add(s[(k + sep.Length)..pos]);
            pos = k;
        }
        parts.Add(s[..pos]);
        parts.Reverse();
        return parts;
    }

    public static List<string> SplitLines(string s, bool keepEnds)
    {
        var res = new List<string>();
        int i = 0, start = 0, n = s.Length;
        while (i < n)
        {
            char c = s[i];
            int brk = 0;
            if (c == '\r') brk = i + 1 < n && s[i + 1] == '\n' ? 2 : 1;
            else if (c is '\n' or '\v' or '\f' or '\x1c' or '\x1d' or '\x1e' or '\x85' or '\u2028' or '\u2029') brk = 1;
            if (brk > 0)
            {
                res.Add(keepEnds ? s[start..(i + brk)] : s[start..i]);
                i += brk;
                start = i;
            }
            else i++;
        }
        if (start < n) res.Add(s[start..]);
        return res;
    }

    private static bool AffixMatch(string s, object? affix, bool starts, string method)
    {
        if (affix is PyTuple t) return t.Items.Any(x => AffixMatch(s, x, starts, method));
        if (affix is not string p)
            throw TemplateException.Type($"{method} first arg must be str or a tuple of str, not {Py.TypeName(affix)}");
        return starts ? s.StartsWith(p, StringComparison.Ordinal) : s.EndsWith(p, StringComparison.Ordinal);
    }

    public static string Capitalize(string s) =>
        s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    private static string PyTitle(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool prevCased = false;
        foreach (char c in s)
        {
            if (char.IsLetter(c))
            {
                sb.Append(prevCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
                prevCased = true;
            }
            else
            {
                sb.Append(c);
                prevCased = false;
            }
        }
        return sb.ToString();
    }

    public static string Replace(string s, string old, string @new, long count)
    {
        if (count == 0) return s;
        var ctx = RenderContext.Current;
        ctx.ChargeChars(s.Length);
        if (@new.Length > old.Length)
        {
            // Check the grown length before building it ('ab'.replace('', 'x' * 10**6) and the like).
            long occurrences;
            if (old.Length == 0) occurrences = Py.StrLen(s) + 1;
            else
            {
                occurrences = 0;
                for (int k = s.IndexOf(old, StringComparison.Ordinal); k >= 0; k = s.IndexOf(old, k + old.Length, StringComparison.Ordinal))
                    occurrences++;
            }
            if (count >= 0) occurrences = Math.Min(occurrences, count);
            ctx.Built(s.Length + occurrences * (@new.Length - old.Length), "replaced string");
        }
        if (old.Length == 0)
        {
            var runes = Py.Runes(s);
            var sb = new StringBuilder();
            long done = 0;
            for (int i = 0; i <= runes.Length; i++)
            {
                if (count < 0 || done < count) { sb.Append(@new); done++; }
                if (i < runes.Length) sb.Append(runes[i]);
            }
            return sb.ToString();
        }
        if (count < 0) return s.Replace(old, @new, StringComparison.Ordinal);
        var res = new StringBuilder();
        int pos = 0;
        long n = 0;
        while (n < count)
        {
            int k = s.IndexOf(old, pos, StringComparison.Ordinal);
            if (k < 0) break;
            res.Append(s, pos, k - pos).Append(@new);
            pos = k + old.Length;
            n++;
        }
        res.Append(s, pos, s.Length - pos);
        return res.ToString();
    }

    private static long CpIndex(string s, int utf16Index) =>
        utf16Index < 0 ? -1 : Py.HasSurrogates(s) ? s[..utf16Index].EnumerateRunes().Count() : utf16Index;

    private static string Pad(string s, long width, string fill, int align)
    {
        long len = Py.StrLen(s);
        if (width <= len) return s;
        long total = width - len;
        RenderContext.Current.Built(s.Length + total * fill.Length, "padded string");
        long left = align switch { 0 => 0, 1 => total, _ => total / 2 + (total & width & 1) };
        var sb = new StringBuilder((int)(s.Length + total * fill.Length));
        if (fill.Length == 1) sb.Append(fill[0], (int)left);
        else for (long i = 0; i < left; i++) sb.Append(fill);
        sb.Append(s);
        if (fill.Length == 1) sb.Append(fill[0], (int)(total - left));
        else for (long i = 0; i < total - left; i++) sb.Append(fill);
        return sb.ToString();
    }

    /// <summary>The <c>fillchar</c> of center / ljust / rjust: exactly one character (code point).</summary>
    private static string FillChar(CallArguments a)
    {
        var f = a.Get(1, "fillchar", " ");
        if (f is not string fs)
            throw TemplateException.Type($"The fill character must be a unicode character, not {Py.TypeName(f)}");
        if (Py.StrLen(fs) != 1) throw TemplateException.Type("The fill character must be exactly one character long");
        return fs;
    }

    private static object? StrMethod(Evaluator ev, string s, string name, CallArguments a)
    {
        switch (name)
        {
            case "strip": return Strip(s, OptChars(a, name), true, true);
            case "lstrip": return Strip(s, OptChars(a, name), true, false);
            case "rstrip": return Strip(s, OptChars(a, name), false, true);
            case "split":
                {
                    var sep = a.Get(0, "sep");
                    return Split(s, sep == null ? null : ArgStr(sep, name), IntArg(a.Get(1, "maxsplit", -1L)));
                }
            case "rsplit":
                {
                    var sep = a.Get(0, "sep");
                    return RSplit(s, sep == null ? null : ArgStr(sep, name), IntArg(a.Get(1, "maxsplit", -1L)));
                }
            case "splitlines": return SplitLines(s, Py.Truthy(a.Get(0, "keepends", false))).Cast<object?>().ToList();
            case "startswith": return AffixMatch(s, a.Get(0, "prefix"), true, name);
            case "endswith": return AffixMatch(s, a.Get(0, "suffix"), false, name);
            case "upper": return s.ToUpperInvariant();
            case "lower": return s.ToLowerInvariant();
            case "casefold": return s.ToLowerInvariant();
            case "swapcase": return string.Concat(s.Select(c => char.IsUpper(c) ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c)));
            case "capitalize": return Capitalize(s);
            case "title": return PyTitle(s);
            case "replace":
                return Replace(s, ArgStr(a.Get(0, "old"), name), ArgStr(a.Get(1, "new"), name), IntArg(a.Get(2, "count", -1L)));
            case "find": return CpIndex(s, s.IndexOf(ArgStr(a.Get(0, "sub"), name), StringComparison.Ordinal));
            case "rfind": return CpIndex(s, s.LastIndexOf(ArgStr(a.Get(0, "sub"), name), StringComparison.Ordinal));
            case "index" or "rindex":
                {
                    var sub = ArgStr(a.Get(0, "sub"), name);
                    int k = name == "index" ? s.IndexOf(sub, StringComparison.Ordinal) : s.LastIndexOf(sub, StringComparison.Ordinal);
                    if (k < 0) throw TemplateException.Value("substring not found");
                    return CpIndex(s, k);
                }
            case "count":
                {
                    var sub = ArgStr(a.Get(0, "sub"), name);
                    if (sub.Length == 0) return Py.StrLen(s) + 1;
                    long c = 0;
                    int p = 0;
                    while ((p = s.IndexOf(sub, p, StringComparison.Ordinal)) >= 0) { c++; p += sub.Length; }
                    return c;
                }
            case "join":
                {
                    var parts = new List<string>();
                    long length = 0;
                    foreach (var item in Py.Iterate(a.Get(0, "iterable")))
                    {
                        if (item is not string str)
                            throw TemplateException.Type($"sequence item {parts.Count}: expected str instance, {Py.TypeName(item)} found");
                        if (parts.Count > 0) length += s.Length;
                        length += str.Length;
                        parts.Add(str);
                    }
                    RenderContext.Current.Built(length, "joined string");
                    return string.Join(s, parts);
                }
            case "format": return Format.StrFormat(s, a);
            case "format_map":
                {
                    var fa = new CallArguments();
                    if (a.Get(0, "mapping") is PyDict m)
                        foreach (var kv in m) if (kv.Key is string k) fa.Keywords.Add(new(k, kv.Value));
                    return Format.StrFormat(s, fa);
                }
            case "isdigit" or "isdecimal" or "isnumeric": return s.Length > 0 && s.All(char.IsDigit);
            case "isalpha": return s.Length > 0 && s.All(char.IsLetter);
            case "isalnum": return s.Length > 0 && s.All(char.IsLetterOrDigit);
            case "isspace": return s.Length > 0 && s.All(Py.IsPySpace);
            case "isascii": return s.All(c => c < 128);
            case "islower": return s.Any(char.IsLetter) && !s.Any(char.IsUpper);
            case "isupper": return s.Any(char.IsLetter) && !s.Any(char.IsLower);
            case "istitle": return s.Any(char.IsLetter) && PyTitle(s) == s;
            case "isidentifier": return s.Length > 0 && (char.IsLetter(s[0]) || s[0] == '_') && s.All(c => char.IsLetterOrDigit(c) || c == '_');
            case "isprintable": return Py.Repr(s)[1..^1] == s.Replace("\\", "\\\\", StringComparison.Ordinal) || !s.Any(char.IsControl);
            case "zfill":
                {
                    long w = IntArg(a.Get(0, "width"));
                    long len = Py.StrLen(s);
                    if (w <= len) return s;
                    RenderContext.Current.Built(s.Length + (w - len), "zero-filled string");
                    string sign = s.Length > 0 && s[0] is '+' or '-' ? s[..1] : "";
                    return sign + new string('0', (int)(w - len)) + s[sign.Length..];
                }
            case "center": return Pad(s, IntArg(a.Get(0, "width")), FillChar(a), 2);
            case "ljust": return Pad(s, IntArg(a.Get(0, "width")), FillChar(a), 0);
            case "rjust": return Pad(s, IntArg(a.Get(0, "width")), FillChar(a), 1);
            case "partition" or "rpartition":
                {
                    var sep = ArgStr(a.Get(0, "sep"), name);
                    if (sep.Length == 0) throw TemplateException.Value("empty separator");
                    int k = name == "partition" ? s.IndexOf(sep, StringComparison.Ordinal) : s.LastIndexOf(sep, StringComparison.Ordinal);
                    if (k < 0) return name == "partition" ? new PyTuple([s, "", ""]) : new PyTuple(["", "", s]);
                    return new PyTuple([s[..k], sep, s[(k + sep.Length)..]]);
                }
            case "removeprefix":
                {
                    var p = ArgStr(a.Get(0, "prefix"), name);
                    return s.StartsWith(p, StringComparison.Ordinal) ? s[p.Length..] : s;
                }
            case "removesuffix":
                {
                    var p = ArgStr(a.Get(0, "suffix"), name);
                    return p.Length > 0 && s.EndsWith(p, StringComparison.Ordinal) ? s[..^p.Length] : s;
                }
            case "expandtabs":
                {
                    long ts = IntArg(a.Get(0, "tabsize", 8L));
                    long tabs = s.Count(c => c == '\t');
                    if (tabs > 0 && ts > 0) RenderContext.Current.Built(s.Length + tabs * Math.Min(ts, int.MaxValue), "expanded string");
                    var sb = new StringBuilder();
                    int col = 0;
                    foreach (char c in s)
                    {
                        if (c == '\t')
                        {
                            if (ts > 0) { int n = (int)(ts - col % ts); sb.Append(' ', n); col += n; }
                        }
                        else if (c is '\n' or '\r') { sb.Append(c); col = 0; }
                        else { sb.Append(c); col++; }
                    }
                    return sb.ToString();
                }
        }
        _ = ev;
        throw new TemplateException("TemplateRuntimeError", $"method str.{name}() is not supported by this renderer");
    }

    public static long IntArg(object? o)
    {
        if (o is Undefined u) throw u.Fail();
        if (o is long l) return l;
        if (Py.IsInt(o)) return Py.ToSsize(o);
        throw TemplateException.Type($"{Py.Repr(Py.TypeName(o))} object cannot be interpreted as an integer");
    }
}

/// <summary>Python string formatting: <c>str % args</c> and <c>str.format</c>.</summary>
internal static class Format
{
    /// <summary>
    /// A width or precision written in a format string: Python's ValueError <paramref name="tooBig"/> past
    /// <c>Py_ssize_t</c>, and an OverflowError past <see cref="TemplateLimits.MaxStringLength"/> (the padded
    /// text would be too long), checked before anything is padded.
    /// </summary>
    public static int ParseCount(string digits, string tooBig, string what)
    {
        string t = digits.TrimStart('0');
        if (t.Length > 18) throw TemplateException.Value(tooBig);
        long v = t.Length == 0 ? 0 : long.Parse(t, CultureInfo.InvariantCulture);
        return CheckCount(v, what);
    }

    /// <summary>Bounds a width or precision by <see cref="TemplateLimits.MaxStringLength"/>.</summary>
    public static int CheckCount(long v, string what)
    {
        int max = RenderContext.Current.Limits.MaxStringLength;
        if (v > max)
            throw new TemplateException("OverflowError",
                $"format {what} too large: {v.ToString(CultureInfo.InvariantCulture)}, more than TemplateLimits.MaxStringLength ({max.ToString(CultureInfo.InvariantCulture)})");
        return (int)v;
    }

    private static void CheckBuilt(StringBuilder sb)
    {
        if (sb.Length > RenderContext.Current.Limits.MaxStringLength) RenderContext.Current.Built(sb.Length, "formatted string");
    }

    public static string Percent(string fmt, object? args)
    {
        string result = PercentCore(fmt, args);
        RenderContext.Current.Built(result.Length, "formatted string");
        return result;
    }

    private static string PercentCore(string fmt, object? args)
    {
        var positional = args is PyTuple t ? t.Items : [args];
        PyDict? mapping = args as PyDict;
        int argi = 0;
        var sb = new StringBuilder();
        int i = 0;
        object? Next()
        {
            if (argi >= positional.Length) throw TemplateException.Type("not enough arguments for format string");
            return positional[argi++];
        }
        bool usedMapping = false;
        while (i < fmt.Length)
        {
            char c = fmt[i];
            if (c != '%') { sb.Append(c); i++; continue; }
            i++;
            if (i >= fmt.Length) throw TemplateException.Value("incomplete format");
            object? value = null;
            bool haveValue = false;
            if (fmt[i] == '(')
            {
                int close = fmt.IndexOf(')', i);
                if (close < 0) throw TemplateException.Value("incomplete format key");
                string key = fmt[(i + 1)..close];
                if (mapping == null) throw TemplateException.Type("format requires a mapping");
                value = mapping.TryGetValue(key, out var mv) ? mv : throw new TemplateException("KeyError", Py.Repr(key));
                haveValue = true;
                usedMapping = true;
                i = close + 1;
            }
            string flags = "";
            while (i < fmt.Length && "-+ #0".Contains(fmt[i])) flags += fmt[i++];
            int? width = null;
            if (i < fmt.Length && fmt[i] == '*')
            {
                var wv = Next();
                if (!Py.IsInt(wv)) throw TemplateException.Type("* wants int");
                long w = Methods.IntArg(wv);
                if (w < 0) { flags += "-"; w = -w; }
                width = CheckCount(w, "width");
                i++;
            }
            else
            {
                int ws = i;
                while (i < fmt.Length && char.IsAsciiDigit(fmt[i])) i++;
                if (i > ws) width = ParseCount(fmt[ws..i], "width too big", "width");
            }
            int? prec = null;
            if (i < fmt.Length && fmt[i] == '.')
            {
                i++;
                if (i < fmt.Length && fmt[i] == '*')
                {
                    var pv = Next();
                    if (!Py.IsInt(pv)) throw TemplateException.Type("* wants int");
                    prec = CheckCount(Math.Max(0, Methods.IntArg(pv)), "precision");
                    i++;
                }
                else
                {
                    int ps = i;
                    while (i < fmt.Length && char.IsAsciiDigit(fmt[i])) i++;
                    prec = i > ps ? ParseCount(fmt[ps..i], "precision too big", "precision") : 0;
                }
            }
            if (i >= fmt.Length) throw TemplateException.Value("incomplete format");
            char conv = fmt[i++];
            if (conv == '%') { sb.Append('%'); continue; }
            if (!haveValue) value = Next();
            string body = conv switch
            {
                's' => Py.Str(value),
                'r' or 'a' => Py.Repr(value),
                'd' or 'i' or 'u' => FormatSpec.IntString(ToIntForFormat(value), flags.Contains('+') ? "+" : flags.Contains(' ') ? " " : "-"),
                'f' or 'F' or 'e' or 'E' or 'g' or 'G' => FormatSpec.FloatString(ToFloatForFormat(value), conv, prec ?? 6, flags.Contains('+') ? "+" : flags.Contains(' ') ? " " : "-", flags.Contains('#')),
                'x' or 'X' or 'o' => FormatSpec.Radix(ToIntForFormat(value), conv, flags.Contains('#')),
                'c' => PercentChar(value),
                _ => throw TemplateException.Value($"unsupported format character {Py.Repr(conv.ToString())}"),
            };
            if (conv is 's' or 'r' or 'a' && prec != null && body.Length > prec) body = body[..prec.Value];
            if (width != null && body.Length < width)
            {
                if (flags.Contains('-')) body = body.PadRight(width.Value);
                else if (flags.Contains('0') && conv is not ('s' or 'r' or 'a' or 'c'))
                {
                    int signLen = body.Length > 0 && body[0] is '+' or '-' or ' ' ? 1 : 0;
                    body = body[..signLen] + new string('0', width.Value - body.Length) + body[signLen..];
                }
                else body = body.PadLeft(width.Value);
            }
            sb.Append(body);
            CheckBuilt(sb);
        }
        if (!usedMapping && mapping == null && argi < positional.Length)
            throw TemplateException.Type("not all arguments converted during string formatting");
        return sb.ToString();
    }

    private static string PercentChar(object? value)
    {
        if (value is string cs)
        {
            if (Py.StrLen(cs) != 1) throw TemplateException.Type("%c requires int or char");
            return cs;
        }
        if (!Py.IsInt(value)) throw TemplateException.Type("%c requires int or char");
        var v = Py.ToBig(value);
        if (v < 0 || v > 0x10FFFF) throw new TemplateException("OverflowError", "%c arg not in range(0x110000)");
        int cp = (int)v;
        return cp is >= 0xD800 and <= 0xDFFF ? ((char)cp).ToString() : char.ConvertFromUtf32(cp);
    }

    private static System.Numerics.BigInteger ToIntForFormat(object? v)
    {
        if (v is double d)
        {
            if (double.IsNaN(d)) throw TemplateException.Value("cannot convert float NaN to integer");
            if (double.IsInfinity(d)) throw new TemplateException("OverflowError", "cannot convert float infinity to integer");
            return new System.Numerics.BigInteger(Math.Truncate(d));
        }
        if (Py.IsInt(v)) return Py.ToBig(v);
        throw TemplateException.Type($"%d format: a real number is required, not {Py.TypeName(v)}");
    }

    private static double ToFloatForFormat(object? v)
    {
        if (Py.IsNumber(v)) return Py.ToDouble(v);
        throw TemplateException.Type($"must be real number, not {Py.TypeName(v)}");
    }

    public static string StrFormat(string fmt, CallArguments a)
    {
        int auto = 0;
        string result = StrFormat(fmt, a, 2, ref auto);
        RenderContext.Current.Built(result.Length, "formatted string");
        return result;
    }

    private static string StrFormat(string fmt, CallArguments a, int recursionLeft, ref int auto)
    {
        if (recursionLeft <= 0) throw TemplateException.Value("Max string recursion exceeded");
        var sb = new StringBuilder();
        int i = 0;
        while (i < fmt.Length)
        {
            char c = fmt[i];
            if (c == '{')
            {
                if (i + 1 < fmt.Length && fmt[i + 1] == '{') { sb.Append('{'); i += 2; continue; }
                int depth = 1, j = i + 1;
                while (j < fmt.Length && depth > 0)
                {
                    if (fmt[j] == '{') depth++;
                    else if (fmt[j] == '}') depth--;
                    if (depth > 0) j++;
                }
                if (j >= fmt.Length) throw TemplateException.Value("expected '}' before end of string");
                string field = fmt[(i + 1)..j];
                i = j + 1;
                string? spec = null;
                char? conversion = null;
                int colon = field.IndexOf(':');
                if (colon >= 0) { spec = field[(colon + 1)..]; field = field[..colon]; }
                int bang = field.IndexOf('!');
                if (bang >= 0)
                {
                    if (bang + 1 >= field.Length) throw TemplateException.Value("unmatched '{' in format spec");
                    if (bang + 2 < field.Length) throw TemplateException.Value("expected ':' after conversion specifier");
                    conversion = field[bang + 1];
                    if (conversion is not ('r' or 's' or 'a'))
                        throw TemplateException.Value($"Unknown conversion specifier {conversion}");
                    field = field[..bang];
                }
                // field name: arg_name ("." attr | "[" key "]")*
                int endName = 0;
                while (endName < field.Length && field[endName] != '.' && field[endName] != '[') endName++;
                string argName = field[..endName];
                object? value;
                if (argName.Length == 0) value = a.Get(auto++, "\0", null, out bool f1) is var v1 && f1 ? v1 : throw new TemplateException("IndexError", "Replacement index out of range for positional args tuple");
                else if (argName.All(char.IsAsciiDigit))
                {
                    if (argName.Length > 9 || int.Parse(argName, CultureInfo.InvariantCulture) >= a.Positional.Count)
                        throw new TemplateException("IndexError", "Replacement index out of range for positional args tuple");
                    value = a.Positional[int.Parse(argName, CultureInfo.InvariantCulture)];
                }
                else
                {
                    value = a.Get(-1, argName, null, out bool f2);
                    if (!f2) throw new TemplateException("KeyError", Py.Repr(argName));
                }
                string rest = field[endName..];
                while (rest.Length > 0)
                {
                    if (rest[0] == '.')
                    {
                        int e = 1;
                        while (e < rest.Length && rest[e] != '.' && rest[e] != '[') e++;
                        if (e == 1) throw TemplateException.Value("Empty attribute in format string");
                        value = Py.GetAttr(value, rest[1..e]);
                        rest = rest[e..];
                    }
                    else
                    {
                        int e = rest.IndexOf(']');
                        if (e < 0) throw TemplateException.Value("Missing ']' in format string");
                        string key = rest[1..e];
                        if (key.Length == 0) throw TemplateException.Value("Empty attribute in format string");
                        value = Py.GetItem(value, key.All(char.IsAsciiDigit) && key.Length <= 18 ? long.Parse(key, CultureInfo.InvariantCulture) : key);
                        rest = rest[(e + 1)..];
                        if (rest.Length > 0 && rest[0] is not ('.' or '['))
                            throw TemplateException.Value("Only '.' or '[' may follow ']' in format field specifier");
                    }
                }
                if (conversion == 'r' || conversion == 'a') value = Py.Repr(value);
                else if (conversion == 's') value = Py.Str(value);
                if (spec != null && spec.Contains('{')) spec = StrFormat(spec, a, recursionLeft - 1, ref auto);
                sb.Append(FormatSpec.Apply(value, spec ?? ""));
                CheckBuilt(sb);
                continue;
            }
            if (c == '}')
            {
                if (i + 1 < fmt.Length && fmt[i + 1] == '}') { sb.Append('}'); i += 2; continue; }
                throw TemplateException.Value("Single '}' encountered in format string");
            }
            sb.Append(c);
            i++;
        }
        return sb.ToString();
    }
}

/// <summary>Python's format-spec mini-language (subset: fill, align, sign, #, 0, width, ',', precision, type).</summary>
internal static class FormatSpec
{
    public static string Apply(object? value, string spec)
    {
        if (value is Undefined u && spec.Length > 0) throw u.Fail();
        if (spec.Length == 0) return Py.Str(value);
        int i = 0;
        char fill = ' ';
        char? align = null;
        if (spec.Length >= 2 && spec[1] is '<' or '>' or '^' or '=') { fill = spec[0]; align = spec[1]; i = 2; }
        else if (spec[0] is '<' or '>' or '^' or '=') { align = spec[0]; i = 1; }
        string sign = "-";
        if (i < spec.Length && spec[i] is '+' or '-' or ' ') sign = spec[i++].ToString();
        bool alt = false;
        if (i < spec.Length && spec[i] == '#') { alt = true; i++; }
        if (i < spec.Length && spec[i] == '0') { if (align == null) { fill = '0'; align = '='; } i++; }
        int ws = i;
        while (i < spec.Length && char.IsAsciiDigit(spec[i])) i++;
        int width = i > ws ? Format.ParseCount(spec[ws..i], "Too many decimal digits in format string", "width") : 0;
        bool comma = false;
        if (i < spec.Length && spec[i] is ',' or '_') { comma = true; i++; }
        int? prec = null;
        if (i < spec.Length && spec[i] == '.')
        {
            i++;
            int ps = i;
            while (i < spec.Length && char.IsAsciiDigit(spec[i])) i++;
            if (i == ps) throw TemplateException.Value("Format specifier missing precision");
            prec = Format.ParseCount(spec[ps..i], "Too many decimal digits in format string", "precision");
        }
        char type = i < spec.Length ? spec[i] : '\0';
        string body;
        bool numeric = Py.IsNumber(value);
        if (value is string s)
        {
            if (type is not ('\0' or 's')) throw TemplateException.Value($"Unknown format code '{type}' for object of type 'str'");
            body = prec != null && s.Length > prec ? s[..prec.Value] : s;
            align ??= '<';
        }
        else if (numeric)
        {
            string allowed = value is double ? "eEfFgGn%" : "bcdeEfFgGnoxX%";
            if (type != '\0' && !allowed.Contains(type))
                throw TemplateException.Value($"Unknown format code '{type}' for object of type '{Py.TypeName(value)}'");
            if (type == 'c')
            {
                var cp = Py.ToBig(value);
                if (cp < 0 || cp > 0x10FFFF) throw new TemplateException("OverflowError", "%c arg not in range(0x110000)");
                body = (int)cp is >= 0xD800 and <= 0xDFFF ? ((char)(int)cp).ToString() : char.ConvertFromUtf32((int)cp);
            }
            else if (type is 'd' or 'n' || (type == '\0' && Py.IsInt(value) && prec == null))
            {
                if (value is double) throw TemplateException.Value("Unknown format code 'd' for object of type 'float'");
                body = IntString(Py.ToBig(value), sign);
                if (comma) body = GroupThousands(body);
            }
            else if (type is 'x' or 'X' or 'o' or 'b') body = Radix(Py.ToBig(value), type, alt);
            else if (type == '%') body = FloatString(Py.ToDouble(value) * 100, 'f', prec ?? 6, sign, alt) + "%";
            else if (type == '\0' && prec == null) body = (Py.ToDouble(value) < 0 || sign == "-" ? "" : sign) + Py.Str(value is bool ? value : Py.ToDouble(value));
            else body = FloatString(Py.ToDouble(value), type == '\0' ? 'g' : type, prec ?? 6, sign, alt);
            if (comma && type is 'f' or 'F')
            {
                int dot = body.IndexOf('.');
                body = dot < 0 ? GroupThousands(body) : GroupThousands(body[..dot]) + body[dot..];
            }
            align ??= '>';
        }
        else
        {
            // object.__format__ accepts only an empty spec.
            throw TemplateException.Type($"unsupported format string passed to {Py.TypeName(value)}.__format__");
        }
        if (body.Length >= width) return body;
        int pad = width - body.Length;
        return align switch
        {
            '<' => body + new string(fill, pad),
            '>' => new string(fill, pad) + body,
            '^' => new string(fill, pad / 2) + body + new string(fill, pad - pad / 2),
            _ => body.Length > 0 && body[0] is '+' or '-' or ' '
                ? body[0] + new string(fill, pad) + body[1..]
                : new string(fill, pad) + body,
        };
    }

    private static string GroupThousands(string digits)
    {
        string sign = digits.Length > 0 && digits[0] is '-' or '+' or ' ' ? digits[..1] : "";
        string d = digits[sign.Length..];
        var sb = new StringBuilder();
        for (int k = 0; k < d.Length; k++)
        {
            if (k > 0 && (d.Length - k) % 3 == 0) sb.Append(',');
            sb.Append(d[k]);
        }
        return sign + sb;
    }

    public static string IntString(System.Numerics.BigInteger v, string sign) =>
        (v.Sign < 0 ? "-" : sign == "-" ? "" : sign) + Py.IntToDecimal(System.Numerics.BigInteger.Abs(v));

    public static string Radix(System.Numerics.BigInteger v, char type, bool alt)
    {
        string prefix = alt ? type switch { 'x' => "0x", 'X' => "0X", 'o' => "0o", _ => "0b" } : "";
        var abs = System.Numerics.BigInteger.Abs(v);
        int radix = type switch { 'x' or 'X' => 16, 'o' => 8, _ => 2 };
        var sb = new StringBuilder();
        if (abs.IsZero) sb.Append('0');
        while (!abs.IsZero)
        {
            int dgt = (int)(abs % radix);
            sb.Insert(0, "0123456789abcdef"[dgt]);
            abs /= radix;
        }
        string r = prefix + sb;
        if (type == 'X') r = r.ToUpperInvariant();
        return (v.Sign < 0 ? "-" : "") + r;
    }

    public static string FloatString(double d, char type, int prec, string sign, bool alt)
    {
        string signStr = double.IsNegative(d) && !double.IsNaN(d) ? "-" : sign == "-" ? "" : sign;
        d = Math.Abs(d);
        if (double.IsNaN(d)) return signStr + (char.IsUpper(type) ? "NAN" : "nan");
        if (double.IsInfinity(d)) return signStr + (char.IsUpper(type) ? "INF" : "inf");
        string body;
        switch (type)
        {
            case 'f' or 'F':
                body = d.ToString("F" + prec, CultureInfo.InvariantCulture);
                break;
            case 'e' or 'E':
                body = ExpString(d, prec, type);
                break;
            default: // g / G
                {
                    int p = prec == 0 ? 1 : prec;
                    if (d == 0) { body = "0"; break; }
                    string e = d.ToString("E" + (p - 1), CultureInfo.InvariantCulture);
                    int exp = int.Parse(e[(e.IndexOf('E') + 1)..], CultureInfo.InvariantCulture);
                    if (exp >= -4 && exp < p)
                    {
                        body = d.ToString("F" + Math.Max(0, p - 1 - exp), CultureInfo.InvariantCulture);
                        if (!alt && body.Contains('.')) body = body.TrimEnd('0').TrimEnd('.');
                    }
                    else
                    {
                        body = ExpString(d, p - 1, type == 'G' ? 'E' : 'e');
                        if (!alt)
                        {
                            int ep = body.IndexOfAny(['e', 'E']);
                            string m = body[..ep];
                            if (m.Contains('.')) m = m.TrimEnd('0').TrimEnd('.');
                            body = m + body[ep..];
                        }
                    }
                    break;
                }
        }
        return signStr + body;
    }

    private static string ExpString(double d, int prec, char type)
    {
        string e = d.ToString((type == 'E' ? "E" : "e") + prec, CultureInfo.InvariantCulture);
        int ep = e.IndexOfAny(['e', 'E']);
        int exp = int.Parse(e[(ep + 1)..], CultureInfo.InvariantCulture);
        return e[..ep] + type + (exp < 0 ? "-" : "+") + Math.Abs(exp).ToString("00", CultureInfo.InvariantCulture);
    }
}
