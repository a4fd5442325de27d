using System.Text;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Jamba.Inference.Chat;

/// <summary>
/// Turns a model's streamed output text into chat contents: plain text (<see cref="TextContent"/>),
/// reasoning (<see cref="TextReasoningContent"/>, the part before <c>&lt;/think&gt;</c> when the prompt
/// primed a <c>&lt;think&gt;</c> block), tool calls (<see cref="FunctionCallContent"/>) and, when asked, the
/// citation section (<c>&lt;citations&gt;[0, 2]&lt;/citations&gt;</c>, see <see cref="CitedDocumentIndexes"/>).
/// Tool-call and citation markup is buffered until it is complete, so it never leaks into the text: text that could
/// still become an opening tag is held back until the next piece decides. Markup whose content is malformed
/// is released as plain text and a warning is logged; nothing here throws on model output.
/// Leading whitespace of the answer is dropped (Jamba templates end the prompt right after the role
/// marker), and whitespace just before or between tool calls is dropped. Not thread-safe: one per generation.
/// </summary>
public sealed class ChatOutputParser
{
    private const string ThinkClose = "</think>";
    private const string ThinkOpen = "<think>";

    private enum State { Reasoning, Content, Tool, Citations }

    private readonly ToolCallFormat _format;
    private readonly string _open;
    private readonly string _close;
    private readonly ILogger _logger;
    private readonly bool _parseCitations;
    private readonly StringBuilder _buf = new();
    private List<int>? _citations;
    private readonly StringBuilder _heldWhitespace = new();
    private State _state;
    private bool _atContentStart = true;
    private bool _atReasoningStart = true;
    private int _toolCalls;
    private int _malformed;

    /// <summary>Creates a parser.</summary>
    /// <param name="format">The tool-call markup to recognize (<see cref="ToolCallFormat.None"/>: none).</param>
    /// <param name="startInReasoning">Whether the output starts inside a <c>&lt;think&gt;</c> block (the prompt ended with <c>&lt;think&gt;</c>).</param>
    /// <param name="logger">Receives a warning for each malformed tool call or citation section.</param>
    /// <param name="parseCitations">Whether to take <c>&lt;citations&gt;…&lt;/citations&gt;</c> out of the text (see <see cref="CitedDocumentIndexes"/>).</param>
    public ChatOutputParser(ToolCallFormat format, bool startInReasoning = false, ILogger? logger = null, bool parseCitations = false)
    {
        _parseCitations = parseCitations;
        _format = format;
        _open = ToolCallParser.OpenTag(format);
        _close = ToolCallParser.CloseTag(format);
        _logger = logger ?? NullLogger.Instance;
        _state = startInReasoning ? State.Reasoning : State.Content;
    }

    /// <summary>Tool calls recognized so far.</summary>
    public int ToolCallCount => _toolCalls;

    /// <summary>Tool-call blocks released as plain text because they were malformed.</summary>
    public int MalformedToolCallCount => _malformed;

    /// <summary>
    /// The document numbers of the citation section(s) seen so far (in order, without duplicates), or null when the output
    /// has none (yet). Only with <c>parseCitations</c>.
    /// </summary>
    public IReadOnlyList<int>? CitedDocumentIndexes => _citations;

    /// <summary>Feeds the next piece of output; returns the contents it completes (possibly none).</summary>
    /// <param name="text">New output text.</param>
    public IReadOnlyList<AIContent> Push(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var output = new List<AIContent>();
        if (text.Length == 0) return output;
        _buf.Append(text);
        Process(output, final: false);
        return output;
    }

