using System.Numerics;

namespace Jamba.Inference.Templates.Jinja;

// Python-like runtime values used by the evaluator:
//   None -> null, bool, int -> long (BigInteger on overflow), float -> double, str -> string,
//   list -> List<object?>, tuple -> PyTuple, dict -> PyDict (insertion ordered),
//   plus Undefined, Namespace, LoopContext and callables.

/// <summary>A Python dict: insertion ordered, keys compared with Python equality.</summary>
internal sealed class PyDict : OrderedDictionary<object, object?>
{
    public PyDict() : base(PyKeyComparer.Instance) { }
}

/// <summary>An immutable Python tuple.</summary>
internal sealed class PyTuple(object?[] items)
{
    public object?[] Items { get; } = items;
}

/// <summary>jinja2's default <c>Undefined</c>: prints as "", falsy, raises on use.</summary>
internal sealed class Undefined
{
    public static readonly object Missing = new();

    public Undefined(string? hint = null, object? obj = null, object? name = null, bool hasObj = false, string errorType = "UndefinedError")
    {
        Hint = hint;
        Obj = obj;
        Name = name;
        HasObj = hasObj;
        ErrorType = errorType;
    }

    public string? Hint { get; }
    public object? Obj { get; }
    public object? Name { get; }
    public bool HasObj { get; }
    public string ErrorType { get; }

    public static Undefined ForName(string name) => new(name: name);
    public static Undefined ForAttr(object? obj, object? name) => new(obj: obj, name: name, hasObj: true);
    public static Undefined Unsafe(object? obj, string attr) =>
        new(hint: $"access to attribute {Py.Repr(attr)} of {Py.Repr(Py.TypeName(obj))} object is unsafe.", obj: obj, name: attr, hasObj: true, errorType: "SecurityError");

    public string Message
    {
        get
        {
            if (Hint != null) return Hint;
            if (!HasObj) return $"{Py.Repr(Name)} is undefined";
            if (Name is not string) return $"{Py.ObjectTypeRepr(Obj)} has no element {Py.Repr(Name)}";
            return $"{Py.Repr(Py.ObjectTypeRepr(Obj))} has no attribute {Py.Repr(Name)}";
        }
    }

    public TemplateException Fail() => new(ErrorType, Message);
}

/// <summary>jinja2's <c>namespace()</c> object: attributes assignable with <c>{% set ns.x = ... %}</c>.</summary>
internal sealed class Namespace
{
    public Dictionary<string, object?> Attrs { get; } = new();
    public List<string> Order { get; } = new();

    public void Set(string key, object? value)
    {
        if (!Attrs.ContainsKey(key)) Order.Add(key);
        Attrs[key] = value;
    }
}

/// <summary>Arguments of a call: positional plus keyword (in call order).</summary>
internal sealed class CallArguments
{
    public List<object?> Positional { get; } = new();
    public List<KeyValuePair<string, object?>> Keywords { get; } = new();

    public object? Get(int index, string name, object? defaultValue, out bool found)
    {
        if (index >= 0 && index < Positional.Count) { found = true; return Positional[index]; }
        foreach (var kv in Keywords)
            if (kv.Key == name) { found = true; return kv.Value; }
        found = false;
        return defaultValue;
    }

    public object? Get(int index, string name, object? defaultValue = null) => Get(index, name, defaultValue, out _);

    public bool Has(int index, string name)
    {
        Get(index, name, null, out bool found);
        return found;
    }
}

/// <summary>Anything callable from a template.</summary>
internal interface IPyCallable
{
    object? Call(Evaluator ev, CallArguments args);
}

/// <summary>A builtin function (global such as <c>range</c>, <c>namespace</c>, <c>raise_exception</c>).</summary>
internal sealed class BuiltinFunction(string name, Func<Evaluator, CallArguments, object?> fn) : IPyCallable
{
    public string Name { get; } = name;
    public object? Call(Evaluator ev, CallArguments args) => fn(ev, args);
}

