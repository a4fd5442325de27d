using System.Diagnostics.CodeAnalysis;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms;

namespace Jamba.MLNet.Internal;

/// <summary>
/// The form a Jamba step takes in a saved model. ML.NET keeps its savable-transformer machinery internal, so the step
/// is saved as a chain of stock, savable transforms around a <c>CustomMapping</c> registered under
/// <see cref="ContractName"/>:
/// <list type="number">
/// <item><c>CopyColumns</c> copies the first input column to a fixed name (so that the settings can be read back);</item>
/// <item><c>Expression</c> adds a column holding the step's settings as JSON (a string literal: the settings travel in the zip);</item>
/// <item><c>Concatenate</c> gathers the settings and the step's input columns into one text vector;</item>
/// <item>the custom mapping reads that vector, binds the model through the shared registry and fills the result columns;</item>
/// <item><c>CopyColumns</c> gives them the configured names and <c>DropColumns</c> removes the temporaries.</item>
/// </list>
/// Loading needs nothing but this assembly (ML.NET registers the mapping's assembly itself); the mapping runs one
/// row at a time, so a loaded pipeline batches only across threads (e.g. a prediction-engine pool).
/// </summary>
internal static class SavedForm
{
    public const string ContractName = "Jamba.MLNet.TextGeneration.v1";

    public const string KeyColumn = "__jamba_key";
    public const string SettingsColumn = "__jamba_settings";
    public const string RowColumn = "__jamba_row";
    public const string TextColumn = "__jamba_text";
    public const string FinishColumn = "__jamba_finish_reason";
    public const string PromptTokensColumn = "__jamba_prompt_tokens";
    public const string CompletionTokensColumn = "__jamba_completion_tokens";
    public const string LogLikelihoodColumn = "__jamba_log_likelihood";
    public const string PerplexityColumn = "__jamba_perplexity";
    public const string TargetTokensColumn = "__jamba_target_tokens";

    private static readonly string[] Temporaries =
        [KeyColumn, SettingsColumn, RowColumn, TextColumn, FinishColumn, PromptTokensColumn, CompletionTokensColumn, LogLikelihoodColumn, PerplexityColumn, TargetTokensColumn];

    /// <summary>The stock-transform estimator chain equivalent to a step with <paramref name="settings"/>.</summary>
    public static EstimatorChain<ITransformer> CreateEstimator(MLContext ml, StepSettings settings)
    {
        var o = settings.Options;
        string literal = "@\"" + settings.SerializedJson.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
        // Built flat (EstimatorChain.Append), so that the saved step is one chain of stock transforms.
        var chain = new EstimatorChain<ITransformer>()
            .Append<ITransformer>(ml.Transforms.CopyColumns(KeyColumn, settings.InputColumns[0]))
            .Append<ITransformer>(ml.Transforms.Expression(SettingsColumn, "(x) => " + literal, KeyColumn))
            .Append<ITransformer>(ml.Transforms.Concatenate(RowColumn, [SettingsColumn, .. settings.InputColumns]))
            .Append<ITransformer>(ml.Transforms.CustomMapping<SavedRow, SavedResult>(Map, ContractName));
        foreach (var (option, name) in o.OutputColumns())
            chain = chain.Append<ITransformer>(ml.Transforms.CopyColumns(name, TemporaryFor(option)));
        chain = chain.Append<ITransformer>(ml.Transforms.DropColumns(Temporaries));
        return chain;
    }

    /// <summary>Whether <paramref name="chain"/> is a saved step (as loaded by <c>mlContext.Model.Load</c>).</summary>
    public static bool IsSavedStep(IReadOnlyList<ITransformer> chain) =>
        chain.Count >= 6 && chain[0] is ColumnCopyingTransformer && chain[1] is ExpressionTransformer && chain[2] is ColumnConcatenatingTransformer
        && chain[3] is CustomMappingTransformer<SavedRow, SavedResult> && chain[^1] is ColumnSelectingTransformer;

    /// <summary>The settings JSON of a saved step: its settings expression evaluated on a one-row probe.</summary>
    public static string ReadSettings(IReadOnlyList<ITransformer> chain)
    {
        var probe = chain[1].Transform(new ProbeDataView());
        var column = probe.Schema.GetColumnOrNull(SettingsColumn)
            ?? throw new InvalidDataException($"The saved Jamba step has no '{SettingsColumn}' column.");
        using var cursor = probe.GetRowCursor([column]);
        if (!cursor.MoveNext()) throw new InvalidDataException("The saved Jamba step's settings could not be read.");
        ReadOnlyMemory<char> value = default;
        cursor.GetGetter<ReadOnlyMemory<char>>(column)(ref value);
        return value.ToString();
    }

