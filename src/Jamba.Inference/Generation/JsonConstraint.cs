using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Jamba.Inference.Tokenization;

namespace Jamba.Inference.Generation;

/// <summary>
/// A constraint on generated text: it must be one JSON value matching a JSON Schema (or any JSON value / object). Set it
/// as <see cref="GenerationOptions.Constraint"/>; the engine then masks, before sampling, every token that cannot continue
/// a valid value, allows EOS only once the value is complete, and ends the sequence (finish reason
/// <see cref="FinishReason.Stop"/>) as soon as it is; immutable and shared by any number of requests (compiled schemas
/// and their token masks are cached).
/// </summary>
/// <remarks>
/// Supported schema keywords: <c>type</c> (also arrays of types), <c>properties</c>, <c>required</c>,
/// <c>additionalProperties</c> (absent with declared properties means none), <c>items</c>, <c>minItems</c>,
/// <c>maxItems</c>, <c>enum</c>, <c>const</c>, <c>format</c> (<c>date</c>, <c>date-time</c>, <c>uuid</c>),
/// <c>minLength</c>, <c>maxLength</c>, <c>minimum</c>, <c>maximum</c>, <c>exclusiveMinimum</c>,
/// <c>exclusiveMaximum</c>, <c>anyOf</c>, <c>oneOf</c> (matched as <c>anyOf</c>), <c>$ref</c> to <c>#…</c> pointers
/// (<c>$defs</c>, <c>definitions</c>, recursion); the annotations <c>title</c>, <c>description</c>, <c>default</c>,
/// <c>examples</c>, <c>$schema</c>, <c>$id</c>, <c>$comment</c> are ignored. Any other keyword (e.g. <c>pattern</c>,
/// <c>allOf</c>, <c>not</c>, <c>if</c>) throws <see cref="NotSupportedException"/> naming it and where it is. The text
/// written is compact-ish JSON: at most four whitespace characters in a row, property names without escapes, enum and
/// const values exactly as their canonical serialization, numbers with at most 15 integer and 12 fraction digits, dates
/// with days 01–28.
/// </remarks>
public sealed class JsonConstraint
{
    /// <summary>Largest schema text accepted (bytes).</summary>
    public const int MaxSchemaBytes = JsonSchemaCompiler.MaxSchemaBytes;
    private const int MaxCachedSchemas = 64;
    private static readonly ConcurrentDictionary<string, JsonConstraint> Compiled = new(StringComparer.Ordinal);
    private readonly ConditionalWeakTable<ConstraintVocabulary, MaskCache> _masks = new();

    internal SchemaNode Root { get; }

    private JsonConstraint(SchemaNode root, string? schema, string description)
    {
        Root = root;
        SchemaText = schema;
        Description = description;
    }

    /// <summary>Any JSON value (<c>ChatResponseFormat.Json</c> is <see cref="AnyObject"/>).</summary>
    public static JsonConstraint AnyValue { get; } = new(JsonSchemaCompiler.AnyValue(objectOnly: false), null, "any JSON value");

    /// <summary>Any JSON object.</summary>
    public static JsonConstraint AnyObject { get; } = new(JsonSchemaCompiler.AnyValue(objectOnly: true), null, "any JSON object");

    /// <summary>The schema's text (compact), or null for <see cref="AnyValue"/> / <see cref="AnyObject"/>.</summary>
    public string? SchemaText { get; }

    /// <summary>A short description for messages.</summary>
    public string Description { get; }

