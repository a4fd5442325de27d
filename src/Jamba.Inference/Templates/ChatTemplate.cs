using System.Diagnostics.CodeAnalysis;
using System.Text.Json;
using System.Text.Json.Nodes;
using Jamba.Inference.Templates.Jinja;
using Jamba.Inference.Tokenization;

namespace Jamba.Inference.Templates;

/// <summary>
/// A Hugging Face chat template (jinja2), rendered byte-identically to
/// <c>tokenizer.apply_chat_template(..., tokenize=False)</c> in transformers: jinja2's
/// <c>ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)</c> with the
/// <c>loopcontrols</c> extension, HF's <c>tojson</c> (<c>json.dumps(ensure_ascii=False)</c>),
/// <c>raise_exception</c> and <c>strftime_now</c>.
/// </summary>
/// <remarks>
/// Template variables are Python-like values converted from JSON: objects keep key order, integer
/// literals stay <c>int</c>, numbers with a fraction or exponent are <c>float</c> (<c>1.0</c> prints as
/// <c>1.0</c>). Rendering errors surface as <see cref="TemplateException"/> whose
/// <see cref="TemplateException.ErrorType"/> names the Python exception jinja2 would raise.
/// A parsed template is immutable; <c>Render</c> may be called concurrently from several threads.
/// Templates are untrusted input: parsing and rendering are bounded by <see cref="Limits"/> (see
/// <see cref="TemplateLimits"/>), so a hostile template ends with a <see cref="TemplateException"/> rather
/// than a crash, an out-of-memory condition or a hang, and rendering observes a <see cref="CancellationToken"/>.
/// Not supported: template inheritance and loading (<c>extends</c>, <c>include</c>, <c>import</c>),
/// autoescaping, and a few rarely used filters (<c>groupby</c>, <c>random</c>, <c>wordwrap</c>,
/// <c>urlize</c>, <c>xmlattr</c>, <c>filesizeformat</c>) and globals (<c>lipsum</c>).
/// </remarks>
public sealed class ChatTemplate
{
    /// <summary>
    /// Jinja source of <see cref="PlainFallback"/>, the prompt format used for checkpoints without a chat
    /// template (e.g. the base model <c>ai21labs/Jamba-v0.1</c>): the optional <c>bos_token</c> followed by
    /// every message's content (non-string content as JSON, <c>None</c> as empty), messages separated by a
    /// blank line (<c>"\n\n"</c>). There are no role markers and <c>add_generation_prompt</c> adds nothing:
    /// a base model simply continues the text, so a single user message renders as exactly its content.
    /// </summary>
    public const string PlainFallbackSource =
        "{%- if bos_token is defined and bos_token is not none %}{{- bos_token -}}{%- endif %}\n" +
        "{%- for message in messages %}\n" +
        "{%- if not loop.first %}{{- '\\n\\n' -}}{%- endif %}\n" +
        "{%- set content = message['content'] %}\n" +
        "{%- if content is string %}{{- content -}}{%- elif content is not none %}{{- content | tojson -}}{%- endif %}\n" +
        "{%- endfor %}";

    private static readonly Lazy<ChatTemplate> Fallback = new(() => Parse(PlainFallbackSource));

    private readonly JinjaTemplate _template;

    private readonly Func<DateTime>? _clock;

    private ChatTemplate(string source, JinjaTemplate template, TemplateLimits limits, Func<DateTime>? clock = null)
    {
        Source = source;
        _template = template;
        Limits = limits;
        _clock = clock;
    }

    /// <summary>The template text as given.</summary>
    public string Source { get; }

    /// <summary>The parse and render limits of this template (<see cref="TemplateLimits.Default"/> unless set).</summary>
    public TemplateLimits Limits { get; }

