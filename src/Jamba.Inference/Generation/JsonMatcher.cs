namespace Jamba.Inference.Generation;

/// <summary>
/// One thread of the incremental JSON matcher: an immutable pushdown stack, the top frame pointing at its parent. A
/// container frame that is a parent already stands in its "after the value" phase, so a finished child simply becomes
/// its parent. Frames compare by value (their fields and their parent chain) so that states can key the mask cache, and
/// a step that changes nothing returns the same frame (free string content allocates nothing).
/// </summary>
internal abstract class Frame : IEquatable<Frame>
{
    /// <summary>Longest run of whitespace accepted between tokens of the JSON text.</summary>
    public const int MaxWhitespace = 4;
    /// <summary>Deepest nesting of values.</summary>
    public const int MaxNesting = 48;

    public readonly Frame? Parent;
    public readonly int Depth;
    private int _hash;

    protected Frame(Frame? parent)
    {
        Parent = parent;
        Depth = parent is null ? 0 : parent.Depth + 1;
    }

    /// <summary>Adds the frames that follow after consuming <paramref name="b"/> (none: rejected).</summary>
    public abstract void Step(byte b, List<Frame> output);

    /// <summary>Whether the value of this frame may end here (a number or literal that could also go on); the next byte
    /// then belongs to <see cref="Parent"/>.</summary>
    public virtual bool CanPop => false;

    /// <summary>Bytes needed to finish this frame's own part (not its parents').</summary>
    protected abstract int Rest();

    private int _minClose = -1;

    /// <summary>Bytes needed to finish the whole JSON text from here (computed once: frames are immutable).</summary>
    public int MinClose()
    {
        if (_minClose < 0) _minClose = ComputeMinClose();
        return _minClose;
    }

    protected virtual int ComputeMinClose() => ObjectNode.Sat((long)Rest() + (Parent?.MinClose() ?? 0));

    protected abstract int LocalHash();
    protected abstract bool LocalEquals(Frame other);

    public sealed override int GetHashCode()
    {
        if (_hash == 0)
        {
            int h = HashCode.Combine(GetType(), LocalHash(), Parent?.GetHashCode() ?? 0);
            _hash = h == 0 ? 1 : h;
        }
        return _hash;
    }

    public sealed override bool Equals(object? obj) => obj is Frame f && Equals(f);

    public bool Equals(Frame? other)
    {
        if (ReferenceEquals(this, other)) return true;
        if (other is null || other.GetType() != GetType() || other.GetHashCode() != GetHashCode() || other.Depth != Depth) return false;
        if (!LocalEquals(other)) return false;
        return Parent is null ? other.Parent is null : Parent.Equals(other.Parent);
    }

    public static bool IsWhitespace(byte b) => b is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t';

    /// <summary>Starts a value of <paramref name="node"/> with its first byte; <paramref name="after"/> is the parent in
    /// its after-value phase.</summary>
    public static void Start(SchemaNode node, Frame after, byte b, List<Frame> output)
    {
        node = JsonSchemaCompiler.Deref(node);
        if (after.Depth >= MaxNesting) return;
        switch (node)
        {
            case UnionNode u:
                foreach (var alt in u.Alternatives) Start(alt, after, b, output);
                break;
            case ObjectNode o when b == '{':
                output.Add(new ObjectFrame(o, after, ObjectPhase.Open, 0, 0, -1));
                break;
            case ArrayNode a when b == '[':
                output.Add(new ArrayFrame(a, after, ArrayPhase.Open, 0, 0));
                break;
            case StringNode s when b == '"':
                output.Add(s.Format == StringFormat.None ? new StringFrame(s, after, 0, StringMode.Normal, 0, 0, 0, 0) : new FormatFrame(s, after, ""));
                break;
            case NumberNode n when b == '-' || (b >= '0' && b <= '9'):
                string t = ((char)b).ToString();
                if (JsonNumberRules.Feasible(n, t)) output.Add(new NumberFrame(n, after, t));
                break;
            case LiteralNode l:
                LiteralFrame.Advance(l, after, 0, l.Values.Length, 0, b, output);
                break;
        }
    }

