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
        ApplyMask(logits, mask, limit);
        for (int i = 0; i < nSaved; i++) logits[(int)saved[i * 2]] = saved[i * 2 + 1];
        return mask.Count > 0 || accepting;
    }

    private void ApplyMask(Span<float> logits, TokenMask mask, int limit)
    {
        int size = Math.Min(_vocab.Size, logits.Length);
        if (mask.Sparse is { } ids)
        {
            int n = 0;
            Span<float> keep = ids.Length <= 4096 ? stackalloc float[ids.Length] : new float[ids.Length];
            for (int i = 0; i < ids.Length; i++) keep[i] = ids[i] < size ? logits[ids[i]] : float.NegativeInfinity;
            logits.Fill(float.NegativeInfinity);
            for (int i = 0; i < ids.Length; i++)
                if (ids[i] < size && mask.CloseAfter[i] <= limit) { logits[ids[i]] = keep[i]; n++; }
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