    /// <summary>
    /// Returns a copy that parses and renders under <paramref name="limits"/> (the source is parsed again
    /// when <see cref="TemplateLimits.MaxNestingDepth"/> changes).
    /// </summary>
    /// <param name="limits">The new limits.</param>
    /// <exception cref="TemplateException">The template nests deeper than the new limits allow.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A limit is not positive.</exception>
    public ChatTemplate WithLimits(TemplateLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        limits.Validate();
        var template = limits.MaxNestingDepth == Limits.MaxNestingDepth ? _template : JinjaTemplate.Parse(Source, limits);
        return new ChatTemplate(Source, template, limits, _clock);
    }

    /// <summary>
    /// Returns a copy whose <c>strftime_now</c> global reads <paramref name="clock"/> instead of
    /// <see cref="DateTime.Now"/> (for reproducible output).
    /// </summary>
    /// <param name="clock">Local-time clock.</param>
    public ChatTemplate WithClock(Func<DateTime> clock)
    {
        ArgumentNullException.ThrowIfNull(clock);
        return new ChatTemplate(Source, _template, Limits, clock);
    }

    /// <summary>The documented plain prompt format for checkpoints without a template (see <see cref="PlainFallbackSource"/>).</summary>
    public static ChatTemplate PlainFallback => Fallback.Value;

    /// <summary>Parses a jinja2 chat template with the default <see cref="TemplateLimits"/>.</summary>
    /// <param name="source">Template text (e.g. <c>tokenizer_config.json["chat_template"]</c>).</param>
    /// <exception cref="TemplateException">The template has a syntax error (<c>ErrorType</c> <c>TemplateSyntaxError</c>, with <c>Line</c>),
    /// including nesting deeper than <see cref="TemplateLimits.MaxNestingDepth"/>.</exception>
    public static ChatTemplate Parse(string source) => Parse(source, null);

    /// <summary>Parses a jinja2 chat template that will parse and render under <paramref name="limits"/>.</summary>
    /// <param name="source">Template text (e.g. <c>tokenizer_config.json["chat_template"]</c>).</param>
    /// <param name="limits">Resource limits; null for <see cref="TemplateLimits.Default"/>.</param>
    /// <exception cref="TemplateException">The template has a syntax error (<c>ErrorType</c> <c>TemplateSyntaxError</c>, with <c>Line</c>),
    /// including nesting deeper than <see cref="TemplateLimits.MaxNestingDepth"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A limit is not positive.</exception>
    public static ChatTemplate Parse(string source, TemplateLimits? limits)
    {
        ArgumentNullException.ThrowIfNull(source);
        limits = (limits ?? TemplateLimits.Default).Validate();
        return new ChatTemplate(source, JinjaTemplate.Parse(source, limits), limits);
    }

    /// <summary>
    /// Loads the chat template of a Hugging Face checkpoint folder. Looks, in order, at
    /// <c>chat_template.jinja</c> (or <c>additional_chat_templates/{name}.jinja</c> for a named template),
    /// the <c>chat_template</c> key of <c>tokenizer_config.json</c> (a string, or a list of
    /// <c>{"name", "template"}</c> objects from which <paramref name="name"/> is chosen), then
    /// <c>chat_template.json</c>.
    /// </summary>
    /// <param name="directory">Checkpoint folder.</param>
    /// <param name="name">Template name when several are stored; defaults to <c>"default"</c>.</param>
    /// <exception cref="FileNotFoundException">The checkpoint has no chat template.</exception>
    /// <exception cref="JambaTokenizerException">A template file is unreadable, not UTF-8, not valid JSON, or <c>chat_template</c> has the wrong shape (names the file and JSON path).</exception>
    /// <exception cref="TemplateException">The template has a syntax error.</exception>
    public static ChatTemplate FromCheckpoint(string directory, string? name = null) =>
        TryFromCheckpoint(directory, out var t, name)
            ? t
            : throw new FileNotFoundException($"No chat template found in '{directory}' (chat_template.jinja, tokenizer_config.json or chat_template.json).");

