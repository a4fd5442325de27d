using System.Collections.ObjectModel;
using System.Text.Json;
using System.Text.Json.Serialization;
using Jamba.Inference.Chat;
using Jamba.Inference.Generation;
using Microsoft.Extensions.AI;
using Microsoft.SemanticKernel;

namespace Jamba.SemanticKernel;

/// <summary>
/// Semantic Kernel execution settings of a local Jamba model. JSON names follow SK's other connectors
/// (<c>temperature</c>, <c>top_p</c>, <c>top_k</c>, <c>max_tokens</c>, <c>stop_sequences</c>, <c>seed</c>,
/// <c>presence_penalty</c>, <c>frequency_penalty</c>) plus Jamba's own (<c>repetition_penalty</c>, <c>min_p</c>,
/// <c>documents</c>, <c>citation_mode</c>, <c>knobs</c>, <c>chat_template_kwargs</c>, <c>response_format</c>), so prompt configs written for another
/// connector work here too. Unset values (null) fall back to the client's defaults.
/// </summary>
[JsonNumberHandling(JsonNumberHandling.AllowReadingFromString)]
public sealed class JambaPromptExecutionSettings : PromptExecutionSettings
{
    private float? _temperature;
    private float? _topP;
    private int? _topK;
    private int? _maxTokens;
    private IList<string>? _stopSequences;
    private long? _seed;
    private float? _presencePenalty;
    private float? _frequencyPenalty;
    private float? _repetitionPenalty;
    private float? _minP;
    private IList<IDictionary<string, object?>>? _documents;
    private IDictionary<string, object?>? _chatTemplateKwargs;
    private object? _responseFormat;
    private string? _citationMode;
    private IDictionary<string, object?>? _knobs;

