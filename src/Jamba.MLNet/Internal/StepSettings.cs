using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Jamba.Inference.Engine;
using Jamba.Inference.Generation;
using Jamba.Inference.Modeling;
using TorchSharp;
using static TorchSharp.torch;

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
        copy.ModelPath = Path.GetFullPath(copy.ModelPath).TrimEnd(Path.DirectorySeparatorChar);
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
        var tokenizer = binding.Handle.Tokenizer!;
        if (Options.UseChatTemplate)
        {
            var messages = new JsonArray();
            if (Options.SystemPrompt != null) messages.Add(new JsonObject { ["role"] = "system", ["content"] = Options.SystemPrompt });
            messages.Add(new JsonObject { ["role"] = "user", ["content"] = user });
            string text = binding.ChatTemplate.Render(messages, addGenerationPrompt: true, bosToken: binding.BosText, eosToken: binding.EosText);
            // As transformers' apply_chat_template(tokenize=True): the template places special tokens itself.
            return tokenizer.Encode(text, addSpecialTokens: false);
        }
        string prompt = Options.SystemPrompt != null ? Options.SystemPrompt + "\n\n" + user : user;
        return tokenizer.Encode(prompt, addSpecialTokens: true);
    }

    /// <summary>Runs one row: generation through the engine (batched with whatever else it runs) and/or scoring.</summary>
    public async Task<RowResult> RunAsync(ModelBinding binding, IReadOnlyList<string> values, CancellationToken cancellationToken)
    {
        var prompt = EncodePrompt(binding, values);
        var result = new RowResult { PromptTokens = prompt.Count };
        Task<(double, int)>? scoring = null;
        if (HasTarget)
        {
            string target = values[^1];
            scoring = Task.Run(() => Score(binding, prompt, target), cancellationToken);
        }
        if (Options.Generate)
        {
            var generated = await binding.Handle.Engine.GenerateTextAsync(new GenerationRequest(prompt, GenerationOptions), cancellationToken).ConfigureAwait(false);
            result.Text = generated.Text;
            result.FinishReason = FinishReasonText(generated.FinishReason);
            result.CompletionTokens = generated.Usage.CompletionTokens;
        }
        if (scoring != null)
        {
            var (ll, n) = await scoring.ConfigureAwait(false);
            result.LogLikelihood = ll;
            result.TargetTokens = n;
            result.Perplexity = n == 0 ? double.NaN : Math.Exp(-ll / n);
        }
        return result;
    }

    public static string FinishReasonText(FinishReason reason) => reason switch
    {
        FinishReason.Stop => "stop",
        FinishReason.Length => "length",
        _ => "cancelled",
    };

    /// <summary>The log-likelihood of <paramref name="target"/> after <paramref name="prompt"/>, and its token count.</summary>
    public static (double LogLikelihood, int Tokens) Score(ModelBinding binding, IReadOnlyList<int> prompt, string target)
    {
        var targetIds = binding.Handle.Tokenizer!.Encode(target, addSpecialTokens: false);
        if (targetIds.Count == 0) return (0, 0);
        if (prompt.Count == 0)
            throw new InvalidOperationException("Scoring needs at least one prompt token to condition the target on; the prompt is empty and the tokenizer adds no BOS token.");
        int limit = binding.Handle.Engine.MaxContextTokens;
        if (prompt.Count + targetIds.Count > limit)
            throw new ContextLengthExceededException(prompt.Count + targetIds.Count, limit);
        var ids = new long[prompt.Count + targetIds.Count];
        for (int i = 0; i < prompt.Count; i++) ids[i] = prompt[i];
        for (int i = 0; i < targetIds.Count; i++) ids[prompt.Count + i] = targetIds[i];
        var model = binding.Handle.Model;
        float[] picked;
        lock (binding.ScoreLock)
        {
            using var scope = NewDisposeScope();
            using var input = tensor(ids, [1, ids.Length]);
            using var logits = model.Forward(input, null, null, LogitPositions.All); // [1, L, V] fp32
            // Positions P-1 … L-2 predict the target tokens P … L-1.
            var predicting = logits.narrow(1, prompt.Count - 1, targetIds.Count);
            var logProbs = predicting.log_softmax(-1);
            var wanted = tensor(ids.AsSpan(prompt.Count).ToArray(), [1, targetIds.Count, 1]).to(logProbs.device);
            picked = logProbs.gather(2, wanted).reshape(targetIds.Count).cpu().data<float>().ToArray();
        }
        double sum = 0;
        foreach (float p in picked) sum += p;
        return (sum, targetIds.Count);
    }
}