    /// <summary>Like <see cref="FromCheckpoint"/>, but returns false when the checkpoint has no chat template.</summary>
    /// <param name="directory">Checkpoint folder.</param>
    /// <param name="template">The loaded template, when found.</param>
    /// <param name="name">Template name when several are stored; defaults to <c>"default"</c>.</param>
    /// <exception cref="JambaTokenizerException">A template file is malformed (see <see cref="FromCheckpoint"/>).</exception>
    public static bool TryFromCheckpoint(string directory, [NotNullWhen(true)] out ChatTemplate? template, string? name = null)
    {
        var source = FindTemplateSource(directory, name ?? "default");
        template = source == null ? null : Parse(source);
        return template != null;
    }

    /// <summary>The checkpoint's chat template, or <see cref="PlainFallback"/> when it has none (e.g. Jamba-v0.1).</summary>
    /// <param name="directory">Checkpoint folder.</param>
    public static ChatTemplate FromCheckpointOrFallback(string directory) =>
        TryFromCheckpoint(directory, out var t) ? t : PlainFallback;

    private static string? FindTemplateSource(string directory, string name)
    {
        ArgumentNullException.ThrowIfNull(directory);
        bool isDefault = name == "default";
        if (!isDefault && (name.Length == 0 || name.IndexOfAny(['/', '\\', '\0']) >= 0 || name is "." or ".."))
            throw new ArgumentException($"'{name}' is not a chat template name (no path separators).", nameof(name));
        string jinjaFile = isDefault
            ? Path.Combine(directory, "chat_template.jinja")
            : Path.Combine(directory, "additional_chat_templates", name + ".jinja");
        // Checkpoint files are untrusted: read bounded, as strict UTF-8, through symbolic links (Hugging Face cache);
        // a malformed file fails with JambaTokenizerException naming the file and the JSON path.
        if (InputFiles.Exists(jinjaFile)) return InputFiles.ReadText(jinjaFile, (message, inner) => new JambaTokenizerException(jinjaFile, message, inner));

        string configFile = Path.Combine(directory, "tokenizer_config.json");
        if (InputFiles.Exists(configFile))
        {
            var fromConfig = SelectTemplate(configFile, name);
            if (fromConfig != null) return fromConfig;
        }
        string processorFile = Path.Combine(directory, "chat_template.json");
        if (InputFiles.Exists(processorFile))
            return SelectTemplate(processorFile, name);
        return null;
    }

    /// <summary>The template called <paramref name="name"/> from the <c>chat_template</c> key of a JSON file: a string
    /// (the default template) or a list of <c>{"name", "template"}</c> objects (all entries are checked).</summary>
    private static string? SelectTemplate(string file, string name)
    {
        using var doc = InputFiles.ReadJson(file, lenient: true, (message, inner) => new JambaTokenizerException(file, message, inner));
        var root = new JsonField(doc.RootElement, "", (path, message) => new JambaTokenizerException(file, path, message)).Object();
        if (root.Get("chat_template") is not { } node) return null;
        switch (node.Kind)
        {
            case JsonValueKind.String:
                return name == "default" ? node.String() : null;
            case JsonValueKind.Array:
                string? found = null;
                var seen = new HashSet<string>(StringComparer.Ordinal);
                foreach (var item in node.Items())
                {
                    if (item.Kind != JsonValueKind.Object) throw item.Expected("a {\"name\": ..., \"template\": ...} object");
                    string itemName = item.Require("name", "the template's name (a string)").String();
                    string template = item.Require("template", "the template text (a string)").String();
                    if (!seen.Add(itemName)) throw item.ChildError("name", $"template name {JsonField.Quote(itemName)} appears twice.");
                    if (itemName == name) found = template;
                }
                return found;
            default:
                throw node.Expected("a string or a list of {name, template} objects");
        }
    }