    /// <summary>One row with an empty <see cref="KeyColumn"/>.</summary>
    private sealed class ProbeDataView : IDataView
    {
        public DataViewSchema Schema { get; } = BuildSchema();

        private static DataViewSchema BuildSchema()
        {
            var b = new DataViewSchema.Builder();
            b.AddColumn(KeyColumn, TextDataViewType.Instance);
            return b.ToSchema();
        }

        public bool CanShuffle => false;
        public long? GetRowCount() => 1;
        public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null) => new Cursor(Schema);
        public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) => [new Cursor(Schema)];

        private sealed class Cursor(DataViewSchema schema) : DataViewRowCursor
        {
            private long _position = -1;
            public override DataViewSchema Schema => schema;
            public override long Position => _position;
            public override long Batch => 0;
            public override bool MoveNext() => ++_position == 0;
            public override bool IsColumnActive(DataViewSchema.Column column) => true;
            public override ValueGetter<DataViewRowId> GetIdGetter() => (ref DataViewRowId id) => id = new DataViewRowId((ulong)_position, 0);
            public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column) =>
                (ValueGetter<TValue>)(Delegate)(ValueGetter<ReadOnlyMemory<char>>)((ref ReadOnlyMemory<char> v) => v = ReadOnlyMemory<char>.Empty);
        }
    }

    private static string TemporaryFor(string option) => option switch
    {
        nameof(JambaTextGenerationOptions.OutputColumnName) => TextColumn,
        nameof(JambaTextGenerationOptions.FinishReasonColumnName) => FinishColumn,
        nameof(JambaTextGenerationOptions.PromptTokensColumnName) => PromptTokensColumn,
        nameof(JambaTextGenerationOptions.CompletionTokensColumnName) => CompletionTokensColumn,
        nameof(JambaTextGenerationOptions.LogLikelihoodColumnName) => LogLikelihoodColumn,
        nameof(JambaTextGenerationOptions.PerplexityColumnName) => PerplexityColumn,
        nameof(JambaTextGenerationOptions.TargetTokensColumnName) => TargetTokensColumn,
        _ => throw new ArgumentOutOfRangeException(nameof(option), option, null),
    };

    /// <summary>The mapping of the saved form: one row at a time, synchronously.</summary>
    internal static void Map(SavedRow input, SavedResult output)
    {
        var values = input.Values ?? [];
        if (values.Length == 0) throw new InvalidDataException($"The saved Jamba step's '{RowColumn}' column is empty.");
        var settings = StepSettings.FromJson(values[0]);
        var binding = ModelBindings.Get(settings.Options);
        var rowValues = new string[values.Length - 1];
        for (int i = 1; i < values.Length; i++) rowValues[i - 1] = values[i] ?? "";
        var result = settings.RunAsync(binding, rowValues, CancellationToken.None).GetAwaiter().GetResult();
        output.Text = result.Text;
        output.FinishReason = result.FinishReason;
        output.PromptTokens = result.PromptTokens;
        output.CompletionTokens = result.CompletionTokens;
        output.LogLikelihood = result.LogLikelihood;
        output.Perplexity = result.Perplexity;
        output.TargetTokens = result.TargetTokens;
    }
}

/// <summary>Input row of the saved form's custom mapping (not for direct use).</summary>
[SuppressMessage("Design", "CA1051", Justification = "ML.NET row type")]
internal sealed class SavedRow
{
    [ColumnName(SavedForm.RowColumn)]
    [VectorType]
    public string[] Values = [];
}

/// <summary>Output row of the saved form's custom mapping (not for direct use).</summary>
internal sealed class SavedResult
{
    [ColumnName(SavedForm.TextColumn)] public string Text = "";
    [ColumnName(SavedForm.FinishColumn)] public string FinishReason = "";
    [ColumnName(SavedForm.PromptTokensColumn)] public int PromptTokens;
    [ColumnName(SavedForm.CompletionTokensColumn)] public int CompletionTokens;
    [ColumnName(SavedForm.LogLikelihoodColumn)] public double LogLikelihood;
    [ColumnName(SavedForm.PerplexityColumn)] public double Perplexity;
    [ColumnName(SavedForm.TargetTokensColumn)] public int TargetTokens;
}

/// <summary>Makes the saved form's mapping loadable: ML.NET finds it by <see cref="SavedForm.ContractName"/>.</summary>
[CustomMappingFactoryAttribute(SavedForm.ContractName)]
internal sealed class SavedFormMappingFactory : CustomMappingFactory<SavedRow, SavedResult>
{
    /// <inheritdoc />
    public override Action<SavedRow, SavedResult> GetMapping() => SavedForm.Map;
}
