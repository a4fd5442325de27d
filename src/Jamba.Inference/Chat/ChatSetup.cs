using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using Jamba.Inference.Engine;
using Jamba.Inference.Templates;
using Jamba.Inference.Tokenization;
using Microsoft.Extensions.Logging;

namespace Jamba.Inference.Chat;

/// <summary>
/// Everything a chat over one checkpoint needs, worked out once: the chat template (the checkpoint's, or
/// <see cref="ChatTemplate.PlainFallback"/>), the BOS/EOS texts the template is rendered with, the end-of-turn tokens
/// and strings that end an assistant turn, the tool-call markup the template teaches, and the factories of the prompt
/// formatter and the output parser. <see cref="JambaChatClient"/>, the ML.NET steps and every CLI command use it; none of
/// them loads a template or picks markers of its own.
/// </summary>
/// <remarks>
/// <para>The end of an assistant turn is read off the template itself, not from a list of known markers: a conversation
/// whose assistant message is a sentinel is rendered, and what the template writes right after the sentinel (up to the
/// line's end) is the end-of-turn marker — a token id when the tokenizer has it as one token (Jamba 1.5+'s
/// <c>&lt;|eom|&gt;</c>, Reasoning 3B's <c>&lt;|im_end|&gt;</c>), else a stop string. A template that writes nothing there
/// (the plain fallback) relies on the model's EOS tokens (<c>config.json</c>, <c>generation_config.json</c>, the tokenizer),
/// which the engine always stops at.</para>
/// <para>Immutable and thread-safe.</para>
/// </remarks>
public sealed class ChatSetup
{
    private const string Sentinel = "\u0001jamba-end-of-turn-probe\u0002";
    private static readonly ConditionalWeakTable<JambaEngine, ChatSetup> PerModel = new();

    private ChatSetup(ChatTemplate template, JambaTokenizer tokenizer, ToolCallFormat? toolCallFormat)
    {
        Template = template;
        Tokenizer = tokenizer;
        BosToken = tokenizer.BosTokenId is { } b ? tokenizer.IdToToken(b) : null;
        EosToken = tokenizer.EosTokenId is { } e ? tokenizer.IdToToken(e) : null;
        ToolCallFormat = toolCallFormat ?? ToolCallParser.DetectFormat(template);
        (EndOfTurnTokenIds, EndOfTurnStrings) = FindEndOfTurn(template, tokenizer, BosToken, EosToken);
    }

    /// <summary>The chat setup of a loaded model: its checkpoint's template (or the fallback) with its tokenizer, made once
    /// per loaded model and shared by every caller of that model.</summary>
    /// <exception cref="ArgumentException">The checkpoint has no tokenizer files.</exception>
    /// <exception cref="TemplateException">The checkpoint's chat template does not parse.</exception>
    public static ChatSetup For(JambaModelHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        var tokenizer = RequireTokenizer(handle);
        return PerModel.GetValue(handle.Engine, _ => new ChatSetup(ChatTemplate.FromCheckpointOrFallback(handle.Path), tokenizer, null));
    }

    /// <summary>A setup for <paramref name="handle"/> with another template or tool-call format (null keeps the model's).</summary>
    /// <exception cref="ArgumentException">The checkpoint has no tokenizer files.</exception>
    public static ChatSetup For(JambaModelHandle handle, ChatTemplate? template, ToolCallFormat? toolCallFormat = null)
    {
        ArgumentNullException.ThrowIfNull(handle);
        if (template is null && toolCallFormat is null) return For(handle);
        return new ChatSetup(template ?? For(handle).Template, RequireTokenizer(handle), toolCallFormat);
    }

    /// <summary>A setup over an explicit template and tokenizer (no model needed: formatting and parsing only).</summary>
    public static ChatSetup Create(ChatTemplate template, JambaTokenizer tokenizer, ToolCallFormat? toolCallFormat = null)
    {
        ArgumentNullException.ThrowIfNull(template);
        ArgumentNullException.ThrowIfNull(tokenizer);
        return new ChatSetup(template, tokenizer, toolCallFormat);
    }

    /// <summary>The chat template.</summary>
    public ChatTemplate Template { get; }
    /// <summary>The tokenizer prompts are encoded with.</summary>
    public JambaTokenizer Tokenizer { get; }
    /// <summary>The text of the BOS token the template is given as <c>bos_token</c>, if any.</summary>
    public string? BosToken { get; }
    /// <summary>The text of the EOS token the template is given as <c>eos_token</c>, if any.</summary>
    public string? EosToken { get; }
    /// <summary>Tokens that end an assistant turn (besides the model's EOS tokens).</summary>
    public IReadOnlyList<int> EndOfTurnTokenIds { get; }
    /// <summary>End-of-turn markers the tokenizer has no single token for (matched as stop sequences).</summary>
    public IReadOnlyList<string> EndOfTurnStrings { get; }
    /// <summary>The tool-call markup the model writes.</summary>
    public ToolCallFormat ToolCallFormat { get; }

