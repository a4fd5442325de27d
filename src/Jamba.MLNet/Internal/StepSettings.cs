using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Jamba.Inference.Engine;
using Jamba.Inference.Generation;

namespace Jamba.MLNet.Internal;

/// <summary>The result of one row.</summary>
internal sealed class RowResult
{
    public string Text = "";
    public string FinishReason = "";
    public int PromptTokens;
    public int CompletionTokens;
    public double LogLikelihood = double.NaN;
    public double Perplexity = double.NaN;
    public int TargetTokens;
}

/// <summary>Validated, immutable settings of one step, with what rows need precomputed; serializable to JSON for saved pipelines.</summary>
internal sealed class StepSettings
{
    public const string Format = "jamba-mlnet-text-generation/1";

    private static readonly JsonSerializerOptions Json = new()
    {
        Converters = { new JsonStringEnumConverter() },
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        WriteIndented = false,
    };

    private static readonly ConcurrentDictionary<string, StepSettings> Parsed = new(StringComparer.Ordinal);

    private StepSettings(JambaTextGenerationOptions options)
    {
        Options = options;
        Template = PromptTemplate.Parse(options.EffectiveTemplate());
        var columns = new List<string>(Template.Columns);
        if (options.TargetColumnName != null) columns.Add(options.TargetColumnName);
        InputColumns = columns;
        GenerationOptions = options.ToGenerationOptions();
        SerializedJson = new JsonObject
        {
            ["format"] = Format,
            ["options"] = JsonSerializer.SerializeToNode(options, Json),
        }.ToJsonString();
    }

    /// <summary>A private, validated copy of the options (ModelPath made absolute).</summary>
    public JambaTextGenerationOptions Options { get; }
    public PromptTemplate Template { get; }
    /// <summary>The prompt columns, then the target column when scoring: the row values a step reads, in this order.</summary>
    public IReadOnlyList<string> InputColumns { get; }
    public GenerationOptions GenerationOptions { get; }
    public string SerializedJson { get; }
    public bool HasTarget => Options.TargetColumnName != null;

    public static StepSettings Create(JambaTextGenerationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var copy = options.Clone();
        copy.Validate();
        if (!copy.IsRemote) copy.ModelPath = Path.GetFullPath(copy.ModelPath).TrimEnd(Path.DirectorySeparatorChar);
        return new StepSettings(copy);
    }

    /// <summary>Reads settings saved by <see cref="SerializedJson"/> (cached: rows of a saved pipeline carry the same text).</summary>
    public static StepSettings FromJson(string json) => Parsed.GetOrAdd(json, static j =>
    {
        JsonNode? root;
        try { root = JsonNode.Parse(j); }
        catch (JsonException e) { throw new InvalidDataException("The saved Jamba text-generation settings are not valid JSON.", e); }
        string? format = root?["format"]?.GetValue<string>();
        if (format != Format)
            throw new InvalidDataException($"The saved Jamba text-generation settings have format '{format}'; this version reads '{Format}'.");
        var options = root!["options"].Deserialize<JambaTextGenerationOptions>(Json)
            ?? throw new InvalidDataException("The saved Jamba text-generation settings have no options.");
        options.Validate();
        return new StepSettings(options);
    });

    /// <summary>The prompt's token ids for a row (<paramref name="values"/> in <see cref="InputColumns"/> order).</summary>
    public IReadOnlyList<int> EncodePrompt(ModelBinding binding, IReadOnlyList<string> values)
    {
        string user = Template.Fill(values);
        // As transformers' apply_chat_template(tokenize=True): the template places special tokens itself.
        if (Options.UseChatTemplate) return binding.Chat.EncodeSingleTurn(user, Options.SystemPrompt);
        string prompt = Options.SystemPrompt != null ? Options.SystemPrompt + "\n\n" + user : user;
        return binding.Handle.Tokenizer!.Encode(prompt, addSpecialTokens: true);
    }

    /// <summary>The engine options of a row: the step's, plus the template's end-of-turn stops when the prompt is a chat turn.</summary>
    private GenerationOptions RowGenerationOptions(ModelBinding binding)
    {
        if (!Options.UseChatTemplate) return GenerationOptions;
        var g = GenerationOptions.Clone();
        foreach (int id in binding.Chat.EndOfTurnTokenIds)
            if (!g.StopTokenIds.Contains(id)) g.StopTokenIds.Add(id);
        foreach (var s in binding.Chat.EndOfTurnStrings)
            if (g.StopSequences.Count < 16 && !g.StopSequences.Contains(s)) g.StopSequences.Add(s);
        return g;
    }

