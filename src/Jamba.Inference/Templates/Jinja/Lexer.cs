using System.Globalization;
using System.Numerics;
using System.Text;

namespace Jamba.Inference.Templates.Jinja;

internal enum TokenKind
{
    Data,
    VariableBegin,
    VariableEnd,
    BlockBegin,
    BlockEnd,
    Name,
    String,
    Integer,
    Float,
    Operator,
    Eof,
}

internal readonly record struct Token(TokenKind Kind, string Text, object? Value, int Line)
{
    public bool IsOp(string op) => Kind == TokenKind.Operator && Text == op;
    public bool IsName(string name) => Kind == TokenKind.Name && Text == name;

    public string Describe() => Kind switch
    {
        TokenKind.Eof => "end of template",
        TokenKind.BlockEnd => "end of statement block",
        TokenKind.VariableEnd => "end of print statement",
        TokenKind.BlockBegin => "begin of statement block",
        TokenKind.VariableBegin => "begin of print statement",
        _ => Text,
    };
}

/// <summary>
/// jinja2 lexer for the default delimiters with <c>trim_blocks=True</c>, <c>lstrip_blocks=True</c>,
/// <c>keep_trailing_newline=False</c>, whitespace control (<c>-</c> / <c>+</c>) and <c>{% raw %}</c>.
/// </summary>
internal sealed class Lexer
{
    private static readonly string[] Operators =
    [
        "//", "**", "==", "!=", ">=", "<=",
        "+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";",
    ];

    private readonly string _src;
    private readonly bool _trimBlocks;
    private readonly bool _lstripBlocks;
    private readonly int[] _lineStarts;
    private readonly List<Token> _tokens = new();
    private int _pos;
    private bool _lineStarting = true;

    public Lexer(string source, bool trimBlocks = true, bool lstripBlocks = true, bool keepTrailingNewline = false)
    {
        // jinja normalises all newlines to \n and drops one trailing newline.
        string s = source.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n');
        if (!keepTrailingNewline && s.EndsWith('\n')) s = s[..^1];
        _src = s;
        _trimBlocks = trimBlocks;
        _lstripBlocks = lstripBlocks;
        var starts = new List<int> { 0 };
        for (int i = 0; i < s.Length; i++) if (s[i] == '\n') starts.Add(i + 1);
        _lineStarts = starts.ToArray();
    }

    private int LineAt(int pos)
    {
        int idx = Array.BinarySearch(_lineStarts, pos);
        return (idx >= 0 ? idx : ~idx - 1) + 1;
    }

    private TemplateException Error(string msg, int pos) => TemplateException.Syntax(msg, LineAt(pos));

    public List<Token> Tokenize()
    {
        int n = _src.Length;
        while (_pos < n)
        {
            int tagPos = FindTag(_pos);
            if (tagPos < 0)
            {
                Emit(TokenKind.Data, _src[_pos..], _pos);
                break;
            }
            string text = _src[_pos..tagPos];
            int textPos = _pos;
            char kind = _src[tagPos + 1]; // '{', '%', '#'
            int after = tagPos + 2;
            char sign = after < n && (_src[after] == '-' || _src[after] == '+') ? _src[after] : '\0';
            bool isRaw = kind == '%' && TryMatchRawBegin(tagPos, out _);
            text = ApplyLeftStrip(text, sign, kind != '{');
            if (text.Length > 0) Emit(TokenKind.Data, text, textPos);
            if (isRaw)
            {
                TryMatchRawBegin(tagPos, out int rawBodyStart);
                _lineStarting = _src[rawBodyStart - 1] == '\n';
                LexRaw(rawBodyStart);
                continue;
            }
            _pos = after + (sign != '\0' ? 1 : 0);
            _lineStarting = false;
            switch (kind)
            {
                case '#': LexComment(tagPos); break;
                case '%':
                    _tokens.Add(new Token(TokenKind.BlockBegin, "{%", null, LineAt(tagPos)));
                    LexTag(isBlock: true, tagPos);
                    break;
                default:
                    _tokens.Add(new Token(TokenKind.VariableBegin, "{{", null, LineAt(tagPos)));
                    LexTag(isBlock: false, tagPos);
                    break;
            }
        }
        _tokens.Add(new Token(TokenKind.Eof, "", null, LineAt(n)));
        return _tokens;
    }

