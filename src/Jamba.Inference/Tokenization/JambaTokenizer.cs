using System.Text.Json;

namespace Jamba.Inference.Tokenization;

/// <summary>Which file a <see cref="JambaTokenizer"/> was loaded from.</summary>
public enum JambaTokenizerSource
{
    /// <summary>Hugging Face <c>tokenizer.json</c> (the "fast" tokenizer).</summary>
    TokenizerJson,
    /// <summary>SentencePiece <c>tokenizer.model</c> (BPE), converted as transformers' <c>LlamaConverter</c> does.</summary>
    SentencePieceModel,
}

/// <summary>
/// The tokenizer of a Jamba checkpoint. <see cref="Load"/> follows Hugging Face's
/// <c>AutoTokenizer</c>: <c>tokenizer.json</c> when present, otherwise <c>tokenizer.model</c>
/// (converted the way transformers' <c>LlamaConverter</c> does), plus <c>tokenizer_config.json</c>
/// (<c>add_bos_token</c>, <c>add_eos_token</c>, <c>legacy</c>, bos/eos/pad/unk tokens,
/// <c>added_tokens_decoder</c>) and <c>generation_config.json</c> (<c>eos_token_id</c>).
/// Instances are immutable and thread-safe.
/// </summary>
public sealed class JambaTokenizer
{
    /// <summary>File name of the Hugging Face fast tokenizer.</summary>
    public const string TokenizerJsonFile = "tokenizer.json";
    /// <summary>File name of the SentencePiece model.</summary>
    public const string SentencePieceModelFile = "tokenizer.model";
    /// <summary>File name of the tokenizer configuration.</summary>
    public const string TokenizerConfigFile = "tokenizer_config.json";
    /// <summary>File name of the generation configuration (read for extra <c>eos_token_id</c>s).</summary>
    public const string GenerationConfigFile = "generation_config.json";

    private readonly TokenizerModel _model;
    private readonly Dictionary<int, AddedTokenSpec> _addedById = new();
    private readonly Dictionary<string, int> _addedByContent = new(StringComparer.Ordinal);
    private readonly AddedTokenMatcher _allMatcher;
    private readonly AddedTokenMatcher _nonSpecialMatcher;
    private readonly int[] _prefix;
    private readonly int[] _suffix;
    private readonly HashSet<int> _specialIds;

    internal TokenDecodeTable DecodeTable { get; }

    private JambaTokenizer(TokenizerModel model, JambaTokenizerSource source, IEnumerable<AddedTokenSpec> added, TokenizerConfigInfo cfg,
        IReadOnlyList<int> defaultPrefix, IReadOnlyList<int> defaultSuffix, int? defaultBos, int? defaultEos, int? defaultPad, int? defaultUnk,
        IEnumerable<int> extraEos)
    {
        _model = model;
        Source = source;
        foreach (var a in added)
        {
            _addedById[a.Id] = a;
            _addedByContent[a.Content] = a.Id;
        }
        // tokenizer_config.json's added_tokens_decoder overrides flags (as transformers does).
        foreach (var a in cfg.AddedTokens)
        {
            if (_addedById.TryGetValue(a.Id, out var old) && old.Content != a.Content) _addedByContent.Remove(old.Content);
            _addedById[a.Id] = a;
            _addedByContent[a.Content] = a.Id;
        }

        BosTokenId = ResolveToken(cfg.BosToken) ?? defaultBos;
        EosTokenId = ResolveToken(cfg.EosToken) ?? defaultEos;
        PadTokenId = ResolveToken(cfg.PadToken) ?? defaultPad;
        UnkTokenId = ResolveToken(cfg.UnkToken) ?? defaultUnk;

        // The named special tokens are special even when no added-token entry says so.
        foreach (var id in new[] { BosTokenId, EosTokenId, PadTokenId, UnkTokenId })
        {
            if (id is int i && !_addedById.ContainsKey(i) && IdToToken(i) is { } content)
            {
                var spec = new AddedTokenSpec(i, content, Special: true);
                _addedById[i] = spec;
                _addedByContent.TryAdd(content, i);
            }
        }

        _specialIds = _addedById.Values.Where(a => a.Special).Select(a => a.Id).ToHashSet();
        SpecialTokens = _addedById.Values.Where(a => a.Special).OrderBy(a => a.Id).Select(a => a.Content).ToArray();
        SpecialTokenIds = _specialIds;
        _allMatcher = new AddedTokenMatcher(_addedById.Values);
        _nonSpecialMatcher = new AddedTokenMatcher(_addedById.Values.Where(a => !a.Special));

        _prefix = (cfg.AddBosToken is bool ab ? (ab && BosTokenId is int b ? new[] { b } : Array.Empty<int>()) : defaultPrefix.ToArray());
        _suffix = (cfg.AddEosToken is bool ae ? (ae && EosTokenId is int e ? new[] { e } : Array.Empty<int>()) : defaultSuffix.ToArray());
        AddBosToken = _prefix.Length > 0;
        AddEosToken = _suffix.Length > 0;

        var eos = new List<int>();
        if (EosTokenId is int eid) eos.Add(eid);
        foreach (var x in extraEos) if (!eos.Contains(x)) eos.Add(x);
        EosTokenIds = eos;

        int size = model.Pieces.Count;
        foreach (var id in _addedById.Keys) size = Math.Max(size, id + 1);
        VocabSize = size;
        DecodeTable = new TokenDecodeTable(this, model);
    }

