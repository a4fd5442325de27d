namespace Jamba.Inference.Generation;

/// <summary>
/// How to continue a prompt: length, sampling, penalties, stops. Defaults give plain sampling at
/// temperature 1; <see cref="Temperature"/> 0 is greedy decoding. <see cref="Validate()"/> checks every range.
/// </summary>
public sealed class GenerationOptions
{
    /// <summary>Most tokens to generate (1…1,048,576; default 256).</summary>
    public int MaxNewTokens { get; set; } = 256;
    /// <summary>Softmax temperature (0 = greedy; 0…100; default 1).</summary>
    public float Temperature { get; set; } = 1f;
    /// <summary>Keep only the <c>k</c> most likely tokens (0 = off; ≥ 0; default 0).</summary>
    public int TopK { get; set; }
    /// <summary>Nucleus sampling: keep the smallest set of tokens whose probability reaches <c>p</c> (0 &lt; p ≤ 1; default 1 = off).</summary>
    public float TopP { get; set; } = 1f;
    /// <summary>Drop tokens less likely than <c>min_p × p(max)</c> (0…1; default 0 = off).</summary>
    public float MinP { get; set; }
    /// <summary>HF repetition penalty over prompt and output tokens (&gt; 0, at most 10; 1 = off).</summary>
    public float RepetitionPenalty { get; set; } = 1f;
    /// <summary>OpenAI presence penalty over output tokens (−2…2; default 0).</summary>
    public float PresencePenalty { get; set; }
    /// <summary>OpenAI frequency penalty over output tokens (−2…2; default 0).</summary>
    public float FrequencyPenalty { get; set; }
    /// <summary>Random seed: the same seed, prompt and options give the same output. Null draws one.</summary>
    public long? Seed { get; set; }
    /// <summary>Texts that end generation when they appear in the output (matched on decoded text, even across
    /// tokens; never emitted). At most 16, each non-empty. Setting null means none (an empty list).</summary>
    [System.Diagnostics.CodeAnalysis.AllowNull]
    public IList<string> StopSequences
    {
        get => _stopSequences;
        set => _stopSequences = value ?? new List<string>();
    }
    private IList<string> _stopSequences = new List<string>();

    /// <summary>Extra token ids that end generation (besides the model's EOS ids), each non-negative. Setting null means none (an empty list).</summary>
    [System.Diagnostics.CodeAnalysis.AllowNull]
    public IList<int> StopTokenIds
    {
        get => _stopTokenIds;
        set => _stopTokenIds = value ?? new List<int>();
    }
    private IList<int> _stopTokenIds = new List<int>();
    /// <summary>Keep generating through EOS tokens (benchmarks). Default false.</summary>
    public bool IgnoreEos { get; set; }
    /// <summary>Report the log-probability of each generated token. Default false.</summary>
    public bool LogProbs { get; set; }
    /// <summary>With <see cref="LogProbs"/>, also report this many most likely alternatives (0…20).</summary>
    public int TopLogProbs { get; set; }
    /// <summary>Keep special tokens (e.g. <c>&lt;tool_calls&gt;</c>) in the text. Default true: the chat layer needs them.</summary>
    public bool IncludeSpecialTokensInText { get; set; } = true;

    /// <summary>
    /// Constrains the output to one JSON value (a JSON Schema, or any value/object; see <see cref="JsonConstraint"/>), or
    /// null (default) for free text. Tokens that cannot continue a valid value are masked before sampling, so every
    /// sampling setting still applies among the allowed ones; EOS and <see cref="StopTokenIds"/> are allowed only once the
    /// value may end, and the sequence ends (<see cref="FinishReason.Stop"/>) as soon as the value is complete. Near
    /// <see cref="MaxNewTokens"/> only tokens after which the value can still be closed in the tokens left are allowed; a
    /// value that cannot be finished ends with <see cref="FinishReason.Length"/> and
    /// <see cref="GenerationUpdate.ConstraintIncomplete"/> set. <see cref="StopSequences"/> are not matched while a
    /// constraint is set (the value decides the end); <see cref="IgnoreEos"/> does not keep a finished value going.
    /// </summary>
    public JsonConstraint? Constraint { get; set; }

    /// <summary>Whether decoding is greedy.</summary>
    public bool IsGreedy => Temperature == 0f || TopK == 1;

    /// <summary>Checks every option.</summary>
    /// <exception cref="ArgumentException">Names the option and the allowed range.</exception>
    public void Validate() => Validate(null);