    private void Emit(TokenKind kind, string text, int pos) => _tokens.Add(new Token(kind, text, text, LineAt(pos)));

    private int FindTag(int from)
    {
        int i = from;
        while (true)
        {
            i = _src.IndexOf('{', i);
            if (i < 0 || i + 1 >= _src.Length) return -1;
            char c = _src[i + 1];
            if (c == '{' || c == '%' || c == '#') return i;
            i++;
        }
    }

    private string ApplyLeftStrip(string text, char sign, bool isBlockOrComment)
    {
        if (sign == '-') return TrimEndPy(text);
        if (sign != '+' && _lstripBlocks && isBlockOrComment)
        {
            int lpos = text.LastIndexOf('\n') + 1;
            if (lpos > 0 || _lineStarting)
            {
                bool allWs = lpos < text.Length;
                for (int i = lpos; i < text.Length && allWs; i++) allWs = Py.IsPySpace(text[i]);
                if (allWs) return text[..lpos];
            }
        }
        return text;
    }

    private static string TrimEndPy(string s)
    {
        int e = s.Length;
        while (e > 0 && Py.IsPySpace(s[e - 1])) e--;
        return s[..e];
    }

    private int SkipWs(int i)
    {
        while (i < _src.Length && Py.IsPySpace(_src[i])) i++;
        return i;
    }

    /// <summary>Matches <c>{%[-+]?\s*raw\s*(-%}\s*|%})</c> at <paramref name="at"/>.</summary>
    private bool TryMatchRawBegin(int at, out int bodyStart)
    {
        bodyStart = -1;
        int i = at + 2;
        if (i < _src.Length && (_src[i] == '-' || _src[i] == '+')) i++;
        i = SkipWs(i);
        if (string.CompareOrdinal(_src, i, "raw", 0, 3) != 0) return false;
        i = SkipWs(i + 3);
        if (string.CompareOrdinal(_src, i, "-%}", 0, 3) == 0) { bodyStart = SkipWs(i + 3); return true; }
        if (string.CompareOrdinal(_src, i, "%}", 0, 2) == 0) { bodyStart = i + 2; return true; }
        return false;
    }

    private void LexRaw(int bodyStart)
    {
        int i = bodyStart;
        while (true)
        {
            int tag = _src.IndexOf("{%", i, StringComparison.Ordinal);
            if (tag < 0) throw Error("Missing end of raw directive", bodyStart);
            int j = tag + 2;
            char sign = j < _src.Length && (_src[j] == '-' || _src[j] == '+') ? _src[j] : '\0';
            if (sign != '\0') j++;
            j = SkipWs(j);
            if (string.CompareOrdinal(_src, j, "endraw", 0, 6) == 0)
            {
                int k = SkipWs(j + 6);
                int end = MatchBlockEnd(k);
                if (end >= 0)
                {
                    string text = ApplyLeftStrip(_src[bodyStart..tag], sign, true);
                    if (text.Length > 0) Emit(TokenKind.Data, text, bodyStart);
                    _lineStarting = _src[end - 1] == '\n';
                    _pos = end;
                    return;
                }
            }
            i = tag + 2;
        }
    }

    /// <summary>Matches a block end (<c>+%}</c>, <c>-%}\s*</c>, <c>%}\n?</c>) at i; returns the end position or -1.</summary>
    private int MatchBlockEnd(int i)
    {
        if (string.CompareOrdinal(_src, i, "+%}", 0, 3) == 0) return i + 3;
        if (string.CompareOrdinal(_src, i, "-%}", 0, 3) == 0) return SkipWs(i + 3);
        if (string.CompareOrdinal(_src, i, "%}", 0, 2) == 0)
        {
            int e = i + 2;
            if (_trimBlocks && e < _src.Length && _src[e] == '\n') e++;
            return e;
        }
        return -1;
    }

    private void LexComment(int tagPos)
    {
        int i = _pos;
        while (true)
        {
            int k = _src.IndexOf("#}", i, StringComparison.Ordinal);
            if (k < 0) throw Error("Missing end of comment tag", tagPos);
            int end;
            if (k > _pos && _src[k - 1] == '+' && k - 1 >= i) end = k + 2;
            else if (k > _pos && _src[k - 1] == '-' && k - 1 >= i) end = SkipWs(k + 2);
            else
            {
                end = k + 2;
                if (_trimBlocks && end < _src.Length && _src[end] == '\n') end++;
            }
            _pos = end;
            _lineStarting = _src[end - 1] == '\n';
            return;
        }
    }