    /// <summary>Which file the tokenizer came from.</summary>
    public JambaTokenizerSource Source { get; }

    /// <summary>Number of token ids (one more than the largest id of the model vocabulary and the added tokens).</summary>
    public int VocabSize { get; }

    /// <summary>The beginning-of-sequence token id (<c>bos_token</c>), if any.</summary>
    public int? BosTokenId { get; }

    /// <summary>The end-of-sequence token id (<c>eos_token</c>), if any.</summary>
    public int? EosTokenId { get; }

    /// <summary>Ids that end generation: <see cref="EosTokenId"/> and the <c>eos_token_id</c>s of <c>generation_config.json</c>.</summary>
    public IReadOnlyList<int> EosTokenIds { get; }

    /// <summary>The padding token id (<c>pad_token</c>), if any.</summary>
    public int? PadTokenId { get; }

    /// <summary>The unknown token id (<c>unk_token</c>), if any.</summary>
    public int? UnkTokenId { get; }

    /// <summary>Whether <see cref="Encode"/> puts the BOS token first when asked to add special tokens.</summary>
    public bool AddBosToken { get; }

    /// <summary>Whether <see cref="Encode"/> puts the EOS token last when asked to add special tokens.</summary>
    public bool AddEosToken { get; }

    /// <summary>The contents of all special tokens, by id.</summary>
    public IReadOnlyList<string> SpecialTokens { get; }

    /// <summary>The ids of all special tokens (skipped by <see cref="Decode"/> with <c>skipSpecialTokens</c>).</summary>
    public IReadOnlySet<int> SpecialTokenIds { get; }

    /// <summary>
    /// Loads the tokenizer of <paramref name="checkpointFolder"/>.
    /// </summary>
    /// <exception cref="FileNotFoundException">The folder has neither <c>tokenizer.json</c> nor <c>tokenizer.model</c>.</exception>
    /// <exception cref="JambaTokenizerException">A tokenizer file is malformed or unsupported.</exception>
    public static JambaTokenizer Load(string checkpointFolder)
        => TryLoad(checkpointFolder, out var t) ? t
            : throw new FileNotFoundException($"{checkpointFolder}: no {TokenizerJsonFile} or {SentencePieceModelFile}", Path.Combine(checkpointFolder, TokenizerJsonFile));

