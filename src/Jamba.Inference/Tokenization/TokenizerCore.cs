namespace Jamba.Inference.Tokenization;

/// <summary>A token that is matched as a whole in the input text before the model sees it (HF <c>AddedToken</c>).</summary>
internal sealed record AddedTokenSpec(int Id, string Content, bool Special, bool SingleWord = false, bool LStrip = false, bool RStrip = false, bool Normalized = false);

/// <summary>How ids are turned back into text: the parts of a Hugging Face decoder chain this library implements.</summary>
internal sealed class DecoderSpec
{
    /// <summary><c>Replace</c> steps (pattern, content), applied to each token in order.</summary>
    public List<(string Pattern, string Content)> Replacements { get; } = new();
    /// <summary>A <c>ByteFallback</c> step: tokens <c>&lt;0xNN&gt;</c> are raw UTF-8 bytes.</summary>
    public bool ByteFallback { get; set; }
    /// <summary>A <c>Strip</c> step after <c>Fuse</c>: this many leading <see cref="StripContent"/> characters are removed from the text.</summary>
    public int StripStart { get; set; }
    /// <summary>The character <see cref="StripStart"/> removes.</summary>
    public char StripContent { get; set; } = ' ';
    /// <summary>A <c>Metaspace</c> decoder: its replacement character becomes a space, and is dropped from the first token when <see cref="MetaspaceDropFirst"/>.</summary>
    public char? MetaspaceReplacement { get; set; }
    /// <summary>Whether the Metaspace decoder removes the replacement characters of the first token (prepend_scheme other than "never").</summary>
    public bool MetaspaceDropFirst { get; set; }
    /// <summary>No decoder at all: tokens are joined with single spaces, as Hugging Face does.</summary>
    public bool JoinWithSpaces { get; set; }
}

/// <summary>The model behind a tokenizer: encodes one piece of text that contains no added tokens.</summary>
internal abstract class TokenizerModel
{
    /// <summary>Token strings by id (the model's own vocabulary; holes are null).</summary>
    public abstract IReadOnlyList<string?> Pieces { get; }

    /// <summary>Ids of tokens that are raw bytes (SentencePiece BYTE pieces), with their byte value.</summary>
    public abstract IReadOnlyDictionary<int, byte> ByteTokens { get; }

    /// <summary>Looks up a token string in the model vocabulary.</summary>
    public abstract bool TryGetId(string token, out int id);

    /// <summary>Encodes <paramref name="segment"/> (text between added tokens) and appends the ids.</summary>
    /// <param name="segment">The text, never empty.</param>
    /// <param name="atTextStart">Whether the segment starts at offset 0 of the caller's text.</param>
    /// <param name="ids">Receives the ids.</param>
    public abstract void EncodeSegment(string segment, bool atTextStart, List<int> ids);

    /// <summary>The decoder to use for this model.</summary>
    public abstract DecoderSpec Decoder { get; }

    /// <summary>Parses <c>&lt;0xNN&gt;</c>.</summary>
    public static bool TryParseByteToken(string token, out byte value)
    {
        value = 0;
        if (token.Length != 6 || !token.StartsWith("<0x", StringComparison.Ordinal) || token[5] != '>') return false;
        return byte.TryParse(token.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, null, out value);
    }

    /// <summary>Formats <c>&lt;0xNN&gt;</c> (upper-case hex, as SentencePiece and HF write it).</summary>
    public static string ByteToken(byte b) => $"<0x{b:X2}>";
}

/// <summary>Splits text at added tokens: leftmost match first, the longest token at that position.</summary>
internal sealed class AddedTokenMatcher
{
    private readonly Dictionary<char, AddedTokenSpec[]> _byFirstChar;

    public AddedTokenMatcher(IEnumerable<AddedTokenSpec> tokens)
    {
        _byFirstChar = tokens.Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
    }

    public bool IsEmpty => _byFirstChar.Count == 0;

    /// <summary>Splits <paramref name="text"/> into (segment start, segment length, token or null) parts.</summary>
    public List<(int Start, int Length, AddedTokenSpec? Token)> Split(string text)
    {
        var parts = new List<(int, int, AddedTokenSpec?)>();
        int segStart = 0;
        int i = 0;
        while (i < text.Length)
        {
            AddedTokenSpec? match = null;
            if (_byFirstChar.TryGetValue(text[i], out var candidates))
            {
                foreach (var c in candidates)
                {
                    if (string.CompareOrdinal(text, i, c.Content, 0, c.Content.Length) == 0
                        && (!c.SingleWord || IsWordBoundary(text, i, i + c.Content.Length)))
                    {
                        match = c;
                        break;
                    }
                }
            }
            if (match is null) { i++; continue; }

            int segEnd = i;
            if (match.LStrip) while (segEnd > segStart && char.IsWhiteSpace(text[segEnd - 1])) segEnd--;
            if (segEnd > segStart) parts.Add((segStart, segEnd - segStart, null));
            parts.Add((i, match.Content.Length, match));
            i += match.Content.Length;
            if (match.RStrip) while (i < text.Length && char.IsWhiteSpace(text[i])) i++;
            segStart = i;
        }
        if (segStart < text.Length) parts.Add((segStart, text.Length - segStart, null));
        return parts;
    }

    private static bool IsWordBoundary(string text, int start, int end)
    {
        bool before = start == 0 || !char.IsLetterOrDigit(text[start - 1]) && text[start - 1] != '_';
        bool after = end >= text.Length || !char.IsLetterOrDigit(text[end]) && text[end] != '_';
        return before && after;
    }
}
