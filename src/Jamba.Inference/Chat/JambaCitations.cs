using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace Jamba.Inference.Chat;

/// <summary>
/// The citation section of the Jamba 1.5+ templates' citation mode: the model ends its answer with
/// <c>&lt;citations&gt;[0, 2]&lt;/citations&gt;</c> (the document numbers, 0-based, as the template numbers the documents;
/// <c>[]</c> when nothing supports the answer). The template renders past answers' citations the same way
/// (<c>message.citations|map(attribute="document_id")|list|string</c>, i.e. Python's list repr).
/// </summary>
public static class JambaCitations
{
    /// <summary>The opening tag.</summary>
    public const string OpenTag = "<citations>";
    /// <summary>The closing tag.</summary>
    public const string CloseTag = "</citations>";
    /// <summary>
    /// The key under which the chat client puts the <see cref="IReadOnlyList{T}"/> of <see cref="JambaCitation"/> in the
    /// final update's <c>AdditionalProperties</c> (which <c>ToChatResponse</c> moves to the response message's).
    /// </summary>
    public const string AdditionalPropertiesKey = "citations";
    /// <summary>The <see cref="AIAnnotation.AdditionalProperties"/> key of a <see cref="CitationAnnotation"/>'s document number.</summary>
    public const string DocumentIndexKey = "document_index";

    /// <summary>
    /// Finds the (last) citation section in an answer and returns the answer without it.
    /// </summary>
    /// <param name="text">The model's answer.</param>
    /// <param name="cleanedText">The answer without the section, trailing whitespace removed (the whole text when there is none).</param>
    /// <param name="documentIndexes">The cited document numbers, in the model's order, duplicates removed.</param>
    /// <returns>Whether a well-formed section was found (an unterminated section at the very end is accepted when its list is complete).</returns>
    public static bool TryParse(string text, out string cleanedText, [NotNullWhen(true)] out IReadOnlyList<int>? documentIndexes)
    {
        ArgumentNullException.ThrowIfNull(text);
        cleanedText = text;
        documentIndexes = null;
        int open = text.LastIndexOf(OpenTag, StringComparison.Ordinal);
        if (open < 0) return false;
        int bodyStart = open + OpenTag.Length;
        int close = text.IndexOf(CloseTag, bodyStart, StringComparison.Ordinal);
        string body = close < 0 ? text[bodyStart..] : text[bodyStart..close];
        if (!TryParseList(body, out var ids)) return false;
        documentIndexes = ids;
        string after = close < 0 ? "" : text[(close + CloseTag.Length)..];
        cleanedText = (text[..open] + after).TrimEnd();
        return true;
    }

    /// <summary>
    /// Parses the list between the tags: a JSON/Python list of document numbers (<c>[0, 2]</c>, <c>[]</c>), leniently
    /// (numbers written as strings, <c>'1'</c>, or without brackets, <c>0, 2</c>). Never throws on model output.
    /// </summary>
    /// <param name="body">The text between the tags.</param>
    /// <param name="documentIndexes">The numbers, duplicates removed.</param>
    /// <returns>Whether the text is such a list.</returns>
    public static bool TryParseList(string body, [NotNullWhen(true)] out IReadOnlyList<int>? documentIndexes)
    {
        ArgumentNullException.ThrowIfNull(body);
        documentIndexes = null;
        string s = body.Trim();
        if (s.StartsWith('[') != s.EndsWith(']')) return false;
        if (s.StartsWith('[')) s = s[1..^1];
        var result = new List<int>();
        if (s.Trim().Length == 0)
        {
            documentIndexes = result;
            return true;
        }
        foreach (var raw in s.Split(','))
        {
            string item = raw.Trim().Trim('"', '\'').Trim();
            if (!int.TryParse(item, NumberStyles.Integer, CultureInfo.InvariantCulture, out int id) || id < 0) return false;
            if (!result.Contains(id)) result.Add(id);
        }
        documentIndexes = result;
        return true;
    }