    /// <summary>Checks a UTF-8 lead byte: how many continuation bytes follow and the range of the first one.</summary>
    public static bool Utf8Lead(byte b, out int more, out byte lo, out byte hi)
    {
        (more, lo, hi) = b switch
        {
            >= 0xC2 and <= 0xDF => (1, (byte)0x80, (byte)0xBF),
            0xE0 => (2, (byte)0xA0, (byte)0xBF),
            >= 0xE1 and <= 0xEC => (2, (byte)0x80, (byte)0xBF),
            0xED => (2, (byte)0x80, (byte)0x9F),
            >= 0xEE and <= 0xEF => (2, (byte)0x80, (byte)0xBF),
            0xF0 => (3, (byte)0x90, (byte)0xBF),
            >= 0xF1 and <= 0xF3 => (3, (byte)0x80, (byte)0xBF),
            0xF4 => (3, (byte)0x80, (byte)0x8F),
            _ => (0, (byte)0, (byte)0),
        };
        return more > 0;
    }
}

/// <summary>The whole JSON text: optional whitespace, one value, then nothing.</summary>
internal sealed class RootFrame : Frame
{
    public readonly SchemaNode Node;
    public readonly bool Done;
    public readonly int Whitespace;
    private readonly RootFrame? _done;

    public RootFrame(SchemaNode node, bool done, int whitespace, RootFrame? doneFrame = null) : base(null)
    {
        Node = node;
        Done = done;
        Whitespace = whitespace;
        _done = done ? this : doneFrame ?? new RootFrame(node, true, 0);
    }

    public override void Step(byte b, List<Frame> output)
    {
        if (Done) return;
        if (IsWhitespace(b))
        {
            if (Whitespace < MaxWhitespace) output.Add(new RootFrame(Node, false, Whitespace + 1, _done));
            return;
        }
        Start(Node, _done!, b, output);
    }

    protected override int Rest() => Done ? 0 : Node.MinLen;
    protected override int LocalHash() => HashCode.Combine(Node, Done, Whitespace);
    protected override bool LocalEquals(Frame other) => other is RootFrame r && r.Node == Node && r.Done == Done && r.Whitespace == Whitespace;
}

internal enum ObjectPhase : byte { Open, AfterComma, AfterKey, AfterColon, AfterValue }

internal sealed class ObjectFrame : Frame
{
    public readonly ObjectNode Node;
    public readonly ObjectPhase Phase;
    public readonly ulong Seen;
    public readonly int Whitespace;
    public readonly int Pending;

    public ObjectFrame(ObjectNode node, Frame? parent, ObjectPhase phase, ulong seen, int whitespace, int pending) : base(parent)
    {
        Node = node;
        Phase = phase;
        Seen = seen;
        Whitespace = whitespace;
        Pending = pending;
    }

    private bool RequiredDone => (Node.RequiredMask & ~Seen) == 0;

    public bool CanAddMore()
    {
        if (Node.Additional is not null) return true;
        ulong all = Node.Names.Length == 64 ? ulong.MaxValue : (1UL << Node.Names.Length) - 1;
        return (all & ~Seen) != 0;
    }

    public override void Step(byte b, List<Frame> output)
    {
        if (IsWhitespace(b))
        {
            if (Whitespace < MaxWhitespace) output.Add(new ObjectFrame(Node, Parent, Phase, Seen, Whitespace + 1, Pending));
            return;
        }
        switch (Phase)
        {
            case ObjectPhase.Open:
                if (b == '"' && CanAddMore()) output.Add(new KeyFrame(Reset(), [], 0, 0, 0));
                else if (b == '}' && RequiredDone) output.Add(Parent!);
                break;
            case ObjectPhase.AfterComma:
                if (b == '"') output.Add(new KeyFrame(Reset(), [], 0, 0, 0));
                break;
            case ObjectPhase.AfterKey:
                if (b == ':') output.Add(new ObjectFrame(Node, Parent, ObjectPhase.AfterColon, Seen, 0, Pending));
                break;
            case ObjectPhase.AfterColon:
            {
                var value = Pending >= 0 ? Node.Properties[Pending] : Node.Additional!;
                ulong seen = Pending >= 0 ? Seen | (1UL << Pending) : Seen;
                Start(value, new ObjectFrame(Node, Parent, ObjectPhase.AfterValue, seen, 0, -1), b, output);
                break;
            }
            case ObjectPhase.AfterValue:
                if (b == ',' && CanAddMore()) output.Add(new ObjectFrame(Node, Parent, ObjectPhase.AfterComma, Seen, 0, -1));
                else if (b == '}' && RequiredDone) output.Add(Parent!);
                break;
        }
    }