    /// <summary>Compiles a JSON Schema given as text.</summary>
    /// <param name="schema">The schema (JSON text, at most <see cref="MaxSchemaBytes"/> bytes).</param>
    /// <exception cref="ArgumentException">The text is not JSON, too large, or not a valid schema (names the place).</exception>
    /// <exception cref="NotSupportedException">The schema uses a keyword constrained decoding does not implement (names it and its path).</exception>
    public static JsonConstraint FromSchema(string schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        if (Encoding.UTF8.GetByteCount(schema) > MaxSchemaBytes)
            throw new ArgumentException($"The JSON schema is larger than {MaxSchemaBytes} bytes.", nameof(schema));
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(schema, new JsonDocumentOptions { MaxDepth = JsonSchemaCompiler.MaxDepth * 2 + 8 });
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"The JSON schema is not valid JSON: {e.Message}", nameof(schema), e);
        }
        using (doc) return FromSchema(doc.RootElement);
    }

    /// <summary>Compiles a JSON Schema (as <c>AIJsonUtilities.CreateJsonSchema</c> or <c>ChatResponseFormat.ForJsonSchema</c> give it).</summary>
    /// <param name="schema">The schema.</param>
    /// <exception cref="ArgumentException">The schema is too large or not valid (names the place).</exception>
    /// <exception cref="NotSupportedException">The schema uses a keyword constrained decoding does not implement (names it and its path).</exception>
    public static JsonConstraint FromSchema(JsonElement schema)
    {
        string text = schema.GetRawText();
        if (text.Length > MaxSchemaBytes) throw new ArgumentException($"The JSON schema is larger than {MaxSchemaBytes} bytes.", nameof(schema));
        if (Compiled.TryGetValue(text, out var known)) return known;
        var root = JsonSchemaCompiler.Compile(schema);
        var c = new JsonConstraint(root, text, "the JSON schema");
        if (Compiled.Count >= MaxCachedSchemas) Compiled.Clear();
        return Compiled.GetOrAdd(text, c);
    }

    internal MaskCache MasksFor(ConstraintVocabulary vocab) => _masks.GetValue(vocab, v => new MaskCache(v));

    /// <summary>Whether <paramref name="json"/> is a complete text this constraint accepts (the matcher alone, no tokens).</summary>
    /// <param name="json">The text.</param>
    public bool Accepts(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        var s = MatcherState.Initial(Root).Advance(Encoding.UTF8.GetBytes(json));
        return !s.IsDead && s.IsAccepting;
    }

    /// <summary>Whether <paramref name="text"/> can still be continued into a text this constraint accepts.</summary>
    /// <param name="text">The prefix.</param>
    public bool AcceptsPrefix(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return !MatcherState.Initial(Root).Advance(Encoding.UTF8.GetBytes(text)).IsDead;
    }

    internal bool AcceptsPrefix(ReadOnlySpan<byte> bytes) => !MatcherState.Initial(Root).Advance(bytes).IsDead;

    /// <inheritdoc />
    public override string ToString() => Description;
}

/// <summary>
/// The per-sequence state of a <see cref="JsonConstraint"/>: the matcher state after the tokens so far, the mask of the
/// next step (from the shared cache) and the budget rule. Driven by <see cref="GenerationSequence"/> on one thread.
/// </summary>
internal sealed class JsonConstraintState
{
    private readonly MaskCache _cache;
    private readonly ConstraintVocabulary _vocab;
    private MatcherState _state;
    private TokenMask? _mask;

    public JsonConstraintState(JsonConstraint constraint, ConstraintVocabulary vocab)
    {
        _vocab = vocab;
        _cache = constraint.MasksFor(vocab);
        _state = MatcherState.Initial(constraint.Root);
    }

    public bool IsComplete => _state.IsComplete;
    public bool IsAccepting => _state.IsAccepting;
    public bool IsDead => _state.IsDead;
    public int MinClose => _state.MinClose();