    /// <summary>Ends the output: releases everything still held back (an unterminated tool call is parsed if its JSON is complete).</summary>
    public IReadOnlyList<AIContent> Complete()
    {
        var output = new List<AIContent>();
        Process(output, final: true);
        switch (_state)
        {
            case State.Reasoning:
                EmitReasoning(output, _buf.ToString());
                break;
            case State.Content:
                EmitText(output, _buf.ToString());
                break;
            case State.Citations:
                {
                    string body = _buf.ToString();
                    if (JambaCitations.TryParseList(body, out var ids))
                    {
                        AddCitations(ids);
                    }
                    else
                    {
                        _logger.LogWarning("The model started a citation section ({OpenTag}) but did not finish it; the text is returned as plain text: {Text}", JambaCitations.OpenTag, Truncate(body));
                        ReleaseHeldWhitespace(output);
                        AddText(output, JambaCitations.OpenTag + body);
                    }
                    break;
                }
            case State.Tool:
                {
                    string body = _buf.ToString();
                    if (body.Trim().Length > 0 && ToolCallParser.TryParse(body, out var calls, out _))
                    {
                        _logger.LogDebug("The model's tool call ended without {CloseTag}; its JSON was complete and is used.", _close);
                        AddCalls(output, calls);
                    }
                    else
                    {
                        _malformed++;
                        _logger.LogWarning("The model started a tool call ({OpenTag}) but did not finish it; the text is returned as plain text: {Text}", _open, Truncate(body));
                        ReleaseHeldWhitespace(output);
                        AddText(output, _open + body);
                    }
                    break;
                }
        }
        _buf.Clear();
        // Trailing whitespace of the answer is kept unless the turn has tool calls.
        if (_heldWhitespace.Length > 0 && _toolCalls == 0) AddText(output, _heldWhitespace.ToString());
        _heldWhitespace.Clear();
        return output;
    }

    private void Process(List<AIContent> output, bool final)
    {
        while (true)
        {
            switch (_state)
            {
                case State.Reasoning:
                    {
                        string s = _buf.ToString();
                        if (_atReasoningStart)
                        {
                            // A model may repeat the primed "<think>" or start with newlines.
                            string t = s.TrimStart();
                            if (t.Length == 0 && !final) return;
                            if (ThinkOpen.StartsWith(t, StringComparison.Ordinal) && t.Length < ThinkOpen.Length && !final) return;
                            if (t.StartsWith(ThinkOpen, StringComparison.Ordinal)) t = t[ThinkOpen.Length..].TrimStart('\n');
                            s = t;
                            _buf.Clear().Append(s);
                            if (s.Length == 0) return;
                            _atReasoningStart = false;
                        }
                        int idx = s.IndexOf(ThinkClose, StringComparison.Ordinal);
                        if (idx >= 0)
                        {
                            EmitReasoning(output, s[..idx].TrimEnd('\n'));
                            _buf.Clear().Append(s, idx + ThinkClose.Length, s.Length - idx - ThinkClose.Length);
                            _state = State.Content;
                            _atContentStart = true;
                            continue;
                        }
                        if (final) return;
                        int hold = HoldBack(s, ThinkClose);
                        // Trailing newlines may precede </think>: hold them too.
                        int end = s.Length - hold;
                        while (end > 0 && s[end - 1] == '\n') end--;
                        EmitReasoning(output, s[..end]);
                        _buf.Remove(0, end);
                        return;
                    }
                case State.Content:
                    {
                        string s = _buf.ToString();
                        if (_atContentStart)
                        {
                            string t = s.TrimStart();
                            if (t.Length == 0)
                            {
                                _buf.Clear();
                                return;
                            }
                            s = t;
                            _buf.Clear().Append(s);
                            _atContentStart = false;
                        }
                        if (_format == ToolCallFormat.None && !_parseCitations)
                        {
                            EmitText(output, s);
                            _buf.Clear();
                            return;
                        }
                        int idx = _format == ToolCallFormat.None ? -1 : s.IndexOf(_open, StringComparison.Ordinal);
                        int cite = _parseCitations ? s.IndexOf(JambaCitations.OpenTag, StringComparison.Ordinal) : -1;
                        if (cite >= 0 && (idx < 0 || cite < idx))
                        {
                            EmitText(output, s[..cite]);
                            _heldWhitespace.Clear(); // whitespace before the citation section is dropped
                            _buf.Clear().Append(s, cite + JambaCitations.OpenTag.Length, s.Length - cite - JambaCitations.OpenTag.Length);
                            _state = State.Citations;
                            continue;
                        }
                        if (idx >= 0)
                        {
                            EmitText(output, s[..idx]);
                            _heldWhitespace.Clear(); // whitespace before a tool call is dropped
                            _buf.Clear().Append(s, idx + _open.Length, s.Length - idx - _open.Length);
                            _state = State.Tool;
                            continue;
                        }
                        if (final) return;
                        int hold = Math.Max(_format == ToolCallFormat.None ? 0 : HoldBack(s, _open), _parseCitations ? HoldBack(s, JambaCitations.OpenTag) : 0);
                        EmitText(output, s[..(s.Length - hold)]);
                        _buf.Remove(0, s.Length - hold);
                        return;
                    }
                case State.Tool:
                    {
                        string s = _buf.ToString();
                        int idx = s.IndexOf(_close, StringComparison.Ordinal);
                        if (idx < 0) return;
                        string body = s[..idx];
                        if (ToolCallParser.TryParse(body, out var calls, out var error))
                        {
                            AddCalls(output, calls);
                        }
                        else
                        {
                            _malformed++;
                            _logger.LogWarning("The model wrote a malformed tool call ({Error}); it is returned as plain text: {Text}", error, Truncate(body));
                            ReleaseHeldWhitespace(output);
                            AddText(output, _open + body + _close);
                        }
                        _buf.Clear().Append(s, idx + _close.Length, s.Length - idx - _close.Length);
                        _state = State.Content;
                        continue;
                    }
                case State.Citations:
                    {
                        string s = _buf.ToString();
                        int idx = s.IndexOf(JambaCitations.CloseTag, StringComparison.Ordinal);
                        if (idx < 0) return;
                        string body = s[..idx];
                        if (JambaCitations.TryParseList(body, out var ids))
                        {
                            AddCitations(ids);
                        }
                        else
                        {
                            _logger.LogWarning("The model wrote a malformed citation section; it is returned as plain text: {Text}", Truncate(body));
                            ReleaseHeldWhitespace(output);
                            AddText(output, JambaCitations.OpenTag + body + JambaCitations.CloseTag);
                        }
                        _buf.Clear().Append(s, idx + JambaCitations.CloseTag.Length, s.Length - idx - JambaCitations.CloseTag.Length);
                        _state = State.Content;
                        continue;
                    }
            }
        }
    }

