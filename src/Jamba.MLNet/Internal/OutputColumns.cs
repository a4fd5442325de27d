using Microsoft.ML;
using Microsoft.ML.Data;

namespace Jamba.MLNet.Internal;

/// <summary>The kinds of column a step adds.</summary>
internal enum OutputKind { Text, FinishReason, PromptTokens, CompletionTokens, LogLikelihood, Perplexity, TargetTokens }

/// <summary>Schema work shared by the estimator, the transformer, the data view and the row mapper.</summary>
internal static class StepSchema
{
    public static IReadOnlyList<(string Name, OutputKind Kind)> Added(StepSettings settings) =>
        settings.Options.OutputColumns().Select(o => (o.Name, KindOf(o.Option))).ToList();

    private static OutputKind KindOf(string option) => option switch
    {
        nameof(JambaTextGenerationOptions.OutputColumnName) => OutputKind.Text,
        nameof(JambaTextGenerationOptions.FinishReasonColumnName) => OutputKind.FinishReason,
        nameof(JambaTextGenerationOptions.PromptTokensColumnName) => OutputKind.PromptTokens,
        nameof(JambaTextGenerationOptions.CompletionTokensColumnName) => OutputKind.CompletionTokens,
        nameof(JambaTextGenerationOptions.LogLikelihoodColumnName) => OutputKind.LogLikelihood,
        nameof(JambaTextGenerationOptions.PerplexityColumnName) => OutputKind.Perplexity,
        nameof(JambaTextGenerationOptions.TargetTokensColumnName) => OutputKind.TargetTokens,
        _ => throw new ArgumentOutOfRangeException(nameof(option), option, null),
    };

    public static DataViewType TypeOf(OutputKind kind) => kind switch
    {
        OutputKind.Text or OutputKind.FinishReason => TextDataViewType.Instance,
        OutputKind.LogLikelihood or OutputKind.Perplexity => NumberDataViewType.Double,
        _ => NumberDataViewType.Int32,
    };

    private static string Role(StepSettings settings, string column) =>
        column == settings.Options.TargetColumnName && !settings.Template.Columns.Contains(column) ? "TargetColumnName"
        : settings.Options.PromptTemplate != null ? "PromptTemplate" : "InputColumnName";

    /// <summary>Checks that every column the step reads is a text column; returns their indices.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Names the column, the option that reads it and the expected type.</exception>
    public static int[] Validate(StepSettings settings, DataViewSchema schema)
    {
        var indices = new int[settings.InputColumns.Count];
        for (int i = 0; i < indices.Length; i++)
        {
            string name = settings.InputColumns[i];
            var column = schema.GetColumnOrNull(name)
                ?? throw new ArgumentOutOfRangeException("inputSchema",
                    $"Input column '{name}' (read by {Role(settings, name)}) was not found; expected a text column (String).");
            if (column.Type is not TextDataViewType)
                throw new ArgumentOutOfRangeException("inputSchema",
                    $"Schema mismatch for input column '{name}' (read by {Role(settings, name)}): expected String (text), got {column.Type}.");
            indices[i] = column.Index;
        }
        return indices;
    }

    /// <summary>Like <see cref="Validate(StepSettings, DataViewSchema)"/> for an estimator's schema shape.</summary>
    public static void Validate(StepSettings settings, SchemaShape shape)
    {
        foreach (string name in settings.InputColumns)
        {
            var found = shape.Where(c => c.Name == name).ToList();
            if (found.Count == 0)
                throw new ArgumentOutOfRangeException("inputSchema",
                    $"Input column '{name}' (read by {Role(settings, name)}) was not found; expected a text column (String).");
            var column = found[^1];
            if (column.Kind != SchemaShape.Column.VectorKind.Scalar || column.ItemType is not TextDataViewType || column.IsKey)
            {
                string got = (column.Kind == SchemaShape.Column.VectorKind.Scalar ? "" : column.Kind + " of ") + column.ItemType + (column.IsKey ? " (key)" : "");
                throw new ArgumentOutOfRangeException("inputSchema",
                    $"Schema mismatch for input column '{name}' (read by {Role(settings, name)}): expected String (text), got {got}.");
            }
        }
    }

    /// <summary>The input schema followed by the added columns (an added column hides an input column of the same name).</summary>
    public static DataViewSchema Output(StepSettings settings, DataViewSchema input)
    {
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(input);
        foreach (var (name, kind) in Added(settings)) builder.AddColumn(name, TypeOf(kind));
        return builder.ToSchema();
    }

    /// <summary>A getter over a lazily computed row result.</summary>
    public static Delegate Getter(OutputKind kind, Func<RowResult> current) => kind switch
    {
        OutputKind.Text => (ValueGetter<ReadOnlyMemory<char>>)((ref ReadOnlyMemory<char> v) => v = current().Text.AsMemory()),
        OutputKind.FinishReason => (ValueGetter<ReadOnlyMemory<char>>)((ref ReadOnlyMemory<char> v) => v = current().FinishReason.AsMemory()),
        OutputKind.PromptTokens => (ValueGetter<int>)((ref int v) => v = current().PromptTokens),
        OutputKind.CompletionTokens => (ValueGetter<int>)((ref int v) => v = current().CompletionTokens),
        OutputKind.LogLikelihood => (ValueGetter<double>)((ref double v) => v = current().LogLikelihood),
        OutputKind.Perplexity => (ValueGetter<double>)((ref double v) => v = current().Perplexity),
        OutputKind.TargetTokens => (ValueGetter<int>)((ref int v) => v = current().TargetTokens),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    public static ValueGetter<T> Typed<T>(Delegate getter, DataViewSchema.Column column) =>
        getter as ValueGetter<T> ?? throw new InvalidOperationException(
            $"Invalid TValue in GetGetter for column '{column.Name}': '{typeof(T)}'; expected '{column.Type.RawType}'.");

    public static string[] ReadValues(ValueGetter<ReadOnlyMemory<char>>[] getters)
    {
        var values = new string[getters.Length];
        for (int i = 0; i < getters.Length; i++)
        {
            ReadOnlyMemory<char> v = default;
            getters[i](ref v);
            values[i] = v.ToString();
        }
        return values;
    }
}
