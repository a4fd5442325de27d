using System.Text.Json.Nodes;
using Jamba.Inference.Templates;

namespace Jamba.Testing;

/// <summary>The recorded chat templates under <see cref="RepositoryPaths.ChatTemplates"/>: one folder per template with
/// <c>template.jinja</c> and <c>cases.json</c> (jinja2's renderings).</summary>
public static class RecordedChatTemplates
{
    /// <summary>The folder of the template <paramref name="name"/> (e.g. <c>jamba-mini-1.7</c>).</summary>
    public static string Folder(string name) => Path.Combine(RepositoryPaths.ChatTemplates, name);

    /// <summary>The parsed <c>template.jinja</c> of <paramref name="name"/>.</summary>
    public static ChatTemplate Load(string name) => ChatTemplate.Parse(File.ReadAllText(Path.Combine(Folder(name), "template.jinja")));

    /// <summary>The recorded cases (<c>cases.json</c>) of <paramref name="name"/>.</summary>
    public static JsonArray Cases(string name) => JsonNode.Parse(File.ReadAllText(Path.Combine(Folder(name), "cases.json")))!.AsArray();
}