    private ObjectFrame Reset() => Whitespace == 0 ? this : new ObjectFrame(Node, Parent, Phase, Seen, 0, Pending);

    /// <summary>Bytes to finish the object once a value of property <paramref name="pending"/> (−1: an additional one)
    /// follows a colon.</summary>
    public int AfterColonCost(int pending)
    {
        long value = pending >= 0 ? Node.Properties[pending].MinLen : Node.Additional?.MinLen ?? SchemaNode.Infinite;
        ulong seen = pending >= 0 ? Seen | (1UL << pending) : Seen;
        return ObjectNode.Sat(value + Node.RequiredCost(seen) + 1);
    }

    protected override int Rest()
    {
        int req = Node.RequiredCost(Seen);
        return Phase switch
        {
            ObjectPhase.Open => req == 0 ? 1 : req,
            ObjectPhase.AfterComma => req > 0 ? req : Node.CheapestOptional(Seen),
            ObjectPhase.AfterKey => ObjectNode.Sat(1L + AfterColonCost(Pending)),
            ObjectPhase.AfterColon => AfterColonCost(Pending),
            _ => ObjectNode.Sat(req + 1L),
        };
    }

    protected override int LocalHash() => HashCode.Combine(Node, Phase, Seen, Whitespace, Pending);
    protected override bool LocalEquals(Frame other) => other is ObjectFrame o && o.Node == Node && o.Phase == Phase && o.Seen == Seen && o.Whitespace == Whitespace && o.Pending == Pending;
}

/// <summary>A property name being written. <see cref="Frame.Parent"/> is the object (phase Open or AfterComma); the
/// closing quote replaces both by the object in phase AfterKey.</summary>
internal sealed class KeyFrame : Frame
{
    /// <summary>The bytes so far while they start some declared name; null once they start none (an additional key).</summary>
    public readonly byte[]? Prefix;
    public readonly int Utf8More;
    public readonly byte Lo, Hi;

    public KeyFrame(ObjectFrame obj, byte[]? prefix, int utf8More, byte lo, byte hi) : base(obj)
    {
        Prefix = prefix;
        Utf8More = utf8More;
        Lo = lo;
        Hi = hi;
    }

    private ObjectFrame Obj => (ObjectFrame)Parent!;

    public override void Step(byte b, List<Frame> output)
    {
        var obj = Obj;
        var node = obj.Node;
        if (Utf8More > 0)
        {
            if (b < Lo || b > Hi) return;
            Continue(b, Utf8More - 1, 0x80, 0xBF, output);
            return;
        }
        if (b == '"')
        {
            int idx = -1;
            if (Prefix is not null)
                for (int i = 0; i < node.Names.Length; i++)
                    if (node.Names[i].AsSpan().SequenceEqual(Prefix)) { idx = i; break; }
            if (idx >= 0)
            {
                if ((obj.Seen & (1UL << idx)) != 0) return; // a duplicate key
            }
            else if (node.Additional is null) return;
            output.Add(new ObjectFrame(node, obj.Parent, ObjectPhase.AfterKey, obj.Seen, 0, idx));
            return;
        }
        if (b == '\\' || b < 0x20) return; // keys are written without escapes
        if (b < 0x80) Continue(b, 0, 0, 0, output);
        else if (Utf8Lead(b, out int more, out byte lo, out byte hi)) Continue(b, more, lo, hi, output);
    }