    private void AddCitations(IReadOnlyList<int> ids)
    {
        _citations ??= [];
        foreach (int id in ids)
            if (!_citations.Contains(id)) _citations.Add(id);
    }

    private void AddCalls(List<AIContent> output, IReadOnlyList<FunctionCallContent> calls)
    {
        _heldWhitespace.Clear();
        foreach (var call in calls)
        {
            output.Add(call);
            _toolCalls++;
        }
    }

    /// <summary>Length of the longest suffix of <paramref name="s"/> that is a proper prefix of <paramref name="tag"/>.</summary>
    private static int HoldBack(string s, string tag)
    {
        for (int n = Math.Min(tag.Length - 1, s.Length); n > 0; n--)
            if (string.CompareOrdinal(s, s.Length - n, tag, 0, n) == 0) return n;
        return 0;
    }

    private void EmitReasoning(List<AIContent> output, string text)
    {
        if (text.Length == 0) return;
        if (output.Count > 0 && output[^1] is TextReasoningContent prev)
            output[^1] = new TextReasoningContent(prev.Text + text);
        else
            output.Add(new TextReasoningContent(text));
    }

    /// <summary>Emits text, holding back trailing whitespace until it is known what follows.</summary>
    private void EmitText(List<AIContent> output, string text)
    {
        if (text.Length == 0) return;
        int end = text.Length;
        while (end > 0 && char.IsWhiteSpace(text[end - 1])) end--;
        if (end == 0)
        {
            _heldWhitespace.Append(text);
            return;
        }
        ReleaseHeldWhitespace(output);
        AddText(output, text[..end]);
        _heldWhitespace.Append(text, end, text.Length - end);
    }

    private void ReleaseHeldWhitespace(List<AIContent> output)
    {
        if (_heldWhitespace.Length == 0) return;
        AddText(output, _heldWhitespace.ToString());
        _heldWhitespace.Clear();
    }

    private void AddText(List<AIContent> output, string text)
    {
        if (text.Length == 0) return;
        if (output.Count > 0 && output[^1] is TextContent prev)
            output[^1] = new TextContent(prev.Text + text);
        else
            output.Add(new TextContent(text));
    }

    private static string Truncate(string s) => s.Length <= 500 ? s : s[..500] + "…";
}