    /// <summary>Masks <paramref name="logits"/>: tokens that cannot continue the value become −∞, and so do tokens after
    /// which the value could not be finished in <paramref name="budget"/> more tokens (one byte per token at worst); EOS
    /// ids keep their logit only when the value may end here. Returns whether any token is left.</summary>
    public bool Apply(Span<float> logits, int budget, IReadOnlySet<int> eos, IList<int> stopIds)
    {
        var mask = _mask = _cache.Get(_state);
        bool accepting = _state.IsAccepting;
        Span<float> saved = stackalloc float[16];
        int nSaved = 0;
        if (accepting)
        {
            foreach (int id in eos)
                if ((uint)id < (uint)logits.Length && nSaved < 8) { saved[nSaved * 2] = id; saved[nSaved * 2 + 1] = logits[id]; nSaved++; }
            foreach (int id in stopIds)
                if ((uint)id < (uint)logits.Length && nSaved < 8) { saved[nSaved * 2] = id; saved[nSaved * 2 + 1] = logits[id]; nSaved++; }
        }
        // Within budget unless the budget is short of what some allowed token would need; then keep the tokens that fit
        // (or, when none does, the ones that need least: the sequence will end with the constraint incomplete).
        int limit = budget >= mask.MaxCloseAfter ? int.MaxValue : Math.Max(budget, mask.MinCloseAfter);
        ApplyMask(logits, mask, limit, _vocab.Size);
        for (int i = 0; i < nSaved; i++) logits[(int)saved[i * 2]] = saved[i * 2 + 1];
        return mask.Count > 0 || accepting;
    }

    internal static void ApplyMask(Span<float> logits, TokenMask mask, int limit, int vocabSize)
    {
        int size = Math.Min(vocabSize, logits.Length);
        if (mask.Sparse is { } ids)
        {
            int n = 0;
            Span<float> keep = ids.Length <= 4096 ? stackalloc float[ids.Length] : new float[ids.Length];
            for (int i = 0; i < ids.Length; i++) keep[i] = ids[i] < size ? logits[ids[i]] : float.NegativeInfinity;
            logits.Fill(float.NegativeInfinity);
            for (int i = 0; i < ids.Length; i++)
                if (ids[i] < size && mask.CloseAfter[i] <= limit) { logits[ids[i]] = keep[i]; n++; }
            if (n == 0 && ids.Length > 0) throw new InvalidOperationException("A constraint mask left no token.");
            return;
        }
        var bits = mask.Bits;
        bool filter = limit != int.MaxValue;
        for (int w = 0; w < bits.Length; w++)
        {
            int start = w * 64;
            if (start >= size) break;
            int len = Math.Min(64, size - start);
            ulong word = bits[w];
            if (filter && word != 0)
                for (ulong x = word; x != 0; x &= x - 1)
                {
                    int bit = System.Numerics.BitOperations.TrailingZeroCount(x);
                    if (mask.CloseAfter[start + bit] > limit) word &= ~(1UL << bit);
                }
            if (word == ulong.MaxValue && len == 64) continue;
            if (word == 0)
            {
                logits.Slice(start, len).Fill(float.NegativeInfinity);
                continue;
            }
            for (int b = 0; b < len; b++)
                if ((word & (1UL << b)) == 0) logits[start + b] = float.NegativeInfinity;
        }
        if (logits.Length > size) logits[size..].Fill(float.NegativeInfinity);
    }

    /// <summary>Whether <paramref name="token"/> was allowed by the last mask.</summary>
    public bool Allowed(int token) => _mask is { } m && (uint)token < (uint)_vocab.Size && (m.Bits[token >> 6] & (1UL << (token & 63))) != 0;

    /// <summary>Moves past <paramref name="token"/>.</summary>
    public void Advance(int token)
    {
        var bytes = (uint)token < (uint)_vocab.Size ? _vocab.Tokens[token] : null;
        _state = bytes is null ? new MatcherState([]) : _state.Advance(bytes);
    }
}

/// <summary>The cost of one constrained step, measured by <see cref="JsonConstraintProbe"/>.</summary>
/// <param name="VocabularySize">Tokens in the vocabulary.</param>
/// <param name="Steps">Tokens of the sample text (one mask each).</param>
/// <param name="ColdMicroseconds">Mean µs per step computing each mask from scratch and applying it to a row of logits.</param>
/// <param name="CachedMicroseconds">Mean µs per step when the masks are cached (a lookup and the application).</param>
public sealed record ConstraintMaskTiming(int VocabularySize, int Steps, double ColdMicroseconds, double CachedMicroseconds);