    private void Continue(byte b, int more, byte lo, byte hi, List<Frame> output)
    {
        var obj = Obj;
        var node = obj.Node;
        byte[]? next = null;
        if (Prefix is not null)
        {
            var cand = new byte[Prefix.Length + 1];
            Prefix.CopyTo(cand, 0);
            cand[Prefix.Length] = b;
            bool any = false, unseen = false;
            for (int i = 0; i < node.Names.Length; i++)
                if (node.Names[i].AsSpan().StartsWith(cand))
                {
                    any = true;
                    if ((obj.Seen & (1UL << i)) == 0) unseen = true;
                }
            if (node.Additional is null && !unseen) return;
            if (any) next = cand;
        }
        if (next is null && Prefix is null && more == Utf8More && lo == Lo && hi == Hi)
        {
            output.Add(this);
            return;
        }
        output.Add(new KeyFrame(obj, next, more, lo, hi));
    }

    protected override int ComputeMinClose()
    {
        var obj = Obj;
        var node = obj.Node;
        long best = SchemaNode.Infinite;
        if (Prefix is not null)
            for (int i = 0; i < node.Names.Length; i++)
                if ((obj.Seen & (1UL << i)) == 0 && node.Names[i].AsSpan().StartsWith(Prefix))
                    best = Math.Min(best, node.Names[i].Length - Prefix.Length + 2L + obj.AfterColonCost(i));
        if (node.Additional is not null) best = Math.Min(best, Utf8More + 2L + obj.AfterColonCost(-1));
        return ObjectNode.Sat(best + (obj.Parent?.MinClose() ?? 0));
    }

    protected override int Rest() => 0;
    protected override int LocalHash()
    {
        var h = new HashCode();
        h.Add(Utf8More); h.Add(Lo); h.Add(Hi); h.Add(Prefix is null);
        if (Prefix is not null) h.AddBytes(Prefix);
        return h.ToHashCode();
    }
    protected override bool LocalEquals(Frame other) => other is KeyFrame k && k.Utf8More == Utf8More && k.Lo == Lo && k.Hi == Hi
        && (Prefix is null ? k.Prefix is null : k.Prefix is not null && Prefix.AsSpan().SequenceEqual(k.Prefix));
}

internal enum ArrayPhase : byte { Open, AfterComma, AfterValue }

internal sealed class ArrayFrame : Frame
{
    public readonly ArrayNode Node;
    public readonly ArrayPhase Phase;
    public readonly int Count;
    public readonly int Whitespace;

    public ArrayFrame(ArrayNode node, Frame? parent, ArrayPhase phase, int count, int whitespace) : base(parent)
    {
        Node = node;
        Phase = phase;
        Count = count;
        Whitespace = whitespace;
    }

    private ArrayFrame AfterItem()
    {
        int cap = Node.MaxItems >= 0 ? Node.MaxItems : Node.MinItems;
        return new ArrayFrame(Node, Parent, ArrayPhase.AfterValue, Math.Min(Count + 1, cap), 0);
    }

    public override void Step(byte b, List<Frame> output)
    {
        if (IsWhitespace(b))
        {
            if (Whitespace < MaxWhitespace) output.Add(new ArrayFrame(Node, Parent, Phase, Count, Whitespace + 1));
            return;
        }
        switch (Phase)
        {
            case ArrayPhase.Open:
                if (b == ']' && Node.MinItems == 0) output.Add(Parent!);
                else if (Node.MaxItems != 0) Start(Node.Items, AfterItem(), b, output);
                break;
            case ArrayPhase.AfterComma:
                Start(Node.Items, AfterItem(), b, output);
                break;
            default:
                if (b == ',' && (Node.MaxItems < 0 || Count < Node.MaxItems)) output.Add(new ArrayFrame(Node, Parent, ArrayPhase.AfterComma, Count, 0));
                else if (b == ']' && Count >= Node.MinItems) output.Add(Parent!);
                break;
        }
    }

