using System.Diagnostics;
using Jamba.Inference.Tokenization;

namespace Jamba.Inference.Generation;

/// <summary>
/// The state machine of one generating sequence, apart from its tensors: it samples each position's logits
/// (<see cref="LogitsSampler"/>, with every option of <see cref="GenerationOptions"/>), detokenizes the chosen token
/// incrementally, holds back text that may become a stop sequence (<see cref="StopSequenceMatcher"/>) and decides when the
/// sequence ends and why (EOS or stop token, stop sequence, <see cref="GenerationOptions.MaxNewTokens"/>, the context
/// limit, cancellation), with the token counts and timings of the final update.
/// </summary>
/// <remarks>
/// The engine owns the tensors and the schedule and feeds this object one row of logits per step
/// (<see cref="Next"/>); a sequence is driven from one thread at a time. Every update it returns is ready to stream: the
/// last one has <see cref="GenerationUpdate.FinishReason"/> and <see cref="GenerationUpdate.Usage"/> set, and nothing is
/// returned after it.
/// </remarks>
public sealed class GenerationSequence
{
    private readonly GenerationOptions _options;
    private readonly IReadOnlySet<int> _eos;
    private readonly LogitsSampler _sampler;
    private readonly StreamingDetokenizer? _detokenizer;
    private readonly StopSequenceMatcher _stops;
    private readonly int _maxContextTokens;
    private readonly JsonConstraintState? _constraint;
    private long _firstTokenTicks;