    /// <summary>
    /// Loads the tokenizer of <paramref name="checkpointFolder"/>, or returns false when the folder
    /// has no tokenizer files (the checkpoint can still be used with raw token ids).
    /// </summary>
    /// <exception cref="JambaTokenizerException">A tokenizer file exists but is malformed or unsupported.</exception>
    public static bool TryLoad(string checkpointFolder, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out JambaTokenizer? tokenizer)
    {
        ArgumentNullException.ThrowIfNull(checkpointFolder);
        string json = Path.Combine(checkpointFolder, TokenizerJsonFile);
        string spm = Path.Combine(checkpointFolder, SentencePieceModelFile);
        tokenizer = null;
        bool hasJson = InputFiles.Exists(json);
        if (!hasJson && !InputFiles.Exists(spm)) return false;
        var cfg = TokenizerConfigInfo.Read(Path.Combine(checkpointFolder, TokenizerConfigFile));
        string generationConfig = Path.Combine(checkpointFolder, GenerationConfigFile);
        var extraEos = ReadGenerationEos(generationConfig);
        // Files are read bounded, as strict UTF-8 and through symbolic links (Hugging Face cache snapshots).
        tokenizer = hasJson
            ? FromTokenizerJson(InputFiles.ReadText(json, (message, inner) => new JambaTokenizerException(json, message, inner)), cfg, extraEos, json)
            : FromSentencePiece(InputFiles.ReadBytes(spm, InputFiles.MaxTextBytes, (message, inner) => new JambaTokenizerException(spm, message, inner)), cfg, extraEos, spm);
        foreach (int id in extraEos)
            if (id >= tokenizer.VocabSize)
                throw new JambaTokenizerException(generationConfig, "eos_token_id", $"id {id} is outside the tokenizer's vocabulary (ids 0..{tokenizer.VocabSize - 1}).");
        return true;
    }

    /// <summary>Creates a tokenizer from the text of a Hugging Face <c>tokenizer.json</c> (and optionally of <c>tokenizer_config.json</c>).</summary>
    public static JambaTokenizer FromTokenizerJson(string tokenizerJson, string? tokenizerConfigJson = null)
        => FromTokenizerJson(tokenizerJson, TokenizerConfigInfo.Parse(tokenizerConfigJson, TokenizerConfigFile), Array.Empty<int>(), TokenizerJsonFile);

    /// <summary>Creates a tokenizer from the bytes of a SentencePiece <c>tokenizer.model</c> (and optionally the text of <c>tokenizer_config.json</c>).</summary>
    public static JambaTokenizer FromSentencePiece(byte[] tokenizerModel, string? tokenizerConfigJson = null)
        => FromSentencePiece(tokenizerModel, TokenizerConfigInfo.Parse(tokenizerConfigJson, TokenizerConfigFile), Array.Empty<int>(), SentencePieceModelFile);

    private static JambaTokenizer FromTokenizerJson(string text, TokenizerConfigInfo cfg, IEnumerable<int> extraEos, string file)
    {
        var model = HfBpeModel.Load(text, file);
        return new JambaTokenizer(model, JambaTokenizerSource.TokenizerJson, model.AddedTokens, cfg,
            model.TemplatePrefix, model.TemplateSuffix,
            model.HasTemplate && model.TemplatePrefix.Count == 1 ? model.TemplatePrefix[0] : null,
            model.HasTemplate && model.TemplateSuffix.Count == 1 ? model.TemplateSuffix[0] : null,
            null, model.UnkId, extraEos);
    }

    private static JambaTokenizer FromSentencePiece(byte[] bytes, TokenizerConfigInfo cfg, IEnumerable<int> extraEos, string file)
    {
        SentencePieceModelProto proto;
        try
        {
            proto = SentencePieceModelProto.Parse(bytes);
        }
        catch (FormatException e)
        {
            throw new JambaTokenizerException(file, "not a SentencePiece model: " + e.Message, e);
        }
        if (proto.Pieces.Count == 0) throw new JambaTokenizerException(file, "the SentencePiece model has no pieces");
        var model = HfBpeModel.FromSentencePiece(proto, cfg.Legacy ?? true, file);
        int? Valid(int id) => id >= 0 && id < proto.Pieces.Count ? id : null;
        int? bos = Valid(proto.BosId), eos = Valid(proto.EosId);
        return new JambaTokenizer(model, JambaTokenizerSource.SentencePieceModel, model.AddedTokens, cfg,
            model.TemplatePrefix, Array.Empty<int>(), bos, eos, Valid(proto.PadId), Valid(proto.UnkId), extraEos);
    }

