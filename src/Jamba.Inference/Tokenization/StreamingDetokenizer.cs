using System.Buffers;
using System.Text;

namespace Jamba.Inference.Tokenization;

/// <summary>Per-id decoding data, computed once per tokenizer.</summary>
internal sealed class TokenDecodeTable
{
    public TokenDecodeTable(JambaTokenizer tokenizer, TokenizerModel model)
    {
        var d = model.Decoder;
        int n = tokenizer.VocabSize;
        Text = new string?[n];
        FirstText = new string?[n];
        Bytes = new short[n];
        Special = new bool[n];
        Decoder = d;
        for (int id = 0; id < n; id++)
        {
            Bytes[id] = -1;
            Special[id] = tokenizer.IsSpecialToken(id);
            string? tok = tokenizer.IdToToken(id);
            if (tok is null) continue;
            if (d.ByteFallback && !Special[id] && model.ByteTokens.TryGetValue(id, out byte b))
            {
                Bytes[id] = b;
                continue;
            }
            foreach (var (pattern, content) in d.Replacements)
                if (pattern.Length > 0) tok = tok.Replace(pattern, content, StringComparison.Ordinal);
            string first = tok;
            if (d.MetaspaceReplacement is char rep)
            {
                first = d.MetaspaceDropFirst ? tok.Replace(rep.ToString(), "", StringComparison.Ordinal) : tok.Replace(rep, ' ');
                tok = tok.Replace(rep, ' ');
            }
            Text[id] = tok;
            FirstText[id] = first;
        }
    }

    public DecoderSpec Decoder { get; }
    public string?[] Text { get; }
    public string?[] FirstText { get; }
    public short[] Bytes { get; }
    public bool[] Special { get; }
}

/// <summary>
/// Turns the ids of one generated sequence into text incrementally. <see cref="Append"/> returns
/// only text that is final: a character whose UTF-8 bytes are spread over several byte-fallback
/// tokens (<c>&lt;0xF0&gt;&lt;0x9F&gt;…</c>) is held back until it is complete, and the leading
/// space of the first token is removed exactly as <see cref="JambaTokenizer.Decode"/> removes it.
/// The concatenation of all deltas and of <see cref="Flush"/> equals <see cref="JambaTokenizer.Decode"/>
/// of all ids. Not thread-safe; use one instance per sequence.
/// </summary>
public sealed class StreamingDetokenizer
{
    private readonly TokenDecodeTable _table;
    private readonly bool _skipSpecial;
    private readonly List<byte> _pending = new(8);
    private readonly StringBuilder _sb = new();
    private int _tokens;
    private int _stripLeft;

    /// <summary>Creates a detokenizer for one sequence.</summary>
    /// <param name="tokenizer">The tokenizer.</param>
    /// <param name="skipSpecialTokens">Leave out special tokens, as <see cref="JambaTokenizer.Decode"/> does with the same flag.</param>
    public StreamingDetokenizer(JambaTokenizer tokenizer, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _table = tokenizer.DecodeTable;
        _skipSpecial = skipSpecialTokens;
        _stripLeft = _table.Decoder.StripStart;
    }

    /// <summary>The tokenizer's per-id decoding data (constrained decoding reads the token bytes from it).</summary>
    internal TokenDecodeTable Table => _table;

    /// <summary>Number of ids appended so far (including skipped ones).</summary>
    public int TokenCount { get; private set; }

    /// <summary>Whether bytes of an incomplete character are held back.</summary>
    public bool HasPendingBytes => _pending.Count > 0;

    /// <summary>Adds the next id and returns the text that became final (possibly empty).</summary>
    public string Append(int tokenId)
    {
        TokenCount++;
        if ((uint)tokenId >= (uint)_table.Text.Length) return "";
        if (_skipSpecial && _table.Special[tokenId]) return "";
        _sb.Clear();
        short b = _table.Bytes[tokenId];
        if (b >= 0)
        {
            _pending.Add((byte)b);
            DrainPending(final: false);
        }
        else
        {
            string? text = _tokens == 0 ? _table.FirstText[tokenId] : _table.Text[tokenId];
            if (text is null) return "";
            DrainPending(final: true);
            if (_table.Decoder.JoinWithSpaces && _tokens > 0) _sb.Append(' ');
            _sb.Append(text);
        }
        _tokens++;
        return Emit();
    }

    /// <summary>Ends the sequence: returns held-back bytes (an incomplete character becomes U+FFFD per byte).</summary>
    public string Flush()
    {
        _sb.Clear();
        DrainPending(final: true);
        return Emit();
    }

    /// <summary>Forgets everything, to start a new sequence.</summary>
    public void Reset()
    {
        _pending.Clear();
        _sb.Clear();
        _tokens = 0;
        TokenCount = 0;
        _stripLeft = _table.Decoder.StripStart;
    }

    private string Emit()
    {
        // Strip decoder (after Fuse): up to StripStart leading StripContent characters of the whole text.
        int start = 0;
        while (_stripLeft > 0 && start < _sb.Length)
        {
            if (_sb[start] == _table.Decoder.StripContent)
            {
                start++;
                _stripLeft--;
            }
            else
            {
                _stripLeft = 0;
            }
        }
        return start == 0 ? _sb.ToString() : _sb.ToString(start, _sb.Length - start);
    }

    /// <summary>Decodes complete UTF-8 characters from the pending bytes; invalid bytes become U+FFFD each.</summary>
    private void DrainPending(bool final)
    {
        if (_pending.Count == 0) return;
        Span<byte> buf = stackalloc byte[_pending.Count];
        for (int i = 0; i < buf.Length; i++) buf[i] = _pending[i];
        int pos = 0;
        while (pos < buf.Length)
        {
            var status = Rune.DecodeFromUtf8(buf[pos..], out Rune rune, out int consumed);
            if (status == OperationStatus.Done)
            {
                _sb.Append(rune.ToString());
                pos += consumed;
            }
            else if (status == OperationStatus.NeedMoreData && !final)
            {
                break;
            }
            else
            {
                _sb.Append('\uFFFD');
                pos += 1;
            }
        }
        _pending.RemoveRange(0, pos);
    }
}
