using System.Text;
using System.Text.Json;

namespace Jamba.Inference.Tokenization;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c> with a BPE model (the SentencePiece-BPE flavour: byte
/// fallback, Metaspace / Prepend+Replace normalization), implemented with the same algorithm as
/// the <c>tokenizers</c> crate: characters (or their <c>&lt;0xNN&gt;</c> bytes) are merged by merge
/// rank, lowest first, leftmost on ties.
/// </summary>
internal sealed class HfBpeModel : TokenizerModel
{
    private readonly Dictionary<string, int> _vocab;
    private readonly string?[] _pieces;
    private readonly Dictionary<long, (int Rank, int NewId)> _merges;
    private readonly Dictionary<int, byte> _bytes = new();
    private readonly int? _unkId;
    private readonly bool _fuseUnk;
    private readonly bool _byteFallback;
    private readonly bool _ignoreMerges;
    private readonly List<Func<string, bool, string>> _normalizers = new();
    private readonly List<MetaspaceSpec> _metaspace = new();

    private sealed record MetaspaceSpec(string Replacement, string PrependScheme, bool Split);

    private readonly string _file;

    private HfBpeModel(string file, Dictionary<string, int> vocab, Dictionary<long, (int, int)> merges, int? unkId, bool fuseUnk, bool byteFallback, bool ignoreMerges, DecoderSpec decoder)
    {
        _file = file;
        _vocab = vocab;
        _merges = merges;
        _unkId = unkId;
        _fuseUnk = fuseUnk;
        _byteFallback = byteFallback;
        _ignoreMerges = ignoreMerges;
        Decoder = decoder;
        int size = vocab.Count == 0 ? 0 : vocab.Values.Max() + 1;
        _pieces = new string?[size];
        foreach (var (k, v) in vocab) _pieces[v] = k;
        if (decoder.ByteFallback)
        {
            for (int i = 0; i < _pieces.Length; i++)
                if (_pieces[i] is { } p && TryParseByteToken(p, out byte b)) _bytes[i] = b;
        }
    }

    public override IReadOnlyList<string?> Pieces => _pieces;

    public override IReadOnlyDictionary<int, byte> ByteTokens => _bytes;

    public override DecoderSpec Decoder { get; }

    /// <summary>The <c>added_tokens</c> of the file.</summary>
    public List<AddedTokenSpec> AddedTokens { get; } = new();

    /// <summary>Ids the <c>TemplateProcessing</c> post-processor puts before / after a single sequence.</summary>
    public List<int> TemplatePrefix { get; } = new();

    /// <inheritdoc cref="TemplatePrefix"/>
    public List<int> TemplateSuffix { get; } = new();

    /// <summary>Whether a post-processor was found (so that <see cref="TemplatePrefix"/> is meaningful).</summary>
    public bool HasTemplate { get; private set; }

    /// <summary>The id of the model's <c>unk_token</c>, if any.</summary>
    public int? UnkId => _unkId;

    public override bool TryGetId(string token, out int id) => _vocab.TryGetValue(token, out id);

    public override void EncodeSegment(string segment, bool atTextStart, List<int> ids)
    {
        string s = segment;
        foreach (var n in _normalizers) s = n(s, atTextStart);
        if (s.Length == 0) return;

        IEnumerable<string> words = new[] { s };
        foreach (var m in _metaspace) words = words.SelectMany(w => ApplyMetaspace(w, m, atTextStart)).ToList();
        foreach (var w in words)
            if (w.Length > 0) EncodeWord(w, ids);
    }

    private static IEnumerable<string> ApplyMetaspace(string w, MetaspaceSpec m, bool atTextStart)
    {
        w = w.Replace(" ", m.Replacement);
        bool prepend = m.PrependScheme switch
        {
            "always" => true,
            "first" => atTextStart,
            _ => false,
        };
        if (prepend && !w.StartsWith(m.Replacement, StringComparison.Ordinal)) w = m.Replacement + w;
        if (!m.Split || m.Replacement.Length == 0) return new[] { w };
        // SplitDelimiterBehavior::MergedWithNext: every replacement character starts a new word.
        var parts = new List<string>();
        int start = 0;
        int pos = 0;
        while ((pos = w.IndexOf(m.Replacement, pos, StringComparison.Ordinal)) >= 0)
        {
            if (pos > start)
            {
                parts.Add(w[start..pos]);
                start = pos;
            }
            pos += Math.Max(1, m.Replacement.Length);
        }
        parts.Add(w[start..]);
        return parts.Where(p => p.Length > 0);
    }

    /// <summary>BPE on one pre-tokenized word, exactly as tokenizers' <c>BPE::merge_word</c> + <c>Word::merge_all</c>.</summary>
    private void EncodeWord(string word, List<int> ids)
    {
        if (_ignoreMerges && _vocab.TryGetValue(word, out int whole))
        {
            ids.Add(whole);
            return;
        }

        var sym = new List<int>(word.Length);
        bool lastWasUnk = false;
        Span<byte> buf = stackalloc byte[4];
        foreach (var r in word.EnumerateRunes())
        {
            string c = r.ToString();
            if (_vocab.TryGetValue(c, out int id))
            {
                sym.Add(id);
                lastWasUnk = false;
                continue;
            }
            if (_byteFallback)
            {
                int n = r.EncodeToUtf8(buf);
                var byteIds = new int[n];
                bool all = true;
                for (int k = 0; k < n && all; k++) all = _vocab.TryGetValue(ByteToken(buf[k]), out byteIds[k]);
                if (all)
                {
                    sym.AddRange(byteIds);
                    lastWasUnk = false;
                    continue;
                }
            }
            if (_unkId is not int unk)
                throw new JambaTokenizerException(_file, "model.unk_token", $"the character U+{r.Value:X4} is not in the vocabulary (nor are its bytes, for byte_fallback) and the model has no unk_token to encode it with.");
            if (!(_fuseUnk && lastWasUnk)) sym.Add(unk);
            lastWasUnk = true;
        }

        int count = sym.Count;
        if (count > 1 && _merges.Count > 0)
        {
            var c = sym.ToArray();
            var prev = new int[count];
            var next = new int[count];
            var alive = new bool[count];
            for (int i = 0; i < count; i++) { prev[i] = i - 1; next[i] = i + 1 < count ? i + 1 : -1; alive[i] = true; }
            var queue = new PriorityQueue<(int Pos, int Rank, int NewId), (int Rank, int Pos)>();
            for (int i = 0; i + 1 < count; i++)
                if (_merges.TryGetValue(Key(c[i], c[i + 1]), out var m)) queue.Enqueue((i, m.Rank, m.NewId), (m.Rank, i));

            while (queue.TryDequeue(out var top, out _))
            {
                int pos = top.Pos;
                if (!alive[pos]) continue;
                int right = next[pos];
                if (right < 0) continue;
                if (!_merges.TryGetValue(Key(c[pos], c[right]), out var cur) || cur.Rank != top.Rank || cur.NewId != top.NewId) continue;

                c[pos] = top.NewId;
                alive[right] = false;
                next[pos] = next[right];
                if (next[right] >= 0) prev[next[right]] = pos;

                int p = prev[pos];
                if (p >= 0 && _merges.TryGetValue(Key(c[p], c[pos]), out var mp)) queue.Enqueue((p, mp.Rank, mp.NewId), (mp.Rank, p));
                int nx = next[pos];
                if (nx >= 0 && _merges.TryGetValue(Key(c[pos], c[nx]), out var mn)) queue.Enqueue((pos, mn.Rank, mn.NewId), (mn.Rank, pos));
            }
            for (int i = 0; i >= 0; i = next[i]) ids.Add(c[i]);
            return;
        }
        ids.AddRange(sym);
    }

    private static long Key(int a, int b) => ((long)a << 32) | (uint)b;

    // ------------------------------------------------------------------ loading

    /// <summary>The largest token id accepted: tables are indexed by id, so an id of 2^31 would allocate gigabytes.</summary>
    public const int MaxTokenId = (1 << 24) - 1;

    /// <summary>Bound on the work of converting a SentencePiece model (sum over pieces of length squared).</summary>
    private const long MaxSentencePieceSplitWork = 1L << 28;

    /// <summary>Parses <c>tokenizer.json</c>; every malformed value fails with <see cref="JambaTokenizerException"/> naming its JSON path.</summary>
    public static HfBpeModel Load(string json, string file)
    {
        using var doc = InputFiles.ParseJson(json, lenient: true, (message, inner) => new JambaTokenizerException(file, message, inner));
        var root = new JsonField(doc.RootElement, "", (path, message) => new JambaTokenizerException(file, path, message)).Object();
        var model = (root.Get("model") ?? throw new JambaTokenizerException(file, "model", "is missing (expected the tokenizer model object).")).Object();
        string type = model.OptString("type") ?? (model.Has("merges") ? "BPE" : "");
        if (type != "BPE") throw new JambaTokenizerException(file, "model.type", $"model type '{type}' is not supported (only BPE).");
        if (model.OptString("continuing_subword_prefix") is { Length: > 0 } || model.OptString("end_of_word_suffix") is { Length: > 0 })
            throw new JambaTokenizerException(file, "model", "continuing_subword_prefix / end_of_word_suffix are not supported.");
        if (model.Get("dropout") is { } dropout && dropout.Kind == JsonValueKind.Number && dropout.Value.TryGetDouble(out double p) && p != 0)
            throw dropout.Error($"BPE dropout ({p}) is not supported (it makes encoding random).");
        else if (model.Get("dropout") is { Kind: not JsonValueKind.Number } badDropout)
            throw badDropout.Expected("a number or null");

        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        var byId = new Dictionary<int, string>();
        foreach (var (token, value) in model.Require("vocab", "an object mapping tokens to ids").Properties())
        {
            int id = value.Int(0, MaxTokenId);
            if (!byId.TryAdd(id, token))
                throw value.Error($"id {id} is also the id of {JsonField.Quote(byId[id])} (vocabulary ids must be unique).");
            vocab[token] = id;
        }

        var merges = new Dictionary<long, (int, int)>();
        if (model.Get("merges") is { } mergeList)
        {
            int rank = 0;
            foreach (var m in mergeList.Items())
            {
                string a, b;
                if (m.Kind == JsonValueKind.String)
                {
                    string s = m.String();
                    int sp = s.Length > 1 ? s.IndexOf(' ', 1) : -1;
                    if (sp < 0) throw m.Error($"merge {JsonField.Quote(s)} is not \"a b\" (two tokens separated by a space).");
                    a = s[..sp];
                    b = s[(sp + 1)..];
                }
                else if (m.Kind == JsonValueKind.Array && m.Value.GetArrayLength() == 2)
                {
                    var parts = m.Items().ToArray();
                    a = parts[0].String();
                    b = parts[1].String();
                }
                else throw m.Expected("a merge: \"a b\" or [\"a\", \"b\"]");
                if (!vocab.TryGetValue(a, out int ia) || !vocab.TryGetValue(b, out int ib))
                    throw m.Error($"merge '{a} {b}': a part is not in the vocabulary.");
                if (!vocab.TryGetValue(a + b, out int inew))
                    throw m.Error($"merge '{a} {b}': the result is not in the vocabulary.");
                merges.TryAdd(Key(ia, ib), (rank, inew));
                rank++;
            }
        }

        int? unkId = null;
        if (model.OptString("unk_token") is { } unk)
        {
            if (!vocab.TryGetValue(unk, out int u)) throw new JambaTokenizerException(file, "model.unk_token", $"unk_token '{unk}' is not in the vocabulary.");
            unkId = u;
        }
        bool fuseUnk = model.OptBool("fuse_unk") ?? false;
        bool byteFallback = model.OptBool("byte_fallback") ?? false;
        bool ignoreMerges = model.OptBool("ignore_merges") ?? false;

        var decoder = new DecoderSpec();
        if (root.Get("decoder") is { } dec) ParseDecoder(dec, decoder, file);
        else decoder.JoinWithSpaces = true;

        var result = new HfBpeModel(file, vocab, merges, unkId, fuseUnk, byteFallback, ignoreMerges, decoder);

        if (root.Get("normalizer") is { } norm) result.ParseNormalizer(norm, file);
        if (root.Get("pre_tokenizer") is { } pre) result.ParsePreTokenizer(pre, file);

        if (root.Get("added_tokens") is { } added)
        {
            foreach (var t in added.Items())
            {
                t.Object();
                result.AddedTokens.Add(new AddedTokenSpec(
                    t.Require("id", "a token id").Int(0, MaxTokenId), t.Require("content", "the token text").String(),
                    t.OptBool("special") ?? false, t.OptBool("single_word") ?? false,
                    t.OptBool("lstrip") ?? false, t.OptBool("rstrip") ?? false, t.OptBool("normalized") ?? false));
            }
        }

        if (root.Get("post_processor") is { } post) result.ParsePostProcessor(post, vocab);
        return result;
    }

    /// <summary>
    /// Converts a SentencePiece BPE model the way transformers' <c>LlamaConverter</c> does when a
    /// checkpoint has only <c>tokenizer.model</c>: vocabulary in id order, merges from
    /// <c>SentencePieceExtractor</c> (every split of a piece into two vocabulary pieces, ordered by the
    /// piece's score), byte fallback, CONTROL pieces as special added tokens and USER_DEFINED ones as
    /// added tokens; <paramref name="legacy"/> selects the Prepend+Replace normalizer (every segment
    /// between added tokens gets the dummy prefix) or the Metaspace pre-tokenizer with
    /// <c>prepend_scheme</c> "first".
    /// </summary>
    public static HfBpeModel FromSentencePiece(SentencePieceModelProto proto, bool legacy, string file)
    {
        if (proto.ModelType != 2)
            throw new JambaTokenizerException(file, $"SentencePiece model_type {proto.ModelType} is not supported (only BPE, type 2)");
        if (proto.TreatWhitespaceAsSuffix)
            throw new JambaTokenizerException(file, "treat_whitespace_as_suffix is not supported");
        if (proto.Pieces.Count > MaxTokenId + 1)
            throw new JambaTokenizerException(file, $"the SentencePiece model has {proto.Pieces.Count} pieces, more than the {MaxTokenId + 1} supported");
        // The conversion tries every split of every piece (as transformers' SentencePieceExtractor does): quadratic in
        // the piece length, so a corrupt model with huge pieces would take forever. Real models have pieces of a few dozen characters.
        long work = 0;
        for (int i = 0; i < proto.Pieces.Count; i++) work += (long)proto.Pieces[i].Piece.Length * proto.Pieces[i].Piece.Length;
        if (work > MaxSentencePieceSplitWork)
            throw new JambaTokenizerException(file, $"the SentencePiece pieces are too long to convert (sum of squared lengths {work} > {MaxSentencePieceSplitWork}; longest {proto.Pieces.Max(x => x.Piece.Length)} characters)");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < proto.Pieces.Count; i++) vocab.TryAdd(proto.Pieces[i].Piece, i);

        var merges = new List<(int L, int R, int New, float Score)>();
        var local = new List<(int L, int R, int New, float Score)>();
        for (int i = 0; i < proto.Pieces.Count; i++)
        {
            var (piece, score, _) = proto.Pieces[i];
            local.Clear();
            for (int k = 1; k < piece.Length; k++)
            {
                if (char.IsLowSurrogate(piece[k])) continue; // split between Unicode scalars only
                if (vocab.TryGetValue(piece[..k], out int l) && vocab.TryGetValue(piece[k..], out int r)) local.Add((l, r, vocab[piece], score));
            }
            local.Sort((a, b) => a.L != b.L ? a.L.CompareTo(b.L) : a.R.CompareTo(b.R));
            merges.AddRange(local);
        }
        // Python's sorted(..., reverse=True) is stable: equal scores keep their order.
        var ordered = merges.Select((m, idx) => (m, idx)).OrderByDescending(x => x.m.Score).ThenBy(x => x.idx).Select(x => x.m).ToList();
        var mergeMap = new Dictionary<long, (int, int)>();
        for (int rank = 0; rank < ordered.Count; rank++) mergeMap.TryAdd(Key(ordered[rank].L, ordered[rank].R), (rank, ordered[rank].New));

        int? unk = proto.UnkId >= 0 && proto.UnkId < proto.Pieces.Count ? proto.UnkId : null;
        var decoder = new DecoderSpec { ByteFallback = proto.ByteFallback, StripStart = proto.AddDummyPrefix ? 1 : 0 };
        decoder.Replacements.Add(("\u2581", " "));
        var model = new HfBpeModel(file, vocab, mergeMap, unk, fuseUnk: true, proto.ByteFallback, ignoreMerges: false, decoder);

        if (proto.RemoveExtraWhitespaces)
            model._normalizers.Add((s, _) => string.Join(' ', s.Split(' ', StringSplitOptions.RemoveEmptyEntries)));
        if (legacy)
        {
            if (proto.AddDummyPrefix) model._normalizers.Add((s, _) => s.Length == 0 ? s : "\u2581" + s);
            if (proto.EscapeWhitespaces) model._normalizers.Add((s, _) => s.Replace(' ', '\u2581'));
        }
        else
        {
            model._metaspace.Add(new MetaspaceSpec(proto.EscapeWhitespaces ? "\u2581" : " ", proto.AddDummyPrefix ? "first" : "never", Split: false));
        }

        for (int i = 0; i < proto.Pieces.Count; i++)
        {
            var p = proto.Pieces[i];
            if (p.Type is SentencePieceType.Control or SentencePieceType.UserDefined or SentencePieceType.Unknown)
                model.AddedTokens.Add(new AddedTokenSpec(i, p.Piece, Special: p.Type != SentencePieceType.UserDefined));
        }
        if (proto.BosId >= 0 && proto.BosId < proto.Pieces.Count) model.TemplatePrefix.Add(proto.BosId);
        model.HasTemplate = true;
        return model;
    }

    private void ParseNormalizer(JsonField n, string file)
    {
        string type = n.Object().Require("type", "a normalizer type").String();
        switch (type)
        {
            case "Sequence":
                foreach (var c in n.Require("normalizers", "an array of normalizers").Items()) ParseNormalizer(c, file);
                break;
            case "Prepend":
                {
                    string prepend = n.Require("prepend", "the text to prepend").String();
                    _normalizers.Add((s, _) => s.Length == 0 ? s : prepend + s);
                    break;
                }
            case "Replace":
                {
                    string pattern = StringPattern(n, file);
                    string content = n.Require("content", "the replacement text").String();
                    _normalizers.Add((s, _) => pattern.Length == 0 ? s : s.Replace(pattern, content, StringComparison.Ordinal));
                    break;
                }
            case "NFC": _normalizers.Add((s, _) => s.Normalize(NormalizationForm.FormC)); break;
            case "NFD": _normalizers.Add((s, _) => s.Normalize(NormalizationForm.FormD)); break;
            case "NFKC": _normalizers.Add((s, _) => s.Normalize(NormalizationForm.FormKC)); break;
            case "NFKD": _normalizers.Add((s, _) => s.Normalize(NormalizationForm.FormKD)); break;
            case "Lowercase": _normalizers.Add((s, _) => s.ToLowerInvariant()); break;
            case "Strip":
                {
                    bool left = n.OptBool("strip_left") ?? true, right = n.OptBool("strip_right") ?? true;
                    _normalizers.Add((s, _) => left && right ? s.Trim() : left ? s.TrimStart() : right ? s.TrimEnd() : s);
                    break;
                }
            default:
                throw new JambaTokenizerException(file, n.ChildPath("type"), $"normalizer '{type}' is not supported.");
        }
    }

    private void ParsePreTokenizer(JsonField p, string file)
    {
        string type = p.Object().Require("type", "a pre-tokenizer type").String();
        switch (type)
        {
            case "Sequence":
                foreach (var c in p.Require("pretokenizers", "an array of pre-tokenizers").Items()) ParsePreTokenizer(c, file);
                break;
            case "Metaspace":
                {
                    string replacement = p.OptString("replacement") ?? "\u2581";
                    string scheme = p.OptString("prepend_scheme")
                        ?? ((p.OptBool("add_prefix_space") ?? true) ? "always" : "never");
                    if (scheme is not ("always" or "first" or "never"))
                        throw new JambaTokenizerException(file, p.ChildPath("prepend_scheme"), $"Metaspace prepend_scheme '{scheme}' is not supported (always, first or never).");
                    _metaspace.Add(new MetaspaceSpec(replacement, scheme, p.OptBool("split") ?? true));
                    break;
                }
            default:
                throw new JambaTokenizerException(file, p.ChildPath("type"), $"pre_tokenizer '{type}' is not supported.");
        }
    }

    private static void ParseDecoder(JsonField d, DecoderSpec spec, string file)
    {
        string type = d.Object().Require("type", "a decoder type").String();
        switch (type)
        {
            case "Sequence":
                foreach (var c in d.Require("decoders", "an array of decoders").Items()) ParseDecoder(c, spec, file);
                break;
            case "Replace":
                spec.Replacements.Add((StringPattern(d, file), d.Require("content", "the replacement text").String()));
                break;
            case "ByteFallback":
                spec.ByteFallback = true;
                break;
            case "Fuse":
                break;
            case "Strip":
                {
                    string content = d.OptString("content") ?? " ";
                    int start = d.OptInt("start", 0, 1 << 20) ?? 0;
                    int stop = d.OptInt("stop", 0, 1 << 20) ?? 0;
                    if (stop != 0 || content.Length != 1) throw new JambaTokenizerException(file, d.Path, "Strip decoder: only 'start' with a one-character content is supported.");
                    spec.StripStart = start;
                    spec.StripContent = content[0];
                    break;
                }
            case "Metaspace":
                {
                    string replacement = d.OptString("replacement") ?? "\u2581";
                    if (replacement.Length != 1) throw new JambaTokenizerException(file, d.ChildPath("replacement"), "Metaspace decoder: replacement must be one character.");
                    string scheme = d.OptString("prepend_scheme") ?? ((d.OptBool("add_prefix_space") ?? true) ? "always" : "never");
                    if (scheme is not ("always" or "first" or "never"))
                        throw new JambaTokenizerException(file, d.ChildPath("prepend_scheme"), $"Metaspace prepend_scheme '{scheme}' is not supported (always, first or never).");
                    spec.MetaspaceReplacement = replacement[0];
                    spec.MetaspaceDropFirst = scheme != "never";
                    break;
                }
            default:
                throw new JambaTokenizerException(file, d.ChildPath("type"), $"decoder '{type}' is not supported.");
        }
    }

    private void ParsePostProcessor(JsonField p, Dictionary<string, int> vocab)
    {
        string type = p.Object().OptString("type") ?? "";
        if (type == "Sequence" && p.Get("processors") is { } procs)
        {
            foreach (var c in procs.Items()) ParsePostProcessor(c, vocab);
            return;
        }
        if (type != "TemplateProcessing" || p.Get("single") is not { } single) return; // other post-processors do not add tokens to a single sequence
        HasTemplate = true;
        var specials = new Dictionary<string, List<int>>(StringComparer.Ordinal);
        if (p.Get("special_tokens") is { } st)
            foreach (var (name, e) in st.Properties())
                specials[name] = e.Object().Get("ids") is { } ids ? ids.Items().Select(x => x.Int(0, MaxTokenId)).ToList() : new List<int>();
        bool seenSequence = false;
        foreach (var piece in single.Items())
        {
            if (piece.Object().Has("Sequence")) { seenSequence = true; continue; }
            if (piece.Get("SpecialToken") is not { } tok) continue;
            string id = tok.Object().Require("id", "the special token's name").String();
            List<int> list = specials.TryGetValue(id, out var l) ? l
                : AddedTokens.FirstOrDefault(a => a.Content == id) is { } at ? new List<int> { at.Id }
                : vocab.TryGetValue(id, out int vid) ? new List<int> { vid } : new List<int>();
            (seenSequence ? TemplateSuffix : TemplatePrefix).AddRange(list);
        }
    }

    private static string StringPattern(JsonField e, string file)
    {
        var pattern = e.Require("pattern", "{\"String\": ...}").Object();
        if (pattern.Get("String") is { } s) return s.String();
        throw new JambaTokenizerException(file, pattern.Path, "only String patterns are supported in Replace (not Regex).");
    }
}