    /// <summary>Creates the state of a sequence continuing <paramref name="promptTokens"/>.</summary>
    /// <param name="promptTokens">The prompt (the repetition penalty looks at it).</param>
    /// <param name="options">Generation options (copied and validated).</param>
    /// <param name="eosTokenIds">Tokens that end the sequence unless <see cref="GenerationOptions.IgnoreEos"/> (besides <see cref="GenerationOptions.StopTokenIds"/>).</param>
    /// <param name="detokenizer">Turns tokens into text; null yields token ids with empty text.</param>
    /// <param name="maxContextTokens">Longest context (prompt and generated tokens) the sequence may reach.</param>
    /// <param name="cachedPromptTokens">Prompt tokens whose state was reused rather than prefilled (reported in the usage).</param>
    /// <exception cref="ArgumentException">An option is out of range (names it).</exception>
    public GenerationSequence(IReadOnlyList<int> promptTokens, GenerationOptions options, IReadOnlySet<int> eosTokenIds,
        StreamingDetokenizer? detokenizer, int maxContextTokens, int cachedPromptTokens = 0)
    {
        ArgumentNullException.ThrowIfNull(promptTokens);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(eosTokenIds);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxContextTokens);
        _options = options.Clone();
        _options.Validate();
        _eos = eosTokenIds;
        PromptTokens = promptTokens.Count;
        CachedPromptTokens = cachedPromptTokens;
        _sampler = new LogitsSampler(_options, promptTokens);
        _detokenizer = detokenizer;
        _maxContextTokens = maxContextTokens;
        if (_options.Constraint is { } constraint)
        {
            if (detokenizer is null) throw new ArgumentException("A constrained generation (Constraint) needs the model's tokenizer.", nameof(detokenizer));
            _constraint = new JsonConstraintState(constraint, ConstraintVocabulary.For(detokenizer.Table));
            _stops = new StopSequenceMatcher([]);
        }
        else _stops = new StopSequenceMatcher(_options.StopSequences);
    }

    /// <summary>The options in force (a private copy).</summary>
    public GenerationOptions Options => _options;
    /// <summary>Tokens in the prompt.</summary>
    public int PromptTokens { get; }
    /// <summary>Prompt tokens served from a snapshot or the prefix cache.</summary>
    public int CachedPromptTokens { get; set; }
    /// <summary>Tokens generated so far (a final EOS or stop token included).</summary>
    public int Generated { get; private set; }
    /// <summary>The last token generated (the next step's input), or -1 before the first.</summary>
    public int LastToken { get; private set; } = -1;
    /// <summary>Whether the final update was returned.</summary>
    public bool IsFinished => FinishReason is not null;
    /// <summary>Why the sequence ended, once it has.</summary>
    public FinishReason? FinishReason { get; private set; }
    /// <summary>Seconds spent prefilling the prompt (set by the scheduler once the prompt is in the cache).</summary>
    public double PrefillSeconds { get; set; }

    /// <summary>Consumes the logits of the next position and returns the update to stream: the chosen token and the text it
    /// releases, or the final update when the sequence ends here.</summary>
    /// <param name="logits">The next position's logits (changed in place by the sampler's penalties and filters).</param>
    /// <param name="contextLength">Positions already in the sequence's cache (the context limit is checked against it).</param>
    /// <exception cref="InvalidOperationException">The sequence has already finished.</exception>
    public GenerationUpdate Next(Span<float> logits, int contextLength)
    {
        if (IsFinished) throw new InvalidOperationException("The sequence has finished; it takes no more logits.");
        if (contextLength >= _maxContextTokens) return Finish(Generation.FinishReason.Length);
        float[]? raw = _options.LogProbs ? logits.ToArray() : null;
        if (_constraint is not null)
        {
            // Tokens left after this one, by the token budget and by the context.
            int budget = Math.Min(_options.MaxNewTokens - Generated - 1, _maxContextTokens - contextLength - 1);
            if (!_constraint.Apply(logits, budget, _eos, _options.StopTokenIds)) return Finish(Generation.FinishReason.Length);
        }
        int token = _sampler.Sample(logits);
        if (_constraint is not null && !_constraint.Allowed(token) && !(_constraint.IsAccepting && IsStopToken(token)))
            token = LogitsSampler.ArgMax(logits); // a draw can only land outside the mask through rounding
        _sampler.Accept(token);
        if (Generated == 0) _firstTokenTicks = Stopwatch.GetTimestamp();
        Generated++;
        LastToken = token;
        float? logProb = null;
        IReadOnlyList<TokenLogProb>? top = null;
        if (raw is not null) (logProb, top) = LogitsSampler.LogProbs(raw, token, _options.TopLogProbs);
        if (_constraint is not null)
        {
            if (_constraint.IsAccepting && IsStopToken(token)) return Finish(Generation.FinishReason.Stop, token, logProb, top);
            _constraint.Advance(token);
            string part = _detokenizer!.Append(token);
            if (_constraint.IsComplete) return Finish(Generation.FinishReason.Stop, token, logProb, top, part);
            if (Generated >= _options.MaxNewTokens) return Finish(Generation.FinishReason.Length, token, logProb, top, part);
            return new GenerationUpdate { TokenId = token, Text = part, LogProb = logProb, TopLogProbs = top };
        }
        if (!_options.IgnoreEos && IsStopToken(token))
            return Finish(Generation.FinishReason.Stop, token, logProb, top);
        string text = _detokenizer?.Append(token) ?? "";
        string released = _stops.Push(text);
        if (_stops.Stopped) return Finish(Generation.FinishReason.Stop, token, logProb, top, released);
        if (Generated >= _options.MaxNewTokens) return Finish(Generation.FinishReason.Length, token, logProb, top, released);
        return new GenerationUpdate { TokenId = token, Text = released, LogProb = logProb, TopLogProbs = top };
    }

    private bool IsStopToken(int token) => _eos.Contains(token) || _options.StopTokenIds.Contains(token);

    /// <summary>Whether the constrained value is finished (or may end here); null without a constraint.</summary>
    public bool? ConstraintSatisfied => _constraint?.IsAccepting;

    /// <summary>Ends the sequence now (the caller cancelled, or the engine stops) and returns its final update.</summary>
    /// <param name="reason">Why; <see cref="Generation.FinishReason.Cancelled"/> drops held-back text.</param>
    /// <exception cref="InvalidOperationException">The sequence has already finished.</exception>
    public GenerationUpdate End(FinishReason reason)
    {
        if (IsFinished) throw new InvalidOperationException("The sequence has already finished.");
        return Finish(reason);
    }

    private GenerationUpdate Finish(FinishReason reason, int? token = null, float? logProb = null, IReadOnlyList<TokenLogProb>? top = null, string text = "")
    {
        FinishReason = reason;
        string rest = "";
        if (reason != Generation.FinishReason.Cancelled)
        {
            if (!_stops.Stopped) rest = _stops.Push(_detokenizer?.Flush() ?? "");
            rest += _stops.Flush();
        }
        double decodeSeconds = _firstTokenTicks == 0 ? 0 : Stopwatch.GetElapsedTime(_firstTokenTicks).TotalSeconds;
        return new GenerationUpdate
        {
            TokenId = token,
            Text = text + rest,
            LogProb = logProb,
            TopLogProbs = top,
            FinishReason = reason,
            Usage = new GenerationUsage(PromptTokens, Generated, CachedPromptTokens),
            ConstraintIncomplete = _constraint is not null && !_constraint.IsAccepting,
            PrefillSeconds = PrefillSeconds,
            DecodeSeconds = decodeSeconds,
        };
    }
}