    protected override int Rest()
    {
        long item = Node.Items.MinLen;
        return ObjectNode.Sat(Phase switch
        {
            ArrayPhase.Open => Node.MinItems == 0 ? 1 : Node.MinItems * item + Node.MinItems,
            ArrayPhase.AfterComma => item + Math.Max(0, Node.MinItems - Count - 1) * (item + 1) + 1,
            _ => Math.Max(0, Node.MinItems - Count) * (item + 1) + 1,
        });
    }

    protected override int LocalHash() => HashCode.Combine(Node, Phase, Count, Whitespace);
    protected override bool LocalEquals(Frame other) => other is ArrayFrame a && a.Node == Node && a.Phase == Phase && a.Count == Count && a.Whitespace == Whitespace;
}

internal enum StringMode : byte { Normal, Backslash, Hex, LowBackslash, LowU, LowHex }

internal sealed class StringFrame : Frame
{
    public readonly StringNode Node;
    public readonly int Length;
    public readonly StringMode Mode;
    public readonly int Utf8More;
    public readonly byte Lo, Hi;
    public readonly int Hex; // digits so far (Hex, LowHex) and their value in the high bits
    public readonly int HexValue;

    public StringFrame(StringNode node, Frame? parent, int length, StringMode mode, int utf8More, byte lo, byte hi, int hex, int hexValue = 0) : base(parent)
    {
        Node = node;
        int cap = node.MaxLength >= 0 ? node.MaxLength : node.MinLength;
        Length = Math.Min(length, cap);
        Mode = mode;
        Utf8More = utf8More;
        Lo = lo;
        Hi = hi;
        Hex = hex;
        HexValue = hexValue;
    }

    private bool CanAddChar => Node.MaxLength < 0 || Length < Node.MaxLength;

    private void Char(List<Frame> output)
    {
        // One more character; when the count is not tracked (or saturated) the state is unchanged.
        int cap = Node.MaxLength >= 0 ? Node.MaxLength : Node.MinLength;
        if (Mode == StringMode.Normal && Utf8More == 0 && Math.Min(Length + 1, cap) == Length) output.Add(this);
        else output.Add(new StringFrame(Node, Parent, Length + 1, StringMode.Normal, 0, 0, 0, 0));
    }

    private static int HexDigit(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
        _ => -1,
    };