    /// <summary>Softmax temperature; 0 is greedy decoding (0…100).</summary>
    [JsonPropertyName("temperature"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public float? Temperature { get => _temperature; set { ThrowIfFrozen(); _temperature = value; } }

    /// <summary>Nucleus sampling cutoff (0 &lt; p ≤ 1).</summary>
    [JsonPropertyName("top_p"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public float? TopP { get => _topP; set { ThrowIfFrozen(); _topP = value; } }

    /// <summary>Keep only the k most likely tokens (0 = off).</summary>
    [JsonPropertyName("top_k"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? TopK { get => _topK; set { ThrowIfFrozen(); _topK = value; } }

    /// <summary>Most tokens to generate.</summary>
    [JsonPropertyName("max_tokens"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? MaxTokens { get => _maxTokens; set { ThrowIfFrozen(); _maxTokens = value; } }

    /// <summary>Texts that end generation (never part of the output; at most 16).</summary>
    [JsonPropertyName("stop_sequences"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IList<string>? StopSequences { get => _stopSequences; set { ThrowIfFrozen(); _stopSequences = value; } }

    /// <summary>Random seed: the same seed, prompt and settings give the same output.</summary>
    [JsonPropertyName("seed"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public long? Seed { get => _seed; set { ThrowIfFrozen(); _seed = value; } }

    /// <summary>OpenAI presence penalty (−2…2).</summary>
    [JsonPropertyName("presence_penalty"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public float? PresencePenalty { get => _presencePenalty; set { ThrowIfFrozen(); _presencePenalty = value; } }

    /// <summary>OpenAI frequency penalty (−2…2).</summary>
    [JsonPropertyName("frequency_penalty"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public float? FrequencyPenalty { get => _frequencyPenalty; set { ThrowIfFrozen(); _frequencyPenalty = value; } }

    /// <summary>Hugging Face repetition penalty over prompt and output (&gt; 0; 1 = off).</summary>
    [JsonPropertyName("repetition_penalty"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public float? RepetitionPenalty { get => _repetitionPenalty; set { ThrowIfFrozen(); _repetitionPenalty = value; } }

    /// <summary>Drop tokens less likely than <c>min_p × p(max)</c> (0…1).</summary>
    [JsonPropertyName("min_p"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public float? MinP { get => _minP; set { ThrowIfFrozen(); _minP = value; } }

    /// <summary>RAG documents for the chat template's <c>documents</c> variable (e.g. <c>{"title": …, "text": …}</c>).</summary>
    [JsonPropertyName("documents"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IList<IDictionary<string, object?>>? Documents { get => _documents; set { ThrowIfFrozen(); _documents = value; } }

    /// <summary>Extra chat-template variables (e.g. <c>knobs</c>, <c>thinking_prefix</c>).</summary>
    [JsonPropertyName("chat_template_kwargs"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IDictionary<string, object?>? ChatTemplateKwargs { get => _chatTemplateKwargs; set { ThrowIfFrozen(); _chatTemplateKwargs = value; } }

    /// <summary>
    /// <c>"fast"</c> asks the model to end its answer with the documents it used (<c>&lt;citations&gt;[0, 2]&lt;/citations&gt;</c>;
    /// Jamba 1.5+ knobs); the section is taken out of the text and reported as citations (the chat response's
    /// <c>citations</c> metadata and <c>CitationAnnotation</c>s). <c>"off"</c> or null: no citations.
    /// </summary>
    [JsonPropertyName("citation_mode"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? CitationMode { get => _citationMode; set { ThrowIfFrozen(); _citationMode = value; } }

    /// <summary>The template's <c>knobs</c> object verbatim (wins over <see cref="CitationMode"/> and <see cref="ResponseFormat"/>).</summary>
    [JsonPropertyName("knobs"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IDictionary<string, object?>? Knobs { get => _knobs; set { ThrowIfFrozen(); _knobs = value; } }

    /// <summary>
    /// Sets <see cref="Documents"/> from typed documents (their template form, <see cref="JambaDocument.ToTemplateObject"/>;
    /// <see cref="JambaDocument.Id"/> is not carried, so citations report document numbers); returns these settings.
    /// </summary>
    /// <param name="documents">The documents, in prompt order.</param>
    public JambaPromptExecutionSettings WithDocuments(IEnumerable<JambaDocument> documents)
    {
        ArgumentNullException.ThrowIfNull(documents);
        Documents = documents.Select(d => (IDictionary<string, object?>)d.ToTemplateObject().ToDictionary(kv => kv.Key, kv => (object?)kv.Value?.DeepClone())).ToList();
        return this;
    }

    /// <summary>
    /// The answer's format, as in Semantic Kernel's OpenAI connector: <c>"json_object"</c> (any JSON object), a
    /// <see cref="Type"/> (a value of its JSON schema, <c>AIJsonUtilities.CreateJsonSchema</c>), a JSON schema as text or
    /// <see cref="JsonElement"/> (also OpenAI's <c>{"type":"json_schema","json_schema":{"name":…,"schema":…}}</c>), a
    /// <see cref="ChatResponseFormat"/>, or <c>"text"</c> / null for plain text. JSON formats turn on the template's JSON mode
    /// and constrain decoding (<see cref="GenerationOptions.Constraint"/>), so the answer is a valid value.
    /// </summary>
    /// <exception cref="ArgumentException">On use: the value is none of these (names <c>response_format</c>).</exception>
    [JsonPropertyName("response_format"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull), JsonConverter(typeof(ResponseFormatJsonConverter))]
    public object? ResponseFormat { get => _responseFormat; set { ThrowIfFrozen(); _responseFormat = value; } }

    /// <summary>The <see cref="ChatResponseFormat"/> that <paramref name="value"/> (a <see cref="ResponseFormat"/>) describes.</summary>
    /// <param name="value">A response format setting.</param>
    /// <exception cref="ArgumentException">The value is not a response format (names <c>response_format</c>).</exception>
    public static ChatResponseFormat? ToChatResponseFormat(object? value)
    {
        static ArgumentException Bad(string what) => new($"response_format must be \"text\", \"json_object\", a Type, a JSON schema (text or JsonElement) or a ChatResponseFormat; found {what}.", "response_format");
        switch (value)
        {
            case null: return null;
            case ChatResponseFormat f: return f;
            case Type t: return ChatResponseFormat.ForJsonSchema(AIJsonUtilities.CreateJsonSchema(t, serializerOptions: AIJsonUtilities.DefaultOptions), t.Name);
            case string s:
                switch (s.Trim())
                {
                    case "" or "text": return ChatResponseFormat.Text;
                    case "json_object" or "json": return ChatResponseFormat.Json;
                }
                try
                {
                    using var doc = JsonDocument.Parse(s);
                    return ToChatResponseFormat(doc.RootElement.Clone());
                }
                catch (JsonException)
                {
                    throw Bad($"the text \"{(s.Length > 40 ? s[..40] + "…" : s)}\"");
                }
            case JsonElement { ValueKind: JsonValueKind.String } e: return ToChatResponseFormat(e.GetString());
            case JsonElement { ValueKind: JsonValueKind.Null }: return null;
            case JsonElement { ValueKind: JsonValueKind.Object } e:
                if (e.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String)
                {
                    switch (type.GetString())
                    {
                        case "text": return ChatResponseFormat.Text;
                        case "json_object": return ChatResponseFormat.Json;
                        case "json_schema" when e.TryGetProperty("json_schema", out var js) && js.ValueKind == JsonValueKind.Object && js.TryGetProperty("schema", out var schema):
                            return ChatResponseFormat.ForJsonSchema(schema.Clone(),
                                js.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString() : null,
                                js.TryGetProperty("description", out var d) && d.ValueKind == JsonValueKind.String ? d.GetString() : null);
                    }
                }
                return ChatResponseFormat.ForJsonSchema(e.Clone());
            default: throw Bad(value.GetType().Name);
        }
    }

    /// <inheritdoc />
    public override void Freeze()
    {
        if (IsFrozen) return;
        base.Freeze();
        if (_stopSequences is not null) _stopSequences = new ReadOnlyCollection<string>(_stopSequences.ToList());
        if (_documents is not null) _documents = new ReadOnlyCollection<IDictionary<string, object?>>(_documents.Select(d => (IDictionary<string, object?>)new ReadOnlyDictionary<string, object?>(new Dictionary<string, object?>(d))).ToList());
        if (_chatTemplateKwargs is not null) _chatTemplateKwargs = new ReadOnlyDictionary<string, object?>(new Dictionary<string, object?>(_chatTemplateKwargs));
        if (_knobs is not null) _knobs = new ReadOnlyDictionary<string, object?>(new Dictionary<string, object?>(_knobs));
    }

    /// <inheritdoc />
    public override PromptExecutionSettings Clone() => new JambaPromptExecutionSettings
    {
        ModelId = ModelId,
        ServiceId = ServiceId,
        ExtensionData = ExtensionData is null ? null : new Dictionary<string, object>(ExtensionData),
        FunctionChoiceBehavior = FunctionChoiceBehavior,
        Temperature = Temperature,
        TopP = TopP,
        TopK = TopK,
        MaxTokens = MaxTokens,
        StopSequences = StopSequences is null ? null : new List<string>(StopSequences),
        Seed = Seed,
        PresencePenalty = PresencePenalty,
        FrequencyPenalty = FrequencyPenalty,
        RepetitionPenalty = RepetitionPenalty,
        MinP = MinP,
        Documents = Documents?.Select(d => (IDictionary<string, object?>)new Dictionary<string, object?>(d)).ToList(),
        ChatTemplateKwargs = ChatTemplateKwargs is null ? null : new Dictionary<string, object?>(ChatTemplateKwargs),
        ResponseFormat = ResponseFormat,
        CitationMode = CitationMode,
        Knobs = Knobs is null ? null : new Dictionary<string, object?>(Knobs),
    };

    /// <summary>
    /// Converts any execution settings to Jamba settings: null gives defaults (with <paramref name="defaultMaxTokens"/>),
    /// a <see cref="JambaPromptExecutionSettings"/> is returned as is, anything else (a plain
    /// <see cref="PromptExecutionSettings"/> with <c>ExtensionData</c>, or another connector's settings) is mapped by
    /// its JSON names; unknown names stay in <see cref="PromptExecutionSettings.ExtensionData"/>.
    /// </summary>
    /// <param name="executionSettings">The settings to convert.</param>
    /// <param name="defaultMaxTokens">Max tokens when the settings do not say.</param>
    /// <exception cref="ArgumentException">A value has the wrong JSON type (e.g. <c>"max_tokens": "many"</c>).</exception>
    public static JambaPromptExecutionSettings FromExecutionSettings(PromptExecutionSettings? executionSettings, int? defaultMaxTokens = null)
    {
        switch (executionSettings)
        {
            case null:
                return new JambaPromptExecutionSettings { MaxTokens = defaultMaxTokens };
            case JambaPromptExecutionSettings jamba:
                return jamba;
        }
        JambaPromptExecutionSettings? result;
        try
        {
            string json = JsonSerializer.Serialize(executionSettings, executionSettings.GetType());
            result = JsonSerializer.Deserialize<JambaPromptExecutionSettings>(json);
        }
        catch (Exception ex) when (ex is JsonException or NotSupportedException or InvalidOperationException)
        {
            throw new ArgumentException($"The execution settings cannot be read as Jamba settings: {ex.Message}", nameof(executionSettings), ex);
        }
        result ??= new JambaPromptExecutionSettings();
        // Keep what JSON cannot carry (the function list of the choice behavior) and the identity.
        result.FunctionChoiceBehavior = executionSettings.FunctionChoiceBehavior;
        result.ServiceId = executionSettings.ServiceId;
        result.ModelId = executionSettings.ModelId;
        result.MaxTokens ??= defaultMaxTokens;
        return result;
    }

    /// <summary>
    /// The engine options these settings describe (for direct use of the engine; chat requests go through
    /// <see cref="ToChatOptions"/>): the settings as <see cref="ChatOptions"/>, through the library's one mapping
    /// (<see cref="ChatGenerationSettings.ToGenerationOptions"/>) over <paramref name="defaults"/> (copied).
    /// </summary>
    /// <param name="defaults">Values for unset settings; null = <see cref="GenerationOptions"/>'s defaults.</param>
    public GenerationOptions ToGenerationOptions(GenerationOptions? defaults = null) =>
        ChatGenerationSettings.ToGenerationOptions(ToChatOptions(), defaults);

    /// <summary>The sampling settings as Microsoft.Extensions.AI <see cref="ChatOptions"/> (what the chat client reads:
    /// <c>min_p</c> and <c>repetition_penalty</c> in <see cref="ChatOptions.AdditionalProperties"/>).</summary>
    public ChatOptions ToChatOptions()
    {
        var options = new ChatOptions
        {
            MaxOutputTokens = MaxTokens,
            Temperature = Temperature,
            TopP = TopP,
            TopK = TopK,
            Seed = Seed,
            PresencePenalty = PresencePenalty,
            FrequencyPenalty = FrequencyPenalty,
            StopSequences = StopSequences?.ToList(),
            ModelId = ModelId,
        };
        options.ResponseFormat = ToChatResponseFormat(ResponseFormat);
        if (MinP is { } minP) (options.AdditionalProperties ??= [])[ChatGenerationSettings.MinPKey] = minP;
        if (RepetitionPenalty is { } rep) (options.AdditionalProperties ??= [])[ChatGenerationSettings.RepetitionPenaltyKey] = rep;
        return options;
    }

    /// <summary>Checks every sampling setting, naming a wrong one by its JSON name (<c>max_tokens</c>, <c>top_p</c>, …).</summary>
    /// <exception cref="ArgumentException">A setting is out of range (its JSON name is the message's first word and the parameter name).</exception>
    public void Validate() => ToGenerationOptions().Validate(JsonName);

    /// <summary>The JSON name of the setting behind a <see cref="GenerationOptions"/> property.</summary>
    internal static string? JsonName(string property) => property switch
    {
        nameof(GenerationOptions.MaxNewTokens) => "max_tokens",
        nameof(GenerationOptions.Temperature) => "temperature",
        nameof(GenerationOptions.TopP) => "top_p",
        nameof(GenerationOptions.TopK) => "top_k",
        nameof(GenerationOptions.MinP) => "min_p",
        nameof(GenerationOptions.RepetitionPenalty) => "repetition_penalty",
        nameof(GenerationOptions.PresencePenalty) => "presence_penalty",
        nameof(GenerationOptions.FrequencyPenalty) => "frequency_penalty",
        nameof(GenerationOptions.StopSequences) => "stop_sequences",
        nameof(GenerationOptions.Seed) => "seed",
        _ => null,
    };
}

/// <summary>Writes <see cref="JambaPromptExecutionSettings.ResponseFormat"/> as OpenAI's <c>response_format</c> (a string, or
/// <c>{"type":"json_schema","json_schema":{…}}</c>) and reads it back as a string or <see cref="JsonElement"/>.</summary>
internal sealed class ResponseFormatJsonConverter : JsonConverter<object?>
{
    public override bool HandleNull => false;

    public override object? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        using var doc = JsonDocument.ParseValue(ref reader);
        return doc.RootElement.ValueKind == JsonValueKind.String ? doc.RootElement.GetString() : doc.RootElement.Clone();
    }

    public override void Write(Utf8JsonWriter writer, object? value, JsonSerializerOptions options)
    {
        switch (JambaPromptExecutionSettings.ToChatResponseFormat(value))
        {
            case null:
                writer.WriteNullValue();
                break;
            case ChatResponseFormatText:
                writer.WriteStringValue("text");
                break;
            case ChatResponseFormatJson { Schema: null }:
                writer.WriteStringValue("json_object");
                break;
            case ChatResponseFormatJson json:
                writer.WriteStartObject();
                writer.WriteString("type", "json_schema");
                writer.WriteStartObject("json_schema");
                if (json.SchemaName is { } name) writer.WriteString("name", name);
                if (json.SchemaDescription is { } description) writer.WriteString("description", description);
                writer.WritePropertyName("schema");
                json.Schema!.Value.WriteTo(writer);
                writer.WriteEndObject();
                writer.WriteEndObject();
                break;
        }
    }
}
