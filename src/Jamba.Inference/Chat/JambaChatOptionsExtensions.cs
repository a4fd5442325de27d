using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;

namespace Jamba.Inference.Chat;

/// <summary>The Jamba 1.5+ templates' citation mode (<c>knobs.citation_mode</c>).</summary>
public enum JambaCitationMode
{
    /// <summary>No citation section is asked for (<c>"off"</c>).</summary>
    Off,
    /// <summary>
    /// <c>"fast"</c>: the model ends its answer with <c>&lt;citations&gt;[document numbers]&lt;/citations&gt;</c>; the chat
    /// client strips the section from the text and reports it as <see cref="JambaCitation"/>s.
    /// </summary>
    Fast,
}

/// <summary>
/// Typed helpers for the RAG inputs and outputs of <see cref="JambaChatClient"/>, stored where any
/// <see cref="IChatClient"/> pipeline carries them (<see cref="ChatOptions.AdditionalProperties"/>,
/// <see cref="ChatResponse.AdditionalProperties"/>):
/// <list type="bullet">
/// <item><c>documents</c>: the documents (template objects, see <see cref="JambaDocument.ToTemplateObject"/>);</item>
/// <item><c>citation_mode</c>: <c>"fast"</c> or <c>"off"</c>, the template's <c>knobs.citation_mode</c>;</item>
/// <item><c>knobs</c>: the template's whole <c>knobs</c> object, if a caller wants to set it verbatim (wins over
/// <c>citation_mode</c> and <see cref="ChatOptions.ResponseFormat"/>);</item>
/// <item>JSON mode is <see cref="ChatOptions.ResponseFormat"/> = <see cref="ChatResponseFormat.Json"/> (knobs
/// <c>response_format = "json_object"</c>).</item>
/// </list>
/// </summary>
public static class JambaChatOptionsExtensions
{
    /// <summary>The <see cref="ChatOptions.AdditionalProperties"/> key of the citation mode (<c>"fast"</c> / <c>"off"</c>).</summary>
    public const string CitationModeKey = "citation_mode";
    /// <summary>The <see cref="ChatOptions.AdditionalProperties"/> key of the template's verbatim <c>knobs</c> object.</summary>
    public const string KnobsKey = "knobs";

    /// <summary>Sets the documents of a request (replacing any); returns <paramref name="options"/>.</summary>
    /// <param name="options">The options to change.</param>
    /// <param name="documents">The documents, in prompt order (the model cites them by their position, from 0).</param>
    public static ChatOptions WithDocuments(this ChatOptions options, IEnumerable<JambaDocument> documents)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(documents);
        (options.AdditionalProperties ??= [])[JambaChatFormatter.DocumentsKey] = documents.ToList();
        return options;
    }

    /// <summary>Sets the citation mode of a request; returns <paramref name="options"/>.</summary>
    /// <param name="options">The options to change.</param>
    /// <param name="mode">The mode (default <see cref="JambaCitationMode.Fast"/>).</param>
    public static ChatOptions WithCitations(this ChatOptions options, JambaCitationMode mode = JambaCitationMode.Fast)
    {
        ArgumentNullException.ThrowIfNull(options);
        (options.AdditionalProperties ??= [])[CitationModeKey] = mode == JambaCitationMode.Fast ? "fast" : "off";
        return options;
    }

    /// <summary>Turns on the template's JSON mode (<see cref="ChatOptions.ResponseFormat"/> = JSON); returns <paramref name="options"/>.</summary>
    /// <param name="options">The options to change.</param>
    public static ChatOptions WithJsonMode(this ChatOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.ResponseFormat = ChatResponseFormat.Json;
        return options;
    }

    /// <summary>The documents of a request (from any of the accepted forms), or an empty list.</summary>
    /// <param name="options">Request options.</param>
    /// <exception cref="ArgumentException">The <c>documents</c> property is not a list of objects.</exception>
    public static IReadOnlyList<JambaDocument> GetDocuments(this ChatOptions? options) => JambaChatFormatter.ReadDocuments(options);

    /// <summary>The citation mode of a request: <c>citation_mode</c>, else the <c>knobs</c> object's, else off.</summary>
    /// <param name="options">Request options.</param>
    public static JambaCitationMode GetCitationMode(this ChatOptions? options)
    {
        var knobs = JambaChatFormatter.BuildKnobs(options);
        return knobs?["citation_mode"] is JsonValue v && v.TryGetValue<string>(out var s) && s == "fast" ? JambaCitationMode.Fast : JambaCitationMode.Off;
    }

    /// <summary>
    /// The citations the model gave in its answer (empty when it gave none or citation mode was off): from the response's
    /// <c>AdditionalProperties["citations"]</c>, else from its last message's (where <c>ToChatResponse</c> puts the final
    /// update's properties).
    /// </summary>
    /// <param name="response">A response of <see cref="JambaChatClient"/>.</param>
    public static IReadOnlyList<JambaCitation> GetCitations(this ChatResponse response)
    {
        ArgumentNullException.ThrowIfNull(response);
        var top = Read(response.AdditionalProperties);
        if (top.Count > 0) return top;
        for (int i = response.Messages.Count - 1; i >= 0; i--)
        {
            var found = Read(response.Messages[i].AdditionalProperties);
            if (found.Count > 0) return found;
        }
        return [];
    }

    /// <summary>The citations carried by a streamed update (only the final update has them).</summary>
    /// <param name="update">An update of <see cref="JambaChatClient"/>.</param>
    public static IReadOnlyList<JambaCitation> GetCitations(this ChatResponseUpdate update)
    {
        ArgumentNullException.ThrowIfNull(update);
        return Read(update.AdditionalProperties);
    }

    private static IReadOnlyList<JambaCitation> Read(AdditionalPropertiesDictionary? props) =>
        props?.TryGetValue(JambaCitations.AdditionalPropertiesKey, out var raw) == true && raw is IReadOnlyList<JambaCitation> list ? list : [];
}