    /// <summary>
    /// Renders the template the way <c>apply_chat_template(messages, tools=tools, documents=documents,
    /// add_generation_prompt=..., tokenize=False, **kwargs)</c> does: <c>messages</c>, <c>tools</c>,
    /// <c>documents</c> and <c>add_generation_prompt</c> are always passed (<c>null</c> is Python <c>None</c>);
    /// <paramref name="bosToken"/>/<paramref name="eosToken"/> only when not null (otherwise the variable is
    /// undefined); <paramref name="kwargs"/> are passed last and win on name clashes.
    /// </summary>
    /// <param name="messages">The conversation: a JSON array of message objects.</param>
    /// <param name="tools">Tool definitions (JSON array) or null.</param>
    /// <param name="documents">RAG documents (JSON array) or null.</param>
    /// <param name="addGenerationPrompt">Whether to append the assistant-turn prefix.</param>
    /// <param name="bosToken">BOS token text, or null to leave <c>bos_token</c> undefined.</param>
    /// <param name="eosToken">EOS token text, or null to leave <c>eos_token</c> undefined.</param>
    /// <param name="kwargs">Extra template variables (e.g. <c>knobs</c>, <c>thinking_prefix</c>).</param>
    /// <param name="cancellationToken">Stops a long render (checked every few thousand steps).</param>
    /// <returns>The rendered prompt, not stripped.</returns>
    /// <exception cref="TemplateException">The template raised (e.g. <c>raise_exception</c> → <c>TemplateError</c>) or
    /// exceeded one of its <see cref="Limits"/> (<c>RecursionError</c>, <c>OverflowError</c>, <c>TimeoutError</c>).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="ArgumentException">An input value is nested deeper than 1000 levels.</exception>
    public string Render(
        JsonNode? messages,
        JsonNode? tools = null,
        JsonNode? documents = null,
        bool addGenerationPrompt = false,
        string? bosToken = null,
        string? eosToken = null,
        IReadOnlyDictionary<string, JsonNode?>? kwargs = null,
        CancellationToken cancellationToken = default)
    {
        var vars = new List<KeyValuePair<string, object?>>
        {
            new("messages", TemplateValues.FromNode(messages, "messages")),
            new("tools", TemplateValues.FromNode(tools, "tools")),
            new("documents", TemplateValues.FromNode(documents, "documents")),
            new("add_generation_prompt", addGenerationPrompt),
        };
        if (bosToken != null) vars.Add(new("bos_token", bosToken));
        if (eosToken != null) vars.Add(new("eos_token", eosToken));
        if (kwargs != null)
            foreach (var kv in kwargs) vars.Add(new(kv.Key, TemplateValues.FromNode(kv.Value, kv.Key)));
        return _template.Render(vars, _clock, Limits, cancellationToken);
    }

    /// <summary>
    /// Renders with an explicit set of template variables (nothing is added). Values may be
    /// <see cref="JsonNode"/>, <see cref="JsonElement"/>, strings, booleans, integral types (Python <c>int</c>),
    /// <see cref="double"/>/<see cref="float"/>/<see cref="decimal"/> (Python <c>float</c>), string-keyed
    /// dictionaries (insertion order kept), other enumerables (lists) or null (<c>None</c>).
    /// </summary>
    /// <param name="variables">Template variables; later entries win on duplicate names.</param>
    /// <param name="cancellationToken">Stops a long render (checked every few thousand steps).</param>
    /// <returns>The rendered text.</returns>
    /// <exception cref="TemplateException">Rendering failed, or exceeded one of the template's <see cref="Limits"/>.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="ArgumentException">A value has an unsupported type, contains itself, or is nested deeper than 1000 levels.</exception>
    public string RenderVariables(IEnumerable<KeyValuePair<string, object?>> variables, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(variables);
        var vars = variables.Select(kv => new KeyValuePair<string, object?>(kv.Key, TemplateValues.FromClr(kv.Value, kv.Key))).ToList();
        return _template.Render(vars, _clock, Limits, cancellationToken);
    }
}