    /// <summary>
    /// Encodes <paramref name="text"/> to token ids.
    /// </summary>
    /// <param name="text">The text.</param>
    /// <param name="addSpecialTokens">Add the BOS / EOS tokens the tokenizer is configured to add (<see cref="AddBosToken"/>, <see cref="AddEosToken"/>).</param>
    /// <param name="parseSpecialTokens">Match special tokens written in the text (e.g. <c>&lt;|bom|&gt;</c> rendered by a chat template) as whole tokens.
    /// When false they are encoded as ordinary text; non-special added tokens are always matched (Hugging Face's <c>split_special_tokens</c>).</param>
    /// <exception cref="JambaTokenizerException">The text has a character this tokenizer cannot encode (no unk_token and no byte fallback for it).</exception>
    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = true, bool parseSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 4);
        if (addSpecialTokens) ids.AddRange(_prefix);
        var matcher = parseSpecialTokens ? _allMatcher : _nonSpecialMatcher;
        if (text.Length > 0)
        {
            if (matcher.IsEmpty)
            {
                _model.EncodeSegment(text, true, ids);
            }
            else
            {
                foreach (var (start, length, token) in matcher.Split(text))
                {
                    if (token is not null) ids.Add(token.Id);
                    else _model.EncodeSegment(text.Substring(start, length), start == 0, ids);
                }
            }
        }
        if (addSpecialTokens) ids.AddRange(_suffix);
        return ids;
    }

    /// <summary>Decodes token ids to text, as Hugging Face's <c>decode</c> does (ids outside the vocabulary are ignored).</summary>
    /// <param name="ids">The ids.</param>
    /// <param name="skipSpecialTokens">Leave out special tokens (<see cref="SpecialTokenIds"/>).</param>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var d = new StreamingDetokenizer(this, skipSpecialTokens);
        var sb = new System.Text.StringBuilder();
        foreach (int id in ids) sb.Append(d.Append(id));
        sb.Append(d.Flush());
        return sb.ToString();
    }

    /// <summary>Creates a <see cref="StreamingDetokenizer"/> for one generated sequence.</summary>
    public StreamingDetokenizer CreateStreamingDetokenizer(bool skipSpecialTokens = false) => new(this, skipSpecialTokens);

    /// <summary>The id of a token string (added tokens first, then the model vocabulary), or null.</summary>
    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        if (_addedByContent.TryGetValue(token, out int id)) return id;
        return _model.TryGetId(token, out id) ? id : null;
    }

    /// <summary>The token string of an id (the raw piece, e.g. <c>▁Hello</c> or <c>&lt;0x0A&gt;</c>), or null when the id is unknown.</summary>
    public string? IdToToken(int id)
    {
        if (_addedById.TryGetValue(id, out var a)) return a.Content;
        return id >= 0 && id < _model.Pieces.Count ? _model.Pieces[id] : null;
    }

    /// <summary>Whether <paramref name="id"/> is a special token.</summary>
    public bool IsSpecialToken(int id) => _specialIds.Contains(id);

    private int? ResolveToken(string? content)
    {
        if (content is null) return null;
        if (_addedByContent.TryGetValue(content, out int id)) return id;
        return _model.TryGetId(content, out id) ? id : null;
    }

    /// <summary>The <c>eos_token_id</c>s of <c>generation_config.json</c> (an id, a list of ids or null); the other id fields are type-checked.</summary>
    private static List<int> ReadGenerationEos(string path)
    {
        var list = new List<int>();
        if (!InputFiles.Exists(path)) return list;
        using var doc = InputFiles.ReadJson(path, lenient: true, (message, inner) => new JambaTokenizerException(path, message, inner));
        var root = new JsonField(doc.RootElement, "", (field, message) => new JambaTokenizerException(path, field, message)).Object();
        if (root.Get("eos_token_id") is { } e)
        {
            if (e.Kind == JsonValueKind.Array) list.AddRange(e.Items().Select(x => x.Int(0, HfBpeModel.MaxTokenId)));
            else list.Add(e.Int(0, HfBpeModel.MaxTokenId));
        }
        foreach (var field in new[] { "bos_token_id", "pad_token_id", "decoder_start_token_id" })
            root.OptInt(field, 0, HfBpeModel.MaxTokenId);
        return list;
    }
}