/// <summary>A bound method of a Python builtin value (<c>"x".strip</c>, <c>d.items</c>).</summary>
internal sealed class BoundMethod(object target, string name) : IPyCallable
{
    public object Target { get; } = target;
    public string Name { get; } = name;
    public object? Call(Evaluator ev, CallArguments args) => Methods.Invoke(ev, Target, Name, args);
}

/// <summary>The <c>loop</c> variable of a for loop.</summary>
internal sealed class LoopContext : IPyCallable
{
    public LoopContext(List<object?> items, int depth0, Func<object?, object?>? recurse)
    {
        Items = items;
        Depth0 = depth0;
        Recurse = recurse;
    }

    public List<object?> Items { get; }
    public int Index0 { get; set; }
    public int Depth0 { get; }
    public Func<object?, object?>? Recurse { get; }
    private object? _lastChanged = Undefined.Missing;

    public bool TryGetAttr(string name, out object? value)
    {
        int n = Items.Count;
        switch (name)
        {
            case "index": value = (long)(Index0 + 1); return true;
            case "index0": value = (long)Index0; return true;
            case "revindex": value = (long)(n - Index0); return true;
            case "revindex0": value = (long)(n - Index0 - 1); return true;
            case "first": value = Index0 == 0; return true;
            case "last": value = Index0 == n - 1; return true;
            case "length": value = (long)n; return true;
            case "depth": value = (long)(Depth0 + 1); return true;
            case "depth0": value = (long)Depth0; return true;
            case "previtem":
                value = Index0 > 0 ? Items[Index0 - 1] : new Undefined("there is no previous item");
                return true;
            case "nextitem":
                value = Index0 + 1 < n ? Items[Index0 + 1] : new Undefined("there is no next item");
                return true;
            case "cycle":
                value = new BuiltinFunction("cycle", (_, a) =>
                {
                    if (a.Positional.Count == 0) throw TemplateException.Type("no items for cycling given");
                    return a.Positional[Index0 % a.Positional.Count];
                });
                return true;
            case "changed":
                value = new BuiltinFunction("changed", (_, a) =>
                {
                    object? cur = new PyTuple(a.Positional.ToArray());
                    if (_lastChanged != Undefined.Missing && Py.Equal(_lastChanged, cur)) return false;
                    _lastChanged = cur;
                    return true;
                });
                return true;
        }
        value = null;
        return false;
    }

    public object? Call(Evaluator ev, CallArguments args)
    {
        if (Recurse == null)
            throw new TemplateException("TypeError",
                "The loop must have the 'recursive' marker to be called recursively.");
        return Recurse(args.Get(0, "iterable"));
    }
}

/// <summary><c>cycler(*items)</c>.</summary>
internal sealed class Cycler(List<object?> items)
{
    public List<object?> Items { get; } = items;
    public int Pos { get; set; }
}

/// <summary>Python-semantics key comparer for dict keys (1 == 1.0 == True).</summary>
internal sealed class PyKeyComparer : IEqualityComparer<object>
{
    public static readonly PyKeyComparer Instance = new();

    public new bool Equals(object? x, object? y) => Py.Equal(x, y);

    public int GetHashCode(object obj) => Hash(obj, 0);

    private static int HashString(string s)
    {
        if (s.Length > 64) RenderContext.Current.ChargeChars(s.Length);
        return StringComparer.Ordinal.GetHashCode(s);
    }

    // Nested tuples hash only their first levels: equal values still hash alike, and a tuple nested
    // thousands of levels deep (built in a loop) cannot exhaust the stack.
    private static int Hash(object obj, int depth) => obj switch
    {
        string s => HashString(s),
        bool b => b ? 1 : 0,
        long l => l.GetHashCode(),
        BigInteger bi => bi >= long.MinValue && bi <= long.MaxValue ? ((long)bi).GetHashCode() : bi.GetHashCode(),
        double d => d == Math.Floor(d) && d >= long.MinValue && d <= long.MaxValue ? ((long)d).GetHashCode() : d.GetHashCode(),
        PyTuple t => depth >= 4 ? 19 : t.Items.Take(64).Aggregate(17, (h, i) => h * 31 + (i == null ? 0 : Hash(i, depth + 1))),
        Undefined => 7,
        _ => System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(obj),
    };
}