    /// <summary>
    /// Checks every option, naming a wrong one by the caller's own name for it: a connector passes its mapping (e.g.
    /// Semantic Kernel's <c>max_tokens</c> for <see cref="MaxNewTokens"/>), so a user reads the setting they wrote.
    /// </summary>
    /// <param name="settingName">Maps a property name of this class to the caller's setting name; null or an unmapped
    /// name keeps the property name.</param>
    /// <exception cref="ArgumentException">Names the setting (also as <see cref="ArgumentException.ParamName"/>) and the allowed range.</exception>
    public void Validate(Func<string, string?>? settingName)
    {
        void Check(bool ok, string property, string range, object? value)
        {
            if (ok) return;
            string name = settingName?.Invoke(property) ?? property;
            throw new ArgumentException($"{name} must be {range}; found {value}.", name);
        }
        Check(MaxNewTokens is >= 1 and <= 1 << 20, nameof(MaxNewTokens), "between 1 and 1048576", MaxNewTokens);
        Check(float.IsFinite(Temperature) && Temperature is >= 0f and <= 100f, nameof(Temperature), "between 0 and 100 (0 = greedy)", Temperature);
        Check(TopK >= 0, nameof(TopK), "0 (off) or positive", TopK);
        Check(float.IsFinite(TopP) && TopP > 0f && TopP <= 1f, nameof(TopP), "in (0, 1]", TopP);
        Check(float.IsFinite(MinP) && MinP is >= 0f and <= 1f, nameof(MinP), "in [0, 1]", MinP);
        Check(float.IsFinite(RepetitionPenalty) && RepetitionPenalty > 0f && RepetitionPenalty <= 10f, nameof(RepetitionPenalty), "in (0, 10] (1 = off)", RepetitionPenalty);
        Check(float.IsFinite(PresencePenalty) && PresencePenalty is >= -2f and <= 2f, nameof(PresencePenalty), "in [-2, 2]", PresencePenalty);
        Check(float.IsFinite(FrequencyPenalty) && FrequencyPenalty is >= -2f and <= 2f, nameof(FrequencyPenalty), "in [-2, 2]", FrequencyPenalty);
        Check(TopLogProbs is >= 0 and <= 20, nameof(TopLogProbs), "between 0 and 20", TopLogProbs);
        Check(StopSequences.Count <= 16, nameof(StopSequences), "at most 16 entries", StopSequences.Count);
        for (int i = 0; i < StopSequences.Count; i++)
            Check(!string.IsNullOrEmpty(StopSequences[i]), nameof(StopSequences), "non-empty strings",
                $"{(StopSequences[i] is null ? "null" : "an empty string")} at index {i}");
        for (int i = 0; i < StopTokenIds.Count; i++)
            Check(StopTokenIds[i] >= 0, nameof(StopTokenIds), "non-negative token ids", $"{StopTokenIds[i]} at index {i}");
    }

    /// <summary>A deep copy (the engine keeps its own; callers may change theirs). A null <see cref="StopSequences"/> or
    /// <see cref="StopTokenIds"/> is copied as an empty list (null means none).</summary>
    public GenerationOptions Clone()
    {
        var c = (GenerationOptions)MemberwiseClone();
        c.StopSequences = new List<string>(StopSequences ?? []);
        c.StopTokenIds = new List<int>(StopTokenIds ?? []);
        return c;
    }
}

/// <summary>Why generation ended.</summary>
public enum FinishReason
{
    /// <summary>An EOS token, stop token or stop sequence.</summary>
    Stop,
    /// <summary><see cref="GenerationOptions.MaxNewTokens"/> or the context limit was reached.</summary>
    Length,
    /// <summary>The caller cancelled.</summary>
    Cancelled,
}

/// <summary>Token counts of one generation.</summary>
/// <param name="PromptTokens">Tokens in the prompt.</param>
/// <param name="CompletionTokens">Tokens generated (including a final EOS/stop token).</param>
/// <param name="CachedPromptTokens">Prompt tokens whose state came from a snapshot instead of being prefilled.</param>
public sealed record GenerationUsage(int PromptTokens, int CompletionTokens, int CachedPromptTokens = 0)
{
    /// <summary>Prompt plus completion.</summary>
    public int TotalTokens => PromptTokens + CompletionTokens;
}

/// <summary>The log-probability of one token.</summary>
/// <param name="TokenId">The token.</param>
/// <param name="LogProb">Natural log of its probability under the model.</param>
public readonly record struct TokenLogProb(int TokenId, float LogProb);

/// <summary>
/// One streamed piece of a generation: a generated token and the text it completes (possibly empty when
/// the text is held back, e.g. half a UTF-8 character or a possible stop sequence). The last update has
/// <see cref="FinishReason"/> and <see cref="Usage"/> set.
/// </summary>
public sealed record GenerationUpdate
{
    /// <summary>The generated token, or null on a final update that only flushes text.</summary>
    public int? TokenId { get; init; }
    /// <summary>New text (never contains a stop sequence, never broken UTF-8).</summary>
    public string Text { get; init; } = "";
    /// <summary>Log-probability of <see cref="TokenId"/>, when requested.</summary>
    public float? LogProb { get; init; }
    /// <summary>Most likely alternatives at this step, when requested.</summary>
    public IReadOnlyList<TokenLogProb>? TopLogProbs { get; init; }
    /// <summary>Set on the last update.</summary>
    public FinishReason? FinishReason { get; init; }
    /// <summary>Set on the last update.</summary>
    public GenerationUsage? Usage { get; init; }
    /// <summary>On the last update of a constrained generation (<see cref="GenerationOptions.Constraint"/>): true when the
    /// JSON value was not finished (the token or context budget ran out, or the caller cancelled), so the text is not a
    /// valid value; false otherwise.</summary>
    public bool ConstraintIncomplete { get; init; }
    /// <summary>Seconds spent prefilling the prompt (last update only).</summary>
    public double? PrefillSeconds { get; init; }
    /// <summary>Seconds from the first to the last generated token (last update only).</summary>
    public double? DecodeSeconds { get; init; }
}