    public override void Step(byte b, List<Frame> output)
    {
        if (Utf8More > 0)
        {
            if (b < Lo || b > Hi) return;
            if (Utf8More == 1) Char(output);
            else output.Add(new StringFrame(Node, Parent, Length, StringMode.Normal, Utf8More - 1, 0x80, 0xBF, 0));
            return;
        }
        switch (Mode)
        {
            case StringMode.Normal:
                if (b == '"')
                {
                    if (Length >= Node.MinLength) output.Add(Parent!);
                }
                else if (b == '\\')
                {
                    if (CanAddChar) output.Add(new StringFrame(Node, Parent, Length, StringMode.Backslash, 0, 0, 0, 0));
                }
                else if (b < 0x20) { }
                else if (b < 0x80)
                {
                    if (CanAddChar) Char(output);
                }
                else if (CanAddChar && Utf8Lead(b, out int more, out byte lo, out byte hi))
                    output.Add(new StringFrame(Node, Parent, Length, StringMode.Normal, more, lo, hi, 0));
                break;
            case StringMode.Backslash:
                if (b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t')
                    output.Add(new StringFrame(Node, Parent, Length + 1, StringMode.Normal, 0, 0, 0, 0));
                else if (b == 'u') output.Add(new StringFrame(Node, Parent, Length, StringMode.Hex, 0, 0, 0, 0));
                break;
            case StringMode.Hex:
            case StringMode.LowHex:
            {
                int d = HexDigit(b);
                if (d < 0) return;
                int value = HexValue << 4 | d;
                int digits = Hex + 1;
                bool low = Mode == StringMode.LowHex;
                if (digits < 4)
                {
                    // A low surrogate must come after a high one, and only there: DC00–DFFF.
                    if (low && (digits == 1 && value != 0xD || digits == 2 && value < 0xDC)) return;
                    output.Add(new StringFrame(Node, Parent, Length, Mode, 0, 0, 0, digits, value));
                    return;
                }
                if (low) Char(output);
                else if (value is >= 0xD800 and <= 0xDBFF) output.Add(new StringFrame(Node, Parent, Length, StringMode.LowBackslash, 0, 0, 0, 0));
                else if (value is >= 0xDC00 and <= 0xDFFF) return;
                else output.Add(new StringFrame(Node, Parent, Length + 1, StringMode.Normal, 0, 0, 0, 0));
                break;
            }
            case StringMode.LowBackslash:
                if (b == '\\') output.Add(new StringFrame(Node, Parent, Length, StringMode.LowU, 0, 0, 0, 0));
                break;
            case StringMode.LowU:
                if (b == 'u') output.Add(new StringFrame(Node, Parent, Length, StringMode.LowHex, 0, 0, 0, 0));
                break;
        }
    }

    protected override int Rest()
    {
        int pending = Utf8More > 0 ? Utf8More : Mode switch
        {
            StringMode.Backslash => 1,
            StringMode.Hex => 4 - Hex,
            StringMode.LowBackslash => 6,
            StringMode.LowU => 5,
            StringMode.LowHex => 4 - Hex,
            _ => 0,
        };
        int chars = Math.Max(0, Node.MinLength - Length - (pending > 0 ? 1 : 0));
        return pending + chars + 1;
    }

    protected override int LocalHash() => HashCode.Combine(Node, Length, Mode, Utf8More, Lo, Hi, Hex, HexValue);
    protected override bool LocalEquals(Frame other) => other is StringFrame s && s.Node == Node && s.Length == Length && s.Mode == Mode
        && s.Utf8More == Utf8More && s.Lo == Lo && s.Hi == Hi && s.Hex == Hex && s.HexValue == HexValue;
}

/// <summary>A string of a fixed format (date, date-time, uuid), written without escapes.</summary>
internal sealed class FormatFrame : Frame
{
    public readonly StringNode Node;
    public readonly string Text;

    public FormatFrame(StringNode node, Frame? parent, string text) : base(parent)
    {
        Node = node;
        Text = text;
    }

    public override void Step(byte b, List<Frame> output)
    {
        if (b == '"')
        {
            if (StringFormats.Complete(Node.Format, Text)) output.Add(Parent!);
            return;
        }
        if (b >= 0x80) return;
        string next = Text + (char)b;
        if (StringFormats.PrefixOk(Node.Format, next)) output.Add(new FormatFrame(Node, Parent, next));
    }

    protected override int Rest() => StringFormats.Remaining(Node.Format, Text) + 1;
    protected override int LocalHash() => HashCode.Combine(Node, Text);
    protected override bool LocalEquals(Frame other) => other is FormatFrame f && f.Node == Node && f.Text == Text;
}

internal static class StringFormats
{
    private const string Date = "dddd-dd-dd", DateTime = "dddd-dd-ddTdd:dd:dd", Uuid = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

    private static string Template(StringFormat f) => f switch { StringFormat.Date => Date, StringFormat.Uuid => Uuid, _ => DateTime };

    public static bool PrefixOk(StringFormat f, string t)
    {
        string tpl = Template(f);
        int head = Math.Min(t.Length, tpl.Length);
        for (int i = 0; i < head; i++)
            if (!CharOk(f, tpl, t, i)) return false;
        if (t.Length <= tpl.Length) return true;
        if (f != StringFormat.DateTime) return false;
        // Zone: Z, or ±hh:mm.
        string zone = t[tpl.Length..];
        if (zone[0] == 'Z') return zone.Length == 1;
        if (zone[0] != '+' && zone[0] != '-') return false;
        if (zone.Length > 6) return false;
        for (int i = 1; i < zone.Length; i++)
        {
            char c = zone[i];
            bool ok = i switch
            {
                1 => c is '0' or '1',
                2 => char.IsAsciiDigit(c) && (zone[1] == '0' || c <= '3'),
                3 => c == ':',
                4 => c >= '0' && c <= '5',
                _ => char.IsAsciiDigit(c),
            };
            if (!ok) return false;
        }
        return true;
    }

