using Jamba.Inference.Generation;
using Jamba.Inference.Modeling;

namespace Jamba.MLNet;

/// <summary>
/// Settings of a Jamba text-generation (and scoring) step in an ML.NET pipeline. Every property has a
/// usable default except the model (<see cref="ModelPath"/>, or <see cref="Endpoint"/> and <see cref="ModelId"/> for a served
/// model) and the prompt (<see cref="InputColumnName"/> or
/// <see cref="PromptTemplate"/>); <see cref="Validate"/> checks them all and names the offending option.
/// </summary>
/// <remarks>
/// <para>The prompt of a row is <see cref="PromptTemplate"/> with every <c>{Column}</c> placeholder replaced by that
/// row's value of the text column <c>Column</c> (<c>{{</c> and <c>}}</c> stand for literal braces). Without a template
/// the prompt is the value of <see cref="InputColumnName"/>.</para>
/// <para>With <see cref="UseChatTemplate"/> the prompt becomes the user message of a conversation (after an optional
/// <see cref="SystemPrompt"/>), rendered with the checkpoint's chat template exactly like Hugging Face's
/// <c>apply_chat_template(..., add_generation_prompt=True)</c> (checkpoints without one use
/// <see cref="Jamba.Inference.Templates.ChatTemplate.PlainFallback"/>). Without it, a <see cref="SystemPrompt"/> is
/// put before the prompt, separated by a blank line.</para>
/// <para>Decoding is greedy by default (<see cref="Temperature"/> 0), so a pipeline gives the same output every time.
/// With sampling, the same <see cref="Seed"/> and prompt give the same output, whatever the batch or row order.</para>
/// </remarks>
public sealed class JambaTextGenerationOptions
{
    /// <summary>The checkpoint folder (Hugging Face layout with tokenizer files). Stored in saved pipelines as a full path;
    /// required unless <see cref="Endpoint"/> is set.</summary>
    public string ModelPath { get; set; } = "";

    /// <summary>
    /// A server that serves the model over the OpenAI protocol (<c>jamba serve</c>, vLLM; <c>http://host:8000</c> or
    /// <c>…/v1</c>) instead of a local <see cref="ModelPath"/>: rows become concurrent requests (<see cref="BatchSize"/> in
    /// flight), raw prompts to <c>/v1/completions</c>, chat-template rows (<see cref="UseChatTemplate"/>) to
    /// <c>/v1/chat/completions</c>. Same pipeline, one setting changed; scoring (<see cref="TargetColumnName"/>) needs a local model.
    /// </summary>
    public Uri? Endpoint { get; set; }

    /// <summary>The served model name (<c>--served-model-name</c>); required with <see cref="Endpoint"/>.</summary>
    public string? ModelId { get; set; }

    /// <summary>The server's key with <see cref="Endpoint"/> (null: <c>$JAMBA_API_KEY</c>, else none). Never saved with a pipeline.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public string? ApiKey { get; set; }

    /// <summary>Whether the model is served remotely (<see cref="Endpoint"/> set).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool IsRemote => Endpoint is not null;

    /// <summary>TorchSharp device: <c>cpu</c>, <c>cuda</c> or <c>cuda:N</c> (default <c>cpu</c>).</summary>
    public string Device { get; set; } = "cpu";

    /// <summary>Compute dtype (default <see cref="ComputeDType.Auto"/>).</summary>
    public ComputeDType DType { get; set; } = ComputeDType.Auto;

    /// <summary>The text column holding the whole prompt; used when <see cref="PromptTemplate"/> is null.</summary>
    public string? InputColumnName { get; set; }

    /// <summary>A prompt template with <c>{Column}</c> placeholders over one or more text columns; overrides <see cref="InputColumnName"/>.</summary>
    public string? PromptTemplate { get; set; }

    /// <summary>An optional system prompt (a system message with <see cref="UseChatTemplate"/>, else a prefix).</summary>
    public string? SystemPrompt { get; set; }

    /// <summary>Render the prompt as a chat conversation with the checkpoint's chat template (default false: raw text).</summary>
    public bool UseChatTemplate { get; set; }

    /// <summary>Whether to generate text (default true). False with a <see cref="TargetColumnName"/> only scores.</summary>
    public bool Generate { get; set; } = true;

    /// <summary>The generated-text column (default <c>GeneratedText</c>).</summary>
    public string OutputColumnName { get; set; } = "GeneratedText";

    /// <summary>The finish-reason column (<c>stop</c>, <c>length</c>); null omits it (default <c>FinishReason</c>).</summary>
    public string? FinishReasonColumnName { get; set; } = "FinishReason";

    /// <summary>The prompt-token-count column (Int32); null omits it (default <c>PromptTokens</c>).</summary>
    public string? PromptTokensColumnName { get; set; } = "PromptTokens";

    /// <summary>The generated-token-count column (Int32); null omits it (default <c>CompletionTokens</c>).</summary>
    public string? CompletionTokensColumnName { get; set; } = "CompletionTokens";

