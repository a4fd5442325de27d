using Microsoft.ML.Data;
using Jamba.MLNet;
using Jamba.MLNet.Internal;

namespace Microsoft.ML;

/// <summary>ML.NET catalog extensions for Jamba text generation and scoring.</summary>
public static class JambaCatalog
{
    /// <summary>
    /// Generates text with a Jamba model from the prompts in <paramref name="inputColumnName"/> into
    /// <paramref name="outputColumnName"/> (greedy, at most 256 tokens), adding the <c>FinishReason</c>,
    /// <c>PromptTokens</c> and <c>CompletionTokens</c> columns.
    /// </summary>
    /// <param name="catalog">The text transforms catalog.</param>
    /// <param name="outputColumnName">The generated-text column.</param>
    /// <param name="inputColumnName">The prompt column (text).</param>
    /// <param name="modelPath">The checkpoint folder (with tokenizer files).</param>
    /// <exception cref="ArgumentException">An argument is invalid.</exception>
    public static JambaTextGenerationEstimator GenerateText(this TransformsCatalog.TextTransforms catalog,
        string outputColumnName, string inputColumnName, string modelPath)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new JambaTextGenerationEstimator(new JambaTextGenerationOptions
        {
            OutputColumnName = outputColumnName,
            InputColumnName = inputColumnName,
            ModelPath = modelPath,
        });
    }

    /// <summary>Generates text into <paramref name="outputColumnName"/> with the other settings from <paramref name="options"/> (copied).</summary>
    /// <param name="catalog">The text transforms catalog.</param>
    /// <param name="outputColumnName">The generated-text column (overrides <see cref="JambaTextGenerationOptions.OutputColumnName"/>).</param>
    /// <param name="options">Model, prompt, sampling and batching settings.</param>
    /// <exception cref="ArgumentException">An option is invalid; the message names it.</exception>
    public static JambaTextGenerationEstimator GenerateText(this TransformsCatalog.TextTransforms catalog,
        string outputColumnName, JambaTextGenerationOptions options)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(options);
        var copy = options.Clone();
        copy.OutputColumnName = outputColumnName;
        return new JambaTextGenerationEstimator(copy);
    }

    /// <summary>A Jamba generation and/or scoring step with all settings from <paramref name="options"/> (copied).</summary>
    /// <param name="catalog">The text transforms catalog.</param>
    /// <param name="options">Model, prompt, output columns, sampling, scoring and batching settings.</param>
    /// <exception cref="ArgumentException">An option is invalid; the message names it.</exception>
    public static JambaTextGenerationEstimator GenerateText(this TransformsCatalog.TextTransforms catalog, JambaTextGenerationOptions options)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(options);
        return new JambaTextGenerationEstimator(options);
    }

    /// <summary>
    /// Scores how likely a Jamba model finds the text in <paramref name="targetColumnName"/> as a continuation of the
    /// prompt in <paramref name="inputColumnName"/>, adding <c>LogLikelihood</c>, <c>Perplexity</c>, <c>TargetTokens</c>
    /// and <c>PromptTokens</c> columns (no generation).
    /// </summary>
    /// <param name="catalog">The text transforms catalog.</param>
    /// <param name="targetColumnName">The text column to score.</param>
    /// <param name="inputColumnName">The prompt column (text).</param>
    /// <param name="modelPath">The checkpoint folder (with tokenizer files).</param>
    /// <exception cref="ArgumentException">An argument is invalid.</exception>
    public static JambaTextGenerationEstimator ScoreText(this TransformsCatalog.TextTransforms catalog,
        string targetColumnName, string inputColumnName, string modelPath)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new JambaTextGenerationEstimator(new JambaTextGenerationOptions
        {
            Generate = false,
            TargetColumnName = targetColumnName,
            InputColumnName = inputColumnName,
            ModelPath = modelPath,
        });
    }

    /// <summary>
    /// Turns every Jamba step of a model loaded with <c>mlContext.Model.Load</c> back into a
    /// <see cref="JambaTextGenerationTransformer"/> (which batches rows in <c>Transform</c>) and binds its model now.
    /// The result saves exactly as the loaded model did. Models without Jamba steps come back unchanged.
    /// </summary>
    /// <param name="catalog">The model operations catalog.</param>
    /// <param name="model">The loaded model.</param>
    /// <returns>The model with its Jamba steps restored (a new chain when any was found).</returns>
    /// <exception cref="FileNotFoundException">A step's model is not at its saved path.</exception>
    /// <exception cref="InvalidDataException">A step's saved settings cannot be read.</exception>
    public static ITransformer RestoreTextGeneration(this ModelOperationsCatalog catalog, ITransformer model)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(model);
        return Restore(model);
    }

    private static ITransformer Restore(ITransformer model)
    {
        if (model is not TransformerChain<ITransformer> chain) return model;
        var parts = chain.ToList();
        if (SavedForm.IsSavedStep(parts))
        {
            var settings = StepSettings.FromJson(SavedForm.ReadSettings(parts));
            ModelBindings.Get(settings.Options);
            return new JambaTextGenerationTransformer(settings, chain);
        }
        bool changed = false;
        for (int i = 0; i < parts.Count; i++)
        {
            var restored = Restore(parts[i]);
            changed |= !ReferenceEquals(restored, parts[i]);
            parts[i] = restored;
        }
        return changed ? new TransformerChain<ITransformer>(parts.ToArray()) : model;
    }
}

/// <summary>
/// The models bound by ML.NET pipelines in this process. A pipeline binds its model (through
/// <see cref="Jamba.Inference.Engine.JambaModelRegistry.Shared"/>, so weights are shared with every other user) when it is
/// fitted or first run, and keeps it loaded for the process: ML.NET has no dispose contract a pipeline can rely on.
/// </summary>
public static class JambaPipelineModels
{
    /// <summary>Models currently bound by pipelines.</summary>
    public static int Count => ModelBindings.Count;

    /// <summary>Releases every pipeline's lease on its model (freeing the weights unless something else holds them).
    /// Pipelines that run afterwards load their model again.</summary>
    /// <returns>How many models were released.</returns>
    public static int ReleaseAll() => ModelBindings.ReleaseAll();
}
