using System.Buffers.Binary;
using System.Text;

namespace Jamba.Inference.Tokenization;

/// <summary>The type of a SentencePiece vocabulary entry (<c>ModelProto.SentencePiece.Type</c>).</summary>
internal enum SentencePieceType
{
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// <summary>One vocabulary entry of a SentencePiece model.</summary>
internal readonly record struct SentencePieceEntry(string Piece, float Score, SentencePieceType Type);

/// <summary>
/// The parts of a SentencePiece <c>ModelProto</c> (sentencepiece_model.proto) the tokenizer needs,
/// read with a minimal protobuf wire-format reader (no generated code).
/// </summary>
internal sealed class SentencePieceModelProto
{
    public List<SentencePieceEntry> Pieces { get; } = new();
    /// <summary>TrainerSpec.model_type: 1 unigram, 2 bpe, 3 word, 4 char.</summary>
    public int ModelType { get; private set; } = 1;
    public int UnkId { get; private set; }
    public int BosId { get; private set; } = 1;
    public int EosId { get; private set; } = 2;
    public int PadId { get; private set; } = -1;
    public bool ByteFallback { get; private set; }
    public bool TreatWhitespaceAsSuffix { get; private set; }
    public bool AddDummyPrefix { get; private set; } = true;
    public bool RemoveExtraWhitespaces { get; private set; } = true;
    public bool EscapeWhitespaces { get; private set; } = true;
    public string NormalizationRuleName { get; private set; } = "nmt_nfkc";
    public bool HasPrecompiledCharsMap { get; private set; }

    public static SentencePieceModelProto Parse(ReadOnlySpan<byte> data)
    {
        var m = new SentencePieceModelProto();
        var r = new Reader(data);
        while (!r.End)
        {
            var (field, wire) = r.Key();
            switch (field)
            {
                case 1 when wire == 2: m.Pieces.Add(ParsePiece(r.Bytes())); break;
                case 2 when wire == 2: m.ParseTrainerSpec(r.Bytes()); break;
                case 3 when wire == 2: m.ParseNormalizerSpec(r.Bytes()); break;
                default: r.Skip(wire); break;
            }
        }
        return m;
    }

    private static SentencePieceEntry ParsePiece(ReadOnlySpan<byte> data)
    {
        string piece = "";
        float score = 0;
        var type = SentencePieceType.Normal;
        var r = new Reader(data);
        while (!r.End)
        {
            var (field, wire) = r.Key();
            if (field == 1 && wire == 2) piece = Utf8(r.Bytes(), "piece");
            else if (field == 2 && wire == 5) score = r.Fixed32Float();
            else if (field == 3 && wire == 0) type = (SentencePieceType)(int)r.Varint();
            else r.Skip(wire);
        }
        return new SentencePieceEntry(piece, score, type);
    }

    private void ParseTrainerSpec(ReadOnlySpan<byte> data)
    {
        var r = new Reader(data);
        while (!r.End)
        {
            var (field, wire) = r.Key();
            if (wire != 0) { r.Skip(wire); continue; }
            long v = r.Varint();
            switch (field)
            {
                case 3: ModelType = (int)v; break;
                case 24: TreatWhitespaceAsSuffix = v != 0; break;
                case 35: ByteFallback = v != 0; break;
                case 40: UnkId = (int)v; break;
                case 41: BosId = (int)v; break;
                case 42: EosId = (int)v; break;
                case 43: PadId = (int)v; break;
            }
        }
    }

    private void ParseNormalizerSpec(ReadOnlySpan<byte> data)
    {
        var r = new Reader(data);
        while (!r.End)
        {
            var (field, wire) = r.Key();
            switch (field)
            {
                case 1 when wire == 2: NormalizationRuleName = Utf8(r.Bytes(), "normalizer_spec.name"); break;
                case 2 when wire == 2: HasPrecompiledCharsMap = r.Bytes().Length > 0; break;
                case 3 when wire == 0: AddDummyPrefix = r.Varint() != 0; break;
                case 4 when wire == 0: RemoveExtraWhitespaces = r.Varint() != 0; break;
                case 5 when wire == 0: EscapeWhitespaces = r.Varint() != 0; break;
                default: r.Skip(wire); break;
            }
        }
    }

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Strict UTF-8 (a string field with invalid bytes is a corrupt model, not text to repair).</summary>
    private static string Utf8(ReadOnlySpan<byte> bytes, string field)
    {
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            throw new FormatException($"{field} is not valid UTF-8: {e.Message}", e);
        }
    }

    private ref struct Reader
    {
        private readonly ReadOnlySpan<byte> _data;
        private int _pos;

        public Reader(ReadOnlySpan<byte> data) { _data = data; _pos = 0; }

        public readonly bool End => _pos >= _data.Length;

        public (int Field, int Wire) Key()
        {
            long k = Varint();
            return ((int)(k >> 3), (int)(k & 7));
        }

        public long Varint()
        {
            long result = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (_pos >= _data.Length) throw new FormatException("truncated varint");
                byte b = _data[_pos++];
                result |= (long)(b & 0x7F) << shift;
                if (b < 0x80) return result;
            }
            throw new FormatException("varint too long");
        }

        public ReadOnlySpan<byte> Bytes()
        {
            long n = Varint();
            if (n < 0 || n > _data.Length - _pos) throw new FormatException("length-delimited field runs past the end");
            var s = _data.Slice(_pos, (int)n);
            _pos += (int)n;
            return s;
        }

        public float Fixed32Float()
        {
            if (_data.Length - _pos < 4) throw new FormatException("truncated fixed32");
            float f = BinaryPrimitives.ReadSingleLittleEndian(_data.Slice(_pos, 4));
            _pos += 4;
            return f;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0: Varint(); break;
                case 1: Advance(8); break;
                case 2: Bytes(); break;
                case 5: Advance(4); break;
                default: throw new FormatException($"unsupported protobuf wire type {wire}");
            }
        }

        private void Advance(int n)
        {
            if (_data.Length - _pos < n) throw new FormatException("truncated field");
            _pos += n;
        }
    }
}