    /// <summary>Scoring mode: a text column whose log-likelihood as a continuation of the prompt is computed; null (default) disables scoring.</summary>
    /// <remarks>The target is tokenized on its own (no special tokens) and appended to the prompt's tokens; the log-likelihood
    /// is the sum over the target tokens of the natural-log probability the model gives each, after the prompt and the
    /// target tokens before it.</remarks>
    public string? TargetColumnName { get; set; }

    /// <summary>The log-likelihood column (Double, natural log); null omits it (default <c>LogLikelihood</c>).</summary>
    public string? LogLikelihoodColumnName { get; set; } = "LogLikelihood";

    /// <summary>The perplexity column, <c>exp(-LogLikelihood / TargetTokens)</c> (Double, NaN for an empty target); null omits it (default <c>Perplexity</c>).</summary>
    public string? PerplexityColumnName { get; set; } = "Perplexity";

    /// <summary>The target-token-count column (Int32); null omits it (default <c>TargetTokens</c>).</summary>
    public string? TargetTokensColumnName { get; set; } = "TargetTokens";

    /// <summary>
    /// The engine's generation settings for every row (the same <see cref="GenerationOptions"/> every other caller of the
    /// engine uses; validated by it, with this class's property names in its messages). The sampling properties below are
    /// this object's settings under ML.NET's names, not copies. Defaults: greedy, 256 tokens, special tokens dropped.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public GenerationOptions Generation
    {
        get => _generation;
        set => _generation = value ?? throw new ArgumentNullException(nameof(Generation));
    }

    private GenerationOptions _generation = new() { MaxNewTokens = 256, Temperature = 0f, IncludeSpecialTokensInText = false };

    /// <summary>Most tokens generated per row (1…1,048,576; default 256): <see cref="GenerationOptions.MaxNewTokens"/>.</summary>
    public int MaxTokens { get => _generation.MaxNewTokens; set => _generation.MaxNewTokens = value; }

    /// <summary>Softmax temperature (0 = greedy, the default; at most 100).</summary>
    public float Temperature { get => _generation.Temperature; set => _generation.Temperature = value; }

    /// <summary>Keep only the <c>k</c> most likely tokens (0 = off, the default).</summary>
    public int TopK { get => _generation.TopK; set => _generation.TopK = value; }

    /// <summary>Nucleus sampling threshold in (0, 1] (default 1 = off).</summary>
    public float TopP { get => _generation.TopP; set => _generation.TopP = value; }

    /// <summary>Min-p threshold in [0, 1] (default 0 = off).</summary>
    public float MinP { get => _generation.MinP; set => _generation.MinP = value; }

    /// <summary>Repetition penalty in (0, 10] (default 1 = off).</summary>
    public float RepetitionPenalty { get => _generation.RepetitionPenalty; set => _generation.RepetitionPenalty = value; }

    /// <summary>Presence penalty in [−2, 2] (default 0).</summary>
    public float PresencePenalty { get => _generation.PresencePenalty; set => _generation.PresencePenalty = value; }

    /// <summary>Frequency penalty in [−2, 2] (default 0).</summary>
    public float FrequencyPenalty { get => _generation.FrequencyPenalty; set => _generation.FrequencyPenalty = value; }

    /// <summary>Sampling seed used for every row (null draws one per row). The same seed and prompt give the same output.</summary>
    public long? Seed { get => _generation.Seed; set => _generation.Seed = value; }

    /// <summary>Texts that end a row's generation (not included in the output); at most 16, non-empty.</summary>
    public IList<string> StopSequences { get => _generation.StopSequences; set => _generation.StopSequences = value; }

    /// <summary>Keep special tokens in the generated text (default false).</summary>
    public bool IncludeSpecialTokens { get => _generation.IncludeSpecialTokensInText; set => _generation.IncludeSpecialTokensInText = value; }

    /// <summary>
    /// A JSON Schema (text) every row's output must match, or null (default) for free text; <c>"{}"</c> allows any JSON
    /// value. Decoding is constrained (<see cref="GenerationOptions.Constraint"/>), so the output column holds one JSON value
    /// of the schema; a row whose value could not be finished within <see cref="MaxTokens"/> has finish reason
    /// <c>"length"</c>. With <see cref="Endpoint"/> the schema is sent as the request's <c>response_format</c>
    /// (<see cref="UseChatTemplate"/> rows) or as the completion's constraint field.
    /// </summary>
    public string? JsonSchema { get; set; }

    /// <summary>Rows generated concurrently by <c>Transform</c> (the engine batches their decode steps); 1…1024, default 16.
    /// Also the engine's <see cref="Jamba.Inference.Engine.EngineOptions.MaxConcurrentSequences"/> floor when this step loads the model.</summary>
    public int BatchSize { get; set; } = 16;

    /// <summary>The columns the prompt reads, in the order of their first placeholder.</summary>
    /// <exception cref="ArgumentException">The template is malformed.</exception>
    public IReadOnlyList<string> GetPromptColumns() => Internal.PromptTemplate.Parse(EffectiveTemplate()).Columns;

