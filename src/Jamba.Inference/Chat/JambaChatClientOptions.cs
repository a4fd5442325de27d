using System.Text.Json.Nodes;
using Jamba.Inference.Generation;
using Jamba.Inference.Templates;

namespace Jamba.Inference.Chat;

/// <summary>Settings of a <see cref="JambaChatClient"/> (copied when the client is created).</summary>
public sealed class JambaChatClientOptions
{
    /// <summary>The chat template; null uses the checkpoint's (<see cref="ChatTemplate.FromCheckpointOrFallback"/>).</summary>
    public ChatTemplate? ChatTemplate { get; set; }

    /// <summary>The tool-call markup to parse; null detects it from the template (<see cref="ToolCallParser.DetectFormat"/>).</summary>
    public ToolCallFormat? ToolCallFormat { get; set; }

    /// <summary>The model id reported in responses and metadata; null uses the checkpoint folder name.</summary>
    public string? ModelId { get; set; }

    /// <summary>
    /// Generation defaults for settings a request leaves unset. When not set, they are <see cref="GenerationOptions"/>'s
    /// defaults with <see cref="GenerationOptions.MaxNewTokens"/> = 1024, overridden by the sampling settings the
    /// checkpoint's <c>generation_config.json</c> recommends (temperature, top_p, top_k, min_p, repetition_penalty,
    /// max_new_tokens), as transformers and vLLM apply them. Special tokens are always kept in the text the chat layer parses.
    /// </summary>
    public GenerationOptions DefaultGenerationOptions
    {
        get => _defaults;
        set
        {
            _defaults = value;
            DefaultsGiven = true;
        }
    }

    private GenerationOptions _defaults = new() { MaxNewTokens = 1024 };

    /// <summary>Whether <see cref="DefaultGenerationOptions"/> was set (then generation_config.json is not applied).</summary>
    internal bool DefaultsGiven { get; private set; }

    /// <summary>Template variables passed with every prompt (e.g. <c>knobs</c>, <c>thinking_prefix</c>, <c>default_system_message</c>).</summary>
    public IDictionary<string, JsonNode?> TemplateKwargs { get; set; } = new Dictionary<string, JsonNode?>();

    /// <summary>
    /// Stop generation at the template's end-of-turn marker (<c>&lt;|eom|&gt;</c> for Jamba 1.5+, <c>&lt;|im_end|&gt;</c>
    /// for Reasoning 3B) in addition to the model's EOS tokens. Default true.
    /// </summary>
    public bool StopAtEndOfTurn { get; set; } = true;

    internal JambaChatClientOptions Copy() => new()
    {
        ChatTemplate = ChatTemplate,
        ToolCallFormat = ToolCallFormat,
        ModelId = ModelId,
        _defaults = (_defaults ?? new GenerationOptions { MaxNewTokens = 1024 }).Clone(),
        DefaultsGiven = DefaultsGiven,
        TemplateKwargs = new Dictionary<string, JsonNode?>((TemplateKwargs ?? new Dictionary<string, JsonNode?>()).Select(kv => new KeyValuePair<string, JsonNode?>(kv.Key, kv.Value?.DeepClone()))),
        StopAtEndOfTurn = StopAtEndOfTurn,
    };
}
