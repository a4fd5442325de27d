using System.Text;

namespace Jamba.MLNet.Internal;

/// <summary>A prompt template: literal text with <c>{Column}</c> placeholders; <c>{{</c>/<c>}}</c> are literal braces.</summary>
internal sealed class PromptTemplate
{
    private readonly (string Text, int Column)[] _parts; // Column = -1 for literal text

    private PromptTemplate((string, int)[] parts, IReadOnlyList<string> columns)
    {
        _parts = parts;
        Columns = columns;
    }

    /// <summary>Distinct columns in order of first use.</summary>
    public IReadOnlyList<string> Columns { get; }

    public static string Placeholder(string column) => "{" + column.Replace("{", "{{", StringComparison.Ordinal).Replace("}", "}}", StringComparison.Ordinal) + "}";

    public static PromptTemplate Parse(string template)
    {
        ArgumentNullException.ThrowIfNull(template);
        var parts = new List<(string, int)>();
        var columns = new List<string>();
        var sb = new StringBuilder();
        int i = 0;
        while (i < template.Length)
        {
            char c = template[i];
            if (c == '{' && i + 1 < template.Length && template[i + 1] == '{') { sb.Append('{'); i += 2; continue; }
            if (c == '}' && i + 1 < template.Length && template[i + 1] == '}') { sb.Append('}'); i += 2; continue; }
            if (c == '}') throw Error(template, i, "a lone '}' (write '}}' for a literal brace)");
            if (c != '{') { sb.Append(c); i++; continue; }
            // A placeholder: up to the matching single '}', with '{{'/'}}' inside a name standing for braces.
            var name = new StringBuilder();
            int j = i + 1;
            while (true)
            {
                if (j >= template.Length) throw Error(template, i, "an unclosed '{' (write '{{' for a literal brace)");
                if (template[j] == '}' && j + 1 < template.Length && template[j + 1] == '}') { name.Append('}'); j += 2; continue; }
                if (template[j] == '{' && j + 1 < template.Length && template[j + 1] == '{') { name.Append('{'); j += 2; continue; }
                if (template[j] == '}') break;
                if (template[j] == '{') throw Error(template, j, "a '{' inside a placeholder");
                name.Append(template[j]);
                j++;
            }
            if (name.Length == 0) throw Error(template, i, "an empty placeholder '{}'");
            if (sb.Length > 0) { parts.Add((sb.ToString(), -1)); sb.Clear(); }
            string column = name.ToString();
            int index = columns.IndexOf(column);
            if (index < 0) { index = columns.Count; columns.Add(column); }
            parts.Add((column, index));
            i = j + 1;
        }
        if (sb.Length > 0) parts.Add((sb.ToString(), -1));
        return new PromptTemplate(parts.ToArray(), columns);
    }

    private static ArgumentException Error(string template, int at, string what) =>
        new($"PromptTemplate has {what} at position {at}: \"{template}\".", "PromptTemplate");

    /// <summary>Fills the template; <paramref name="values"/>[k] is the value of <see cref="Columns"/>[k].</summary>
    public string Fill(IReadOnlyList<string> values)
    {
        var sb = new StringBuilder();
        foreach (var (text, column) in _parts) sb.Append(column < 0 ? text : values[column]);
        return sb.ToString();
    }
}