    /// <summary>A prompt formatter over this template with <paramref name="templateKwargs"/> passed to every render.</summary>
    public JambaChatFormatter CreateFormatter(IEnumerable<KeyValuePair<string, JsonNode?>>? templateKwargs = null) =>
        new(Template, BosToken, EosToken, templateKwargs);

    /// <summary>An output parser for one response (text, reasoning, tool calls, citations).</summary>
    /// <param name="startsInReasoning">The prompt opened a reasoning section the output continues.</param>
    /// <param name="logger">Receives warnings about malformed markup.</param>
    /// <param name="parseCitations">Take a <c>&lt;citations&gt;</c> section out of the text.</param>
    public ChatOutputParser CreateParser(bool startsInReasoning = false, ILogger? logger = null, bool parseCitations = false) =>
        new(ToolCallFormat, startsInReasoning, logger, parseCitations);

    /// <summary>Renders a one-turn conversation (an optional system message, then <paramref name="user"/>) with the generation
    /// prompt, as <c>apply_chat_template(..., add_generation_prompt=True)</c> does, and encodes it (the template places the
    /// special tokens itself).</summary>
    /// <exception cref="TemplateException">The template raised.</exception>
    public IReadOnlyList<int> EncodeSingleTurn(string user, string? systemPrompt = null)
    {
        ArgumentNullException.ThrowIfNull(user);
        var messages = new JsonArray();
        if (systemPrompt != null) messages.Add(new JsonObject { ["role"] = "system", ["content"] = systemPrompt });
        messages.Add(new JsonObject { ["role"] = "user", ["content"] = user });
        string text = Template.Render(messages, addGenerationPrompt: true, bosToken: BosToken, eosToken: EosToken);
        return Tokenizer.Encode(text, addSpecialTokens: false);
    }

    private const string NextTurn = "Again";

    private static string? MarkerAfterSentinel(ChatTemplate template, string? bos, string? eos, bool withNextTurn)
    {
        string rendered;
        try
        {
            var messages = new JsonArray
            {
                new JsonObject { ["role"] = "user", ["content"] = "Hello" },
                new JsonObject { ["role"] = "assistant", ["content"] = Sentinel },
            };
            if (withNextTurn) messages.Add(new JsonObject { ["role"] = "user", ["content"] = NextTurn });
            rendered = template.Render(messages, addGenerationPrompt: false, bosToken: bos, eosToken: eos);
        }
        catch (TemplateException)
        {
            return null;
        }
        int at = rendered.IndexOf(Sentinel, StringComparison.Ordinal);
        if (at < 0) return null;
        string after = rendered[(at + Sentinel.Length)..];
        if (withNextTurn)
        {
            int next = after.IndexOf(NextTurn, StringComparison.Ordinal);
            if (next >= 0) after = after[..next];
            int end = after.IndexOfAny(['\n', '\r']);
            if (end >= 0) after = after[..end];
        }
        return after.Trim();
    }

    private static JambaTokenizer RequireTokenizer(JambaModelHandle handle) =>
        handle.Tokenizer ?? throw new ArgumentException(
            $"The checkpoint '{handle.Path}' has no tokenizer files (tokenizer.json or tokenizer.model); a chat needs one.", nameof(handle));

    /// <summary>What the template writes right after an assistant message's content, as token ids or strings.</summary>
    private static (IReadOnlyList<int> Ids, IReadOnlyList<string> Strings) FindEndOfTurn(ChatTemplate template, JambaTokenizer tokenizer, string? bos, string? eos)
    {
        // A conversation that ends with the assistant's turn shows what closes a turn and nothing of the next one; a
        // template that refuses it gets one more user turn, and the marker is then cut at the line's end.
        string? marker = MarkerAfterSentinel(template, bos, eos, withNextTurn: false) ?? MarkerAfterSentinel(template, bos, eos, withNextTurn: true);
        if (string.IsNullOrEmpty(marker)) return ([], []);
        // The marker may be followed on the same line by the next turn's opening (e.g. "<|eom|><|bom|><|user|>"): the
        // end of turn is the first special token of that run, or the whole run when it is no token.
        foreach (var special in tokenizer.SpecialTokens.OrderByDescending(t => t.Length))
        {
            if (special.Length == 0 || !marker.StartsWith(special, StringComparison.Ordinal)) continue;
            if (special == bos) break;
            return tokenizer.TokenToId(special) is { } id && !tokenizer.EosTokenIds.Contains(id) ? ([id], []) : ([], []);
        }
        var tag = System.Text.RegularExpressions.Regex.Match(marker, @"^<\|[^|<>\s]{1,32}\|>");
        if (tag.Success) marker = tag.Value;
        if (tokenizer.TokenToId(marker) is { } single) return tokenizer.EosTokenIds.Contains(single) ? ([], []) : ([single], []);
        return marker.Length <= 32 ? ([], [marker]) : ([], []);
    }
}