    private static bool CharOk(StringFormat f, string tpl, string t, int i)
    {
        char c = t[i], k = tpl[i];
        if (k == 'x') return char.IsAsciiHexDigit(c);
        if (k != 'd') return c == k;
        if (!char.IsAsciiDigit(c)) return false;
        if (f == StringFormat.Uuid) return true;
        return i switch
        {
            0 => c != '0',
            5 => c <= '1',
            6 => t[5] == '0' ? c != '0' : c <= '2',
            8 => c <= '2', // days 01–28 exist in every month
            9 => t[8] != '0' || c != '0',
            11 => c <= '2',
            12 => t[11] != '2' || c <= '3',
            14 or 17 => c <= '5',
            _ => true,
        };
    }

    public static bool Complete(StringFormat f, string t)
    {
        string tpl = Template(f);
        if (f != StringFormat.DateTime) return t.Length == tpl.Length;
        return t.Length == tpl.Length + 1 && t[^1] == 'Z' || t.Length == tpl.Length + 6;
    }

    public static int Remaining(StringFormat f, string t)
    {
        string tpl = Template(f);
        if (f != StringFormat.DateTime) return tpl.Length - t.Length;
        if (t.Length <= tpl.Length) return tpl.Length + 1 - t.Length;
        return t[tpl.Length] == 'Z' ? 0 : tpl.Length + 6 - t.Length;
    }
}

internal sealed class NumberFrame : Frame
{
    public readonly NumberNode Node;
    public readonly string Text;
    private readonly bool _complete;

    public NumberFrame(NumberNode node, Frame? parent, string text) : base(parent)
    {
        Node = node;
        Text = text;
        _complete = JsonNumberRules.Complete(node, text);
    }

    public override bool CanPop => _complete;

    public override void Step(byte b, List<Frame> output)
    {
        if (b is >= (byte)'0' and <= (byte)'9' or (byte)'.' or (byte)'e' or (byte)'E' or (byte)'+' or (byte)'-')
        {
            string next = Text + (char)b;
            if (JsonNumberRules.Feasible(Node, next)) output.Add(new NumberFrame(Node, Parent, next));
        }
        else if (_complete) Parent!.Step(b, output);
    }

    protected override int Rest() => _complete ? 0 : Node.Bounded ? 20 : 1;
    protected override int LocalHash() => HashCode.Combine(Node, Text);
    protected override bool LocalEquals(Frame other) => other is NumberFrame n && n.Node == Node && n.Text == Text;
}

/// <summary>One of a closed set of exact texts (sorted), <see cref="Pos"/> bytes matched, candidates [Lo, Hi).</summary>
internal sealed class LiteralFrame : Frame
{
    public readonly LiteralNode Node;
    public readonly int Lo, Hi, Pos;
    private readonly bool _complete;

    private LiteralFrame(LiteralNode node, Frame? parent, int lo, int hi, int pos) : base(parent)
    {
        Node = node;
        Lo = lo;
        Hi = hi;
        Pos = pos;
        _complete = node.Values[lo].Length == pos;
    }

    public override bool CanPop => _complete;

    public static void Advance(LiteralNode node, Frame after, int lo, int hi, int pos, byte b, List<Frame> output)
    {
        int nlo = -1, nhi = -1;
        for (int i = lo; i < hi; i++)
        {
            var v = node.Values[i];
            if (v.Length > pos && v[pos] == b)
            {
                if (nlo < 0) nlo = i;
                nhi = i + 1;
            }
        }
        if (nlo < 0) return;
        bool complete = node.Values[nlo].Length == pos + 1;
        if (complete && nhi - nlo == 1) output.Add(after);
        else output.Add(new LiteralFrame(node, after, nlo, nhi, pos + 1));
    }