    /// <summary>Resolves document numbers against the documents of the prompt (out-of-range numbers are kept, without id and title).</summary>
    /// <param name="documentIndexes">Cited numbers.</param>
    /// <param name="documents">The prompt's documents, or null.</param>
    public static IReadOnlyList<JambaCitation> Resolve(IEnumerable<int> documentIndexes, IReadOnlyList<JambaDocument>? documents)
    {
        ArgumentNullException.ThrowIfNull(documentIndexes);
        return documentIndexes.Select(i =>
        {
            var doc = documents is not null && i < documents.Count ? documents[i] : null;
            return new JambaCitation(i, doc?.Id, doc?.Title);
        }).ToList();
    }

    /// <summary>
    /// The citations as MEAI annotations: <see cref="CitationAnnotation.FileId"/> = the document's <see cref="JambaDocument.Id"/>
    /// (or its number when it has none), <see cref="CitationAnnotation.Title"/> = its title, and the number under
    /// <see cref="DocumentIndexKey"/> in <see cref="AIAnnotation.AdditionalProperties"/>.
    /// </summary>
    /// <param name="citations">The citations.</param>
    public static List<AIAnnotation> ToAnnotations(IEnumerable<JambaCitation> citations)
    {
        ArgumentNullException.ThrowIfNull(citations);
        return citations.Select(c => (AIAnnotation)new CitationAnnotation
        {
            FileId = c.DocumentId ?? c.DocumentIndex.ToString(CultureInfo.InvariantCulture),
            Title = c.Title,
            RawRepresentation = c,
            AdditionalProperties = new() { [DocumentIndexKey] = c.DocumentIndex },
        }).ToList();
    }

    /// <summary>
    /// The document numbers an assistant message cites, for rendering it back through the template (<c>citations</c> of a
    /// message): from the message's <c>AdditionalProperties["citations"]</c> (a list of <see cref="JambaCitation"/>,
    /// numbers, or <c>{"document_id": n}</c> objects), else from the <see cref="CitationAnnotation"/>s of its contents that
    /// carry a <see cref="DocumentIndexKey"/>. Null when it cites nothing.
    /// </summary>
    /// <param name="message">An assistant message.</param>
    public static IReadOnlyList<int>? FromMessage(ChatMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (message.AdditionalProperties?.TryGetValue(AdditionalPropertiesKey, out var raw) == true && raw is not null)
        {
            var list = new List<int>();
            switch (raw)
            {
                case IEnumerable<JambaCitation> cs: list.AddRange(cs.Select(c => c.DocumentIndex)); break;
                case IEnumerable<int> ints: list.AddRange(ints); break;
                default:
                    if (JambaChatFormatter.ToNode(raw) is System.Text.Json.Nodes.JsonArray arr)
                    {
                        foreach (var item in arr)
                        {
                            var n = item is System.Text.Json.Nodes.JsonObject o ? o["document_id"] ?? o["DocumentIndex"] ?? o["documentIndex"] : item;
                            if (n is System.Text.Json.Nodes.JsonValue v && v.GetValueKind() == JsonValueKind.Number) list.Add(v.GetValue<int>());
                        }
                    }
                    break;
            }
            return list;
        }
        List<int>? found = null;
        foreach (var content in message.Contents)
        {
            if (content.Annotations is not { Count: > 0 } annotations) continue;
            foreach (var a in annotations)
            {
                if (a is CitationAnnotation { AdditionalProperties: { } props } && props.TryGetValue(DocumentIndexKey, out var idx) && idx is not null)
                {
                    int i = idx switch
                    {
                        int x => x,
                        long l => (int)l,
                        JsonElement { ValueKind: JsonValueKind.Number } e => e.GetInt32(),
                        _ => -1,
                    };
                    if (i >= 0) (found ??= []).Add(i);
                }
            }
        }
        return found;
    }
}
