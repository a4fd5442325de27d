using Jamba.MLNet.Internal;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Jamba.MLNet;

/// <summary>
/// A fitted Jamba text-generation (and scoring) step: adds the generated text, finish reason and token counts (and,
/// in scoring mode, the target's log-likelihood and perplexity) to every row. Made by
/// <see cref="JambaTextGenerationEstimator.Fit"/>.
/// </summary>
/// <remarks>
/// <para><see cref="Transform"/> is lazy: rows are generated as a cursor reaches them and asks for a column of this step,
/// with up to <see cref="JambaTextGenerationOptions.BatchSize"/> rows in flight so that the engine batches their decode
/// steps. Prediction engines run one row per call; several engines (e.g. a pool) on several threads share the model,
/// and the engine batches their rows too.</para>
/// <para>Saving (<c>mlContext.Model.Save</c>) stores the model's path and the settings, not the weights. The saved step is
/// a chain of stock ML.NET transforms around a custom mapping registered by this assembly, so
/// <c>mlContext.Model.Load</c> works in any process that references Jamba.MLNet; the loaded chain binds the model through
/// the shared registry on first use (and throws <see cref="FileNotFoundException"/> then if it is not at the saved path).
/// It generates one row at a time per cursor; <see cref="JambaCatalog.RestoreTextGeneration"/> turns it back into a batching
/// transformer.</para>
/// <para>The model stays loaded for the process once a pipeline has used it; see <see cref="JambaPipelineModels"/>.
/// This transformer holds no unmanaged resources of its own and needs no disposal.</para>
/// </remarks>
public sealed class JambaTextGenerationTransformer : ITransformer
{
    private readonly ITransformer _savedForm;

    internal JambaTextGenerationTransformer(StepSettings settings, ITransformer savedForm)
    {
        Settings = settings;
        _savedForm = savedForm;
    }

    internal StepSettings Settings { get; }

    /// <summary>A copy of the settings in force (<see cref="JambaTextGenerationOptions.ModelPath"/> as a full path).</summary>
    public JambaTextGenerationOptions Options => Settings.Options.Clone();

    /// <summary>The input columns this step reads: the prompt's columns, then the target column in scoring mode.</summary>
    public IReadOnlyList<string> InputColumnNames => Settings.InputColumns;

    /// <summary>The columns this step adds, in order.</summary>
    public IReadOnlyList<string> OutputColumnNames => StepSchema.Added(Settings).Select(a => a.Name).ToList();

    bool ITransformer.IsRowToRowMapper => true;

    /// <summary>The schema <see cref="Transform"/> produces for <paramref name="inputSchema"/>: its columns, then this step's.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A column the step reads is missing or not text; the message names it.</exception>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        StepSchema.Validate(Settings, inputSchema);
        return StepSchema.Output(Settings, inputSchema);
    }

    /// <summary>Adds this step's columns to <paramref name="input"/> (lazily: nothing runs until a cursor reads them).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A column the step reads is missing or not text; the message names it.</exception>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new GenerationDataView(Settings, input);
    }

    IRowToRowMapper ITransformer.GetRowToRowMapper(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        return new GenerationRowMapper(Settings, inputSchema);
    }

    void ICanSaveModel.Save(ModelSaveContext ctx) => _savedForm.Save(ctx);
}