    internal string EffectiveTemplate() =>
        PromptTemplate ?? (InputColumnName is { Length: > 0 } c ? Internal.PromptTemplate.Placeholder(c) : throw new ArgumentException(
            "Set InputColumnName (the prompt column) or PromptTemplate (with {Column} placeholders).", nameof(InputColumnName)));

    /// <summary>Checks every option.</summary>
    /// <exception cref="ArgumentException">Names the option and what is allowed.</exception>
    public void Validate()
    {
        static void Check(bool ok, string name, string message)
        {
            if (!ok) throw new ArgumentException($"{name} {message}", name);
        }
        Check(IsRemote || !string.IsNullOrWhiteSpace(ModelPath), nameof(ModelPath), "is required: the checkpoint folder (or set Endpoint and ModelId for a served model).");
        if (IsRemote)
        {
            try { _ = Jamba.Remote.RemoteEndpoint.ApiRoot(Endpoint!); }
            catch (ArgumentException e) { throw new ArgumentException(e.Message, nameof(Endpoint), e); }
            Check(!string.IsNullOrWhiteSpace(ModelId), nameof(ModelId), "is required with Endpoint: the served model name.");
            Check(TargetColumnName is null, nameof(TargetColumnName), "(scoring) needs a local model: set ModelPath instead of Endpoint.");
        }
        try { _ = new ModelOptions { Device = Device }; }
        catch (ArgumentException e) { throw new ArgumentException(e.Message, nameof(Device), e); }
        Check(Enum.IsDefined(DType), nameof(DType), $"must be a ComputeDType; found {DType}.");
        var template = Internal.PromptTemplate.Parse(EffectiveTemplate());
        Check(template.Columns.Count > 0, nameof(PromptTemplate), "must name at least one input column as a {Column} placeholder.");
        Check(Generate || TargetColumnName != null, nameof(Generate), "is false and no TargetColumnName is set: the step would add nothing.");
        Check(TargetColumnName is null || TargetColumnName.Length > 0, nameof(TargetColumnName), "must be null or a column name.");
        Check(BatchSize is >= 1 and <= 1024, nameof(BatchSize), $"must be between 1 and 1024; found {BatchSize}.");
        var outputs = OutputColumns().ToList();
        foreach (var (option, name) in outputs)
            Check(name.Length > 0, option, "must be null or a non-empty column name.");
        var duplicate = outputs.GroupBy(o => o.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        Check(duplicate is null, duplicate?.First().Option ?? "", $"names the column '{duplicate?.Key}', which {duplicate?.Last().Option} also names.");
        Check(outputs.Count > 0, nameof(OutputColumnName), "and the other output column names are all null: the step would add nothing.");
        _generation.Validate(SettingName);
        if (JsonSchema is not null)
        {
            try { _ = JsonConstraint.FromSchema(JsonSchema); }
            catch (ArgumentException e) { throw new ArgumentException($"{nameof(JsonSchema)}: {e.Message}", nameof(JsonSchema), e); }
            catch (NotSupportedException e) { throw new ArgumentException($"{nameof(JsonSchema)}: {e.Message}", nameof(JsonSchema), e); }
        }
    }

    /// <summary>The output columns this step adds, as (option name, column name), in schema order.</summary>
    internal IEnumerable<(string Option, string Name)> OutputColumns()
    {
        if (Generate)
        {
            yield return (nameof(OutputColumnName), OutputColumnName ?? "");
            if (FinishReasonColumnName != null) yield return (nameof(FinishReasonColumnName), FinishReasonColumnName);
        }
        if (PromptTokensColumnName != null) yield return (nameof(PromptTokensColumnName), PromptTokensColumnName);
        if (Generate && CompletionTokensColumnName != null) yield return (nameof(CompletionTokensColumnName), CompletionTokensColumnName);
        if (TargetColumnName != null)
        {
            if (LogLikelihoodColumnName != null) yield return (nameof(LogLikelihoodColumnName), LogLikelihoodColumnName);
            if (PerplexityColumnName != null) yield return (nameof(PerplexityColumnName), PerplexityColumnName);
            if (TargetTokensColumnName != null) yield return (nameof(TargetTokensColumnName), TargetTokensColumnName);
        }
    }

    /// <summary>This class's name of a <see cref="GenerationOptions"/> property (for validation messages).</summary>
    private static string? SettingName(string property) => property switch
    {
        nameof(GenerationOptions.MaxNewTokens) => nameof(MaxTokens),
        nameof(GenerationOptions.IncludeSpecialTokensInText) => nameof(IncludeSpecialTokens),
        _ => null,
    };

    /// <summary>The engine's generation options for these settings (a copy of <see cref="Generation"/>, with the
    /// <see cref="JsonSchema"/> as its <see cref="GenerationOptions.Constraint"/>).</summary>
    public GenerationOptions ToGenerationOptions()
    {
        var g = _generation.Clone();
        if (JsonSchema is not null) g.Constraint = JsonConstraint.FromSchema(JsonSchema);
        return g;
    }

    /// <summary>A deep copy.</summary>
    public JambaTextGenerationOptions Clone()
    {
        var c = (JambaTextGenerationOptions)MemberwiseClone();
        c._generation = _generation.Clone();
        return c;
    }
}
