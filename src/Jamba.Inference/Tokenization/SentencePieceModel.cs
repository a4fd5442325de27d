using System.Text;
using Microsoft.ML.Tokenizers;

namespace Jamba.Inference.Tokenization;

/// <summary>
/// A SentencePiece <c>tokenizer.model</c>: encoding by Microsoft.ML.Tokenizers'
/// <see cref="SentencePieceTokenizer"/>; the normalization (dummy prefix, whitespace escaping) is
/// done here so that it can be applied per segment between added tokens, as Hugging Face does.
/// </summary>
internal sealed class SentencePieceModel : TokenizerModel
{
    private readonly SentencePieceTokenizer _tokenizer;
    private readonly string?[] _pieces;
    private readonly Dictionary<string, int> _ids;
    private readonly Dictionary<int, byte> _bytes = new();
    private readonly bool _legacy;

    public SentencePieceModel(byte[] modelBytes, bool legacy, string file)
    {
        try
        {
            Proto = SentencePieceModelProto.Parse(modelBytes);
        }
        catch (FormatException e)
        {
            throw new JambaTokenizerException(file, "not a SentencePiece model: " + e.Message, e);
        }
        if (Proto.Pieces.Count == 0) throw new JambaTokenizerException(file, "the SentencePiece model has no pieces");
        if (Proto.ModelType is not (1 or 2))
            throw new JambaTokenizerException(file, $"SentencePiece model_type {Proto.ModelType} is not supported (only unigram and BPE)");
        if (Proto.TreatWhitespaceAsSuffix)
            throw new JambaTokenizerException(file, "treat_whitespace_as_suffix is not supported");

        _legacy = legacy;
        _pieces = new string?[Proto.Pieces.Count];
        _ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < Proto.Pieces.Count; i++)
        {
            var p = Proto.Pieces[i];
            _pieces[i] = p.Piece;
            _ids.TryAdd(p.Piece, i);
            if (p.Type == SentencePieceType.Byte && TryParseByteToken(p.Piece, out byte b)) _bytes[i] = b;
        }

        try
        {
            using var stream = new MemoryStream(modelBytes, writable: false);
            _tokenizer = SentencePieceTokenizer.Create(stream, false, false, null);
        }
        catch (Exception e) when (e is not JambaTokenizerException)
        {
            throw new JambaTokenizerException(file, "Microsoft.ML.Tokenizers could not load the SentencePiece model: " + e.Message, e);
        }
        Decoder = DecoderSpec.SentencePiece(Proto.ByteFallback, Proto.AddDummyPrefix);
    }

    public SentencePieceModelProto Proto { get; }

    public override IReadOnlyList<string?> Pieces => _pieces;

    public override IReadOnlyDictionary<int, byte> ByteTokens => _bytes;

    public override DecoderSpec Decoder { get; }

    public override bool TryGetId(string token, out int id) => _ids.TryGetValue(token, out id);

    public override void EncodeSegment(string segment, bool atTextStart, List<int> ids)
    {
        string normalized = Normalize(segment, _legacy || atTextStart);
        if (normalized.Length == 0) return;
        ids.AddRange(_tokenizer.EncodeToIds(normalized, addBeginningOfSentence: false, addEndOfSentence: false,
            considerPreTokenization: false, considerNormalization: false));
    }

    /// <summary>SentencePiece's normalizer for the identity rule: extra-whitespace removal, dummy prefix, whitespace escaping.</summary>
    private string Normalize(string text, bool dummyPrefix)
    {
        if (Proto.RemoveExtraWhitespaces)
        {
            var sb = new StringBuilder(text.Length);
            bool lastSpace = true;
            foreach (char c in text)
            {
                if (c == ' ')
                {
                    if (!lastSpace) sb.Append(' ');
                    lastSpace = true;
                }
                else
                {
                    sb.Append(c);
                    lastSpace = false;
                }
            }
            while (sb.Length > 0 && sb[^1] == ' ') sb.Length--;
            text = sb.ToString();
        }
        if (text.Length == 0) return text;
        if (dummyPrefix && Proto.AddDummyPrefix) text = " " + text;
        return Proto.EscapeWhitespaces ? text.Replace(' ', '\u2581') : text;
    }
}
