using Jamba.MLNet.Internal;
using Microsoft.ML;

namespace Jamba.MLNet;

/// <summary>
/// The estimator of a Jamba text-generation (and scoring) step; create it with
/// <see cref="JambaCatalog.GenerateText(TransformsCatalog.TextTransforms, string, string, string)"/> or its overloads.
/// Fitting trains nothing: it checks the input schema and binds the model.
/// </summary>
public sealed class JambaTextGenerationEstimator : IEstimator<JambaTextGenerationTransformer>
{
    private readonly StepSettings _settings;

    internal JambaTextGenerationEstimator(JambaTextGenerationOptions options)
    {
        _settings = StepSettings.Create(options);
    }

    /// <summary>A copy of the settings (<see cref="JambaTextGenerationOptions.ModelPath"/> as a full path).</summary>
    public JambaTextGenerationOptions Options => _settings.Options.Clone();

    /// <summary>Checks the schema of <paramref name="input"/> and loads (or shares) the model through the engine's registry.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A column the step reads is missing or not text; the message names the column and the expected type.</exception>
    /// <exception cref="FileNotFoundException">The model folder has no <c>config.json</c>.</exception>
    /// <exception cref="InvalidOperationException">The checkpoint has no tokenizer.</exception>
    public JambaTextGenerationTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        StepSchema.Validate(_settings, input.Schema);
        ModelBindings.Get(_settings.Options);
        var savedForm = SavedForm.CreateEstimator(new MLContext(), _settings).Fit(input);
        return new JambaTextGenerationTransformer(_settings, savedForm);
    }

    /// <summary>The schema shape after this step: the input's columns plus the step's (text, Int32 and Double columns).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A column the step reads is missing or not text; the message names the column and the expected type.</exception>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        StepSchema.Validate(_settings, inputSchema);
        return SavedForm.CreateEstimator(new MLContext(), _settings).GetOutputSchema(inputSchema);
    }
}