    /// <summary>Runs one row: generation and/or scoring, both requests to the model's engine (batched with whatever else it runs).</summary>
    public async Task<RowResult> RunAsync(ModelBinding binding, IReadOnlyList<string> values, CancellationToken cancellationToken)
    {
        if (binding.Remote is { } remote) return await RunRemoteAsync(remote, values, cancellationToken).ConfigureAwait(false);
        var prompt = EncodePrompt(binding, values);
        var result = new RowResult { PromptTokens = prompt.Count };
        Task<ScoreResult>? scoring = null;
        if (HasTarget)
        {
            var targetIds = binding.Handle.Tokenizer!.Encode(values[^1], addSpecialTokens: false);
            if (targetIds.Count > 0 && prompt.Count == 0)
                throw new InvalidOperationException("Scoring needs at least one prompt token to condition the target on; the prompt is empty and the tokenizer adds no BOS token.");
            scoring = binding.Handle.Engine.ScoreAsync(prompt, targetIds, cancellationToken);
        }
        if (Options.Generate)
        {
            var generated = await binding.Handle.Engine.GenerateTextAsync(new GenerationRequest(prompt, RowGenerationOptions(binding)), cancellationToken).ConfigureAwait(false);
            result.Text = generated.Text;
            result.FinishReason = FinishReasonText(generated.FinishReason);
            result.CompletionTokens = generated.Usage.CompletionTokens;
        }
        if (scoring != null)
        {
            var score = await scoring.ConfigureAwait(false);
            result.LogLikelihood = score.LogLikelihood;
            result.TargetTokens = score.Tokens;
            result.Perplexity = score.Perplexity;
        }
        return result;
    }

    /// <summary>A row as a request to the server: a raw completion, or a one-turn chat with the chat template.</summary>
    private async Task<RowResult> RunRemoteAsync(RemoteBinding remote, IReadOnlyList<string> values, CancellationToken cancellationToken)
    {
        string user = Template.Fill(values);
        if (!Options.UseChatTemplate)
        {
            string prompt = Options.SystemPrompt != null ? Options.SystemPrompt + "\n\n" + user : user;
            var completion = await remote.Completions.CompleteAsync(prompt, GenerationOptions, cancellationToken).ConfigureAwait(false);
            return new RowResult { Text = completion.Text, FinishReason = completion.FinishReason, PromptTokens = completion.PromptTokens, CompletionTokens = completion.CompletionTokens };
        }
        var messages = new List<Microsoft.Extensions.AI.ChatMessage>();
        if (Options.SystemPrompt != null) messages.Add(new(Microsoft.Extensions.AI.ChatRole.System, Options.SystemPrompt));
        messages.Add(new(Microsoft.Extensions.AI.ChatRole.User, user));
        var g = GenerationOptions;
        var options = new Microsoft.Extensions.AI.ChatOptions
        {
            MaxOutputTokens = g.MaxNewTokens,
            Temperature = g.Temperature,
            TopP = g.TopP,
            TopK = g.TopK == 0 ? null : g.TopK,
            Seed = g.Seed,
            PresencePenalty = g.PresencePenalty,
            FrequencyPenalty = g.FrequencyPenalty,
            StopSequences = g.StopSequences.Count > 0 ? g.StopSequences.ToList() : null,
            AdditionalProperties = new()
            {
                [Jamba.Inference.Chat.ChatGenerationSettings.MinPKey] = g.MinP,
                [Jamba.Inference.Chat.ChatGenerationSettings.RepetitionPenaltyKey] = g.RepetitionPenalty,
            },
        };
        if (Options.JsonSchema is { } schema)
        {
            using var doc = System.Text.Json.JsonDocument.Parse(schema);
            options.ResponseFormat = Microsoft.Extensions.AI.ChatResponseFormat.ForJsonSchema(doc.RootElement.Clone());
        }
        var response = await remote.Chat.GetResponseAsync(messages, options, cancellationToken).ConfigureAwait(false);
        return new RowResult
        {
            Text = response.Text,
            FinishReason = response.FinishReason == Microsoft.Extensions.AI.ChatFinishReason.Length ? "length" : "stop",
            PromptTokens = (int)(response.Usage?.InputTokenCount ?? 0),
            CompletionTokens = (int)(response.Usage?.OutputTokenCount ?? 0),
        };
    }

    public static string FinishReasonText(FinishReason reason) => reason switch
    {
        FinishReason.Stop => "stop",
        FinishReason.Length => "length",
        _ => "cancelled",
    };
}