    public override void Step(byte b, List<Frame> output)
    {
        Advance(Node, Parent!, Lo, Hi, Pos, b, output);
        if (_complete) Parent!.Step(b, output);
    }

    protected override int Rest()
    {
        int best = int.MaxValue;
        for (int i = Lo; i < Hi; i++) best = Math.Min(best, Node.Values[i].Length - Pos);
        return best;
    }

    protected override int LocalHash() => HashCode.Combine(Node, Lo, Hi, Pos);
    protected override bool LocalEquals(Frame other) => other is LiteralFrame l && l.Node == Node && l.Lo == Lo && l.Hi == Hi && l.Pos == Pos;
}

/// <summary>A set of matcher threads (alternatives of unions still alive); immutable, compared as a set.</summary>
internal sealed class MatcherState : IEquatable<MatcherState>
{
    public const int MaxThreads = 16;
    public readonly Frame[] Threads;
    private readonly int _hash;

    public MatcherState(Frame[] threads)
    {
        Threads = threads;
        int h = 0;
        foreach (var t in threads) h += t.GetHashCode();
        _hash = h;
    }

    public static MatcherState Initial(SchemaNode root) => new([new RootFrame(root, false, 0)]);

    public bool IsDead => Threads.Length == 0;

    /// <summary>The value is finished: nothing may follow.</summary>
    public bool IsComplete
    {
        get
        {
            foreach (var t in Threads)
                if (t is RootFrame { Done: true }) return true;
            return false;
        }
    }

    /// <summary>The text may end here (EOS allowed).</summary>
    public bool IsAccepting
    {
        get
        {
            foreach (var t in Threads)
                if (t is RootFrame { Done: true } || t.CanPop && t.Parent is RootFrame { Done: true }) return true;
            return false;
        }
    }

    /// <summary>Fewest bytes that finish the value.</summary>
    public int MinClose()
    {
        int best = SchemaNode.Infinite;
        foreach (var t in Threads)
            best = Math.Min(best, t is RootFrame { Done: true } || t.CanPop && t.Parent is RootFrame { Done: true } ? 0 : t.MinClose());
        return best;
    }

    /// <summary>Steps every thread of <paramref name="threads"/> by <paramref name="b"/> into <paramref name="output"/> (cleared first; deduplicated, capped).</summary>
    public static void Step(IReadOnlyList<Frame> threads, byte b, List<Frame> output)
    {
        output.Clear();
        if (threads.Count == 1)
        {
            threads[0].Step(b, output);
            if (output.Count <= 1) return;
        }
        else
        {
            for (int i = 0; i < threads.Count; i++) threads[i].Step(b, output);
        }
        Dedupe(output);
    }

    private static void Dedupe(List<Frame> output)
    {
        for (int i = 1; i < output.Count; i++)
            for (int j = 0; j < i; j++)
                if (output[j].Equals(output[i]))
                {
                    output.RemoveAt(i--);
                    break;
                }
        // Dropping a thread only narrows what is accepted: every kept thread can still finish.
        if (output.Count > MaxThreads) output.RemoveRange(MaxThreads, output.Count - MaxThreads);
    }

    /// <summary>The state after <paramref name="bytes"/>, or a dead state.</summary>
    public MatcherState Advance(ReadOnlySpan<byte> bytes)
    {
        var cur = new List<Frame>(Threads);
        var next = new List<Frame>(4);
        foreach (byte b in bytes)
        {
            Step(cur, b, next);
            (cur, next) = (next, cur);
            if (cur.Count == 0) break;
        }
        return new MatcherState(cur.ToArray());
    }

    public bool Equals(MatcherState? other)
    {
        if (ReferenceEquals(this, other)) return true;
        if (other is null || other._hash != _hash || other.Threads.Length != Threads.Length) return false;
        foreach (var t in Threads)
            if (Array.IndexOf(other.Threads, t) < 0) return false;
        return true;
    }

    public override bool Equals(object? obj) => obj is MatcherState s && Equals(s);
    public override int GetHashCode() => _hash;
}