    private void LexTag(bool isBlock, int tagPos)
    {
        var balance = new Stack<char>();
        int n = _src.Length;
        while (true)
        {
            if (_pos >= n) throw Error(isBlock ? "Unexpected end of template. Jinja was looking for the end of a block tag ('%}')." : "unexpected end of template, expected 'end of print statement'.", tagPos);
            if (balance.Count == 0)
            {
                if (isBlock)
                {
                    int end = MatchBlockEnd(_pos);
                    if (end >= 0)
                    {
                        _tokens.Add(new Token(TokenKind.BlockEnd, "%}", null, LineAt(_pos)));
                        _lineStarting = _src[end - 1] == '\n';
                        _pos = end;
                        return;
                    }
                }
                else
                {
                    int end = -1;
                    if (string.CompareOrdinal(_src, _pos, "-}}", 0, 3) == 0) end = SkipWs(_pos + 3);
                    else if (string.CompareOrdinal(_src, _pos, "}}", 0, 2) == 0) end = _pos + 2;
                    if (end >= 0)
                    {
                        _tokens.Add(new Token(TokenKind.VariableEnd, "}}", null, LineAt(_pos)));
                        _lineStarting = _src[end - 1] == '\n';
                        _pos = end;
                        return;
                    }
                }
            }
            char c = _src[_pos];
            if (Py.IsPySpace(c)) { _pos++; continue; }
            int start = _pos;
            int line = LineAt(start);
            if (TryNumber(out var numTok)) { _tokens.Add(numTok with { Line = line }); continue; }
            if (char.IsLetter(c) || c == '_')
            {
                int e = _pos + 1;
                while (e < n && (char.IsLetterOrDigit(_src[e]) || _src[e] == '_' || char.GetUnicodeCategory(_src[e]) is UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.ConnectorPunctuation)) e++;
                string name = _src[_pos..e];
                _tokens.Add(new Token(TokenKind.Name, name, name, line));
                _pos = e;
                continue;
            }
            if (c == '\'' || c == '"')
            {
                int e = _pos + 1;
                while (e < n && _src[e] != c)
                {
                    if (_src[e] == '\\') e++;
                    e++;
                }
                if (e >= n) throw Error($"unexpected char {Py.Repr(c.ToString())} at {_pos}", _pos);
                string raw = _src[(_pos + 1)..e];
                _tokens.Add(new Token(TokenKind.String, _src[_pos..(e + 1)], Unescape(raw, line), line));
                _pos = e + 1;
                continue;
            }
            string? op = null;
            foreach (var o in Operators)
                if (string.CompareOrdinal(_src, _pos, o, 0, o.Length) == 0) { op = o; break; }
            if (op == null) throw Error($"unexpected char {Py.Repr(c.ToString())} at {_pos}", _pos);
            if (op is "(" or "[" or "{") balance.Push(op switch { "(" => ')', "[" => ']', _ => '}' });
            else if (op is ")" or "]" or "}")
            {
                if (balance.Count == 0) throw Error($"unexpected '{op}'", _pos);
                char expected = balance.Pop();
                if (expected != op[0]) throw Error($"unexpected '{op}', expected '{expected}'", _pos);
            }
            _tokens.Add(new Token(TokenKind.Operator, op, op, line));
            _pos += op.Length;
        }
    }