/// <summary>Measures the mask step of a <see cref="JsonConstraint"/> on a vocabulary (for <c>jamba bench --json-constraint</c>).</summary>
public static class JsonConstraintProbe
{
    private const string Punctuation = "!\"#$%&'()*+,-./:;<=>?@[]^_`{|}~";

    /// <summary>A synthetic vocabulary shaped like Jamba's SentencePiece ones: the 256 byte-fallback pieces
    /// (<c>&lt;0xNN&gt;</c>), printable ASCII, word pieces with and without a leading <c>▁</c>, digit runs, punctuation and
    /// JSON-ish runs (<c>{"</c>, <c>":</c>, <c>",</c>…), whitespace runs and non-ASCII letters.</summary>
    /// <param name="size">Tokens (at least 512).</param>
    /// <param name="seed">Seed of the random word pieces.</param>
    public static IReadOnlyList<string> SyntheticVocabulary(int size = 65536, int seed = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 512);
        var pieces = new List<string>(size);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        void Add(string p)
        {
            if (pieces.Count < size && seen.Add(p)) pieces.Add(p);
        }
        Add("<unk>"); Add("<|startoftext|>"); Add("<|endoftext|>");
        for (int b = 0; b < 256; b++) Add($"<0x{b:X2}>");
        for (char c = ' '; c < (char)127; c++) Add(c.ToString());
        foreach (var p in new[] { "{\"", "\":", "\",", "\"}", "\":\"", "\",\"", "},", "}]", "]}", "[{", "{}", "[]", "\": ", ", \"", "\n", "\n  ", "\n    ", "  ", "    ", "▁{", "▁\"", "▁[", "▁}", "true", "false", "null", "▁true", "▁false", "▁null", "\\n", "\\\"", "://", "...", "--" })
            Add(p.Replace("▁", " "));
        var rng = new Random(seed);
        const string letters = "etaoinshrdlcumwfgypbvkjxqz";
        const string other = "éèàüöäñçßøåæœłšžčřőű中文日本語한국어абвгдежзиклмнопрстуфхцчшщыэюя";
        for (int d = 0; d < 1000 && pieces.Count < size; d++) Add(d.ToString(System.Globalization.CultureInfo.InvariantCulture));
        while (pieces.Count < size)
        {
            int kind = rng.Next(20);
            int len = 1 + (int)Math.Min(14, -Math.Log(1 - rng.NextDouble()) * 4);
            var sb = new StringBuilder();
            if (kind < 12) sb.Append(' '); // "▁word"
            if (kind == 19) { for (int i = 0; i < Math.Min(len, 4); i++) sb.Append(other[rng.Next(other.Length)]); }
            else if (kind == 18) { for (int i = 0; i < Math.Min(len, 4); i++) sb.Append(Punctuation[rng.Next(Punctuation.Length)]); }
            else
            {
                for (int i = 0; i < len; i++) sb.Append(letters[Math.Min(letters.Length - 1, (int)(-Math.Log(1 - rng.NextDouble()) * 6))]);
                if (kind % 5 == 0) sb[sb.Length > 1 && kind < 12 ? 1 : 0] = char.ToUpperInvariant(sb[sb.Length > 1 && kind < 12 ? 1 : 0]);
            }
            Add(sb.ToString());
        }
        return pieces;
    }

    /// <summary>Measures the masks along <paramref name="sample"/> (tokenized greedily, longest allowed piece first) over
    /// <paramref name="pieces"/> (<c>&lt;0xNN&gt;</c> entries are bytes; <c>&lt;…&gt;</c> others are special).</summary>
    /// <param name="constraint">The constraint.</param>
    /// <param name="pieces">The vocabulary.</param>
    /// <param name="sample">A text the constraint accepts.</param>
    public static ConstraintMaskTiming Measure(JsonConstraint constraint, IReadOnlyList<string> pieces, string sample)
    {
        ArgumentNullException.ThrowIfNull(pieces);
        var tokens = new byte[]?[pieces.Count];
        for (int i = 0; i < tokens.Length; i++)
        {
            string p = pieces[i];
            if (p.Length == 6 && p.StartsWith("<0x", StringComparison.Ordinal) && p[5] == '>' && byte.TryParse(p.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out byte b)) tokens[i] = [b];
            else if (p.Length > 2 && p[0] == '<' && p[^1] == '>') tokens[i] = null;
            else tokens[i] = Encoding.UTF8.GetBytes(p);
        }
        return Measure(constraint, new ConstraintVocabulary(tokens), sample);
    }

    /// <summary>Measures the masks along <paramref name="sample"/> over <paramref name="tokenizer"/>'s vocabulary.</summary>
    /// <param name="constraint">The constraint.</param>
    /// <param name="tokenizer">The tokenizer.</param>
    /// <param name="sample">A text the constraint accepts.</param>
    public static ConstraintMaskTiming Measure(JsonConstraint constraint, JambaTokenizer tokenizer, string sample)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        return Measure(constraint, ConstraintVocabulary.For(tokenizer), sample);
    }

    private static ConstraintMaskTiming Measure(JsonConstraint constraint, ConstraintVocabulary vocab, string sample)
    {
        ArgumentNullException.ThrowIfNull(constraint);
        ArgumentNullException.ThrowIfNull(sample);
        var bytes = Encoding.UTF8.GetBytes(sample);
        var cache = new MaskCache(vocab);
        var states = new List<MatcherState>();
        var state = MatcherState.Initial(constraint.Root);
        int pos = 0;
        while (pos < bytes.Length && !state.IsComplete)
        {
            var mask = cache.Get(state);
            // The longest allowed piece that matches the text here.
            int best = -1, bestLen = 0, node = 0;
            for (int d = pos; d < bytes.Length; d++)
            {
                int child = -1;
                for (int c = node + 1; c < vocab.End[node]; c = vocab.End[c])
                    if (vocab.EdgeByte[c] == bytes[d]) { child = c; break; }
                if (child < 0) break;
                node = child;
                for (int k = vocab.TokenStart[node], e = k + vocab.TokenCount[node]; k < e; k++)
                {
                    int id = vocab.SortedIds[k];
                    if ((mask.Bits[id >> 6] & (1UL << (id & 63))) != 0) { best = id; bestLen = d - pos + 1; break; }
                }
            }
            if (best < 0) throw new ArgumentException($"The sample text cannot be written with this vocabulary under the constraint (at byte {pos}).", nameof(sample));
            states.Add(state);
            state = state.Advance(vocab.Tokens[best]);
            pos += bestLen;
        }
        var logits = new float[vocab.Size];
        var row = new float[vocab.Size];
        new Random(1).NextBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(row.AsSpan()));
        for (int i = 0; i < row.Length; i++) row[i] = (row[i] is var v && float.IsFinite(v) ? v % 8 : 0);
        var cold = new MaskCache(vocab);
        double coldTicks = 0, cachedTicks = 0;
        foreach (var s in states)
        {
            row.CopyTo(logits, 0);
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            var m = cold.Compute(s);
            JsonConstraintState.ApplyMask(logits, m, int.MaxValue, vocab.Size);
            coldTicks += System.Diagnostics.Stopwatch.GetTimestamp() - t0;
        }
        for (int rep = 0; rep < 3; rep++)
            foreach (var s in states)
            {
                row.CopyTo(logits, 0);
                long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                var m = cache.Get(s);
                JsonConstraintState.ApplyMask(logits, m, int.MaxValue, vocab.Size);
                cachedTicks += System.Diagnostics.Stopwatch.GetTimestamp() - t0;
            }
        double us = 1e6 / System.Diagnostics.Stopwatch.Frequency;
        int n = Math.Max(1, states.Count);
        return new ConstraintMaskTiming(vocab.Size, states.Count, coldTicks * us / n, cachedTicks * us / (3 * n));
    }
}