    private bool TryNumber(out Token token)
    {
        token = default;
        int n = _src.Length, i = _pos;
        if (!char.IsAsciiDigit(_src[i])) return false;
        int DigitsWithUnderscore(int p)
        {
            if (p >= n || !char.IsAsciiDigit(_src[p])) return -1;
            while (p < n && (char.IsAsciiDigit(_src[p]) || (_src[p] == '_' && p + 1 < n && char.IsAsciiDigit(_src[p + 1])))) p++;
            return p;
        }
        // integer prefixes 0b / 0o / 0x: jinja's 0b(_?[01])+ | 0o(_?[0-7])+ | 0x(_?[0-9a-f])+
        if (_src[i] == '0' && i + 1 < n && "bBoOxX".Contains(_src[i + 1]))
        {
            int radix = char.ToLowerInvariant(_src[i + 1]) switch { 'b' => 2, 'o' => 8, _ => 16 };
            bool IsDigit(int at) => at < n && Uri.IsHexDigit(_src[at]) && Convert.ToInt32(_src[at].ToString(), 16) < radix;
            int p = i + 2;
            var sbDigits = new StringBuilder();
            while (true)
            {
                if (IsDigit(p)) sbDigits.Append(_src[p++]);
                else if (_src.Length > p && _src[p] == '_' && IsDigit(p + 1)) p++;
                else break;
            }
            if (sbDigits.Length > 0)
            {
                long bits = (long)sbDigits.Length * (radix == 16 ? 4 : radix == 8 ? 3 : 1);
                if (bits > RenderContext.MaxIntBits + 4)
                    throw new TemplateException("OverflowError", $"integer literal too large: about {bits} bits, more than the {RenderContext.MaxIntBits} this renderer computes", LineAt(i));
                BigInteger v = 0;
                foreach (char ch in sbDigits.ToString()) v = v * radix + Convert.ToInt32(ch.ToString(), 16);
                token = new Token(TokenKind.Integer, _src[i..p], Py.NormalizeInt(v), 0);
                _pos = p;
                return true;
            }
        }
        int intEnd = DigitsWithUnderscore(i);
        int end = intEnd;
        bool isFloat = false;
        // float_re has (?<!\.): after a dot (attribute-style index like foo.0) only an integer is lexed
        if (!(_pos > 0 && _src[_pos - 1] == '.'))
        {
            if (end < n && _src[end] == '.')
            {
                int frac = DigitsWithUnderscore(end + 1);
                if (frac > 0) { end = frac; isFloat = true; }
            }
            if (end < n && (_src[end] == 'e' || _src[end] == 'E'))
            {
                int p = end + 1;
                if (p < n && (_src[p] == '+' || _src[p] == '-')) p++;
                int ex = DigitsWithUnderscore(p);
                if (ex > 0) { end = ex; isFloat = true; }
            }
        }
        string text = _src[i..end].Replace("_", "", StringComparison.Ordinal);
        if (isFloat)
            token = new Token(TokenKind.Float, text, double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture), 0);
        else
        {
            // Python's int() refuses decimal text over sys.get_int_max_str_digits() (4300) digits.
            if (text.Length > RenderContext.MaxIntDigits)
                throw new TemplateException("ValueError",
                    $"Exceeds the limit ({RenderContext.MaxIntDigits} digits) for integer string conversion: value has {text.Length} digits; use sys.set_int_max_str_digits() to increase the limit",
                    LineAt(i));
            token = new Token(TokenKind.Integer, text, Py.NormalizeInt(BigInteger.Parse(text, CultureInfo.InvariantCulture)), 0);
        }
        _pos = end;
        return true;
    }

    /// <summary>Python's <c>unicode-escape</c> decoding of a string literal body.</summary>
    private static string Unescape(string raw, int line)
    {
        if (!raw.Contains('\\')) return raw;
        var sb = new StringBuilder(raw.Length);
        for (int i = 0; i < raw.Length; i++)
        {
            char c = raw[i];
            if (c != '\\') { sb.Append(c); continue; }
            if (i + 1 >= raw.Length) throw TemplateException.Syntax("\\ at end of string", line);
            char e = raw[++i];
            switch (e)
            {
                case '\n': break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'n': sb.Append('\n'); break;
                case 'r': sb.Append('\r'); break;
                case 't': sb.Append('\t'); break;
                case 'v': sb.Append('\v'); break;
                case >= '0' and <= '7':
                    {
                        int v = e - '0', k = 1;
                        while (k < 3 && i + 1 < raw.Length && raw[i + 1] is >= '0' and <= '7') { v = v * 8 + (raw[++i] - '0'); k++; }
                        sb.Append((char)v);
                        break;
                    }
                case 'x' or 'u' or 'U':
                    {
                        int len = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                        if (raw.Length - i - 1 < len || !raw.Substring(i + 1, len).All(Uri.IsHexDigit))
                            throw TemplateException.Syntax($"truncated \\{(e == 'x' ? "xXX" : e == 'u' ? "uXXXX" : "UXXXXXXXX")} escape", line);
                        int cp = int.Parse(raw.AsSpan(i + 1, len), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                        sb.Append(char.ConvertFromUtf32(cp));
                        i += len;
                        break;
                    }
                default:
                    sb.Append('\\').Append(e);
                    break;
            }
        }
        return sb.ToString();
    }
}
