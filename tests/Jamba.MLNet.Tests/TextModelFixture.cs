using Microsoft.ML;
using Xunit;

namespace Jamba.MLNet.Tests;

/// <summary>
/// Small random-weight Jamba checkpoints with the real SentencePiece test tokenizer (the shared fixture checkpoints have
/// no tokenizer), built once per test run in temp folders: the shared <see cref="TinyCheckpoint"/>.
/// </summary>
public sealed class TextModelFixture : IDisposable
{
    /// <summary>The template of <see cref="ChatFolder"/>.</summary>
    public const string ChatTemplate =
        "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|eom|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";

    public TextModelFixture()
    {
        Folder = Create(hiddenSize: 32, intermediateSize: 48, dtRank: 4, seed: 11);
        ChatFolder = TinyCheckpoint.CreateTemp("jamba-mlnet-", new TinyCheckpointOptions { ChatTemplate = ChatTemplate });
    }

    /// <summary>A checkpoint folder (no chat template: the plain fallback applies).</summary>
    public string Folder { get; }

    /// <summary>The same weights with a chat template.</summary>
    public string ChatFolder { get; }

    /// <summary>Builds a checkpoint with <c>jamba-tiny-a</c>'s shape (hidden 64, 4 layers, 4 experts) but the test tokenizer's vocabulary.</summary>
    public static string CreateFixtureSize(int seed = 5) => Create(hiddenSize: 64, intermediateSize: 128, dtRank: 8, seed: seed);

    public static string Create(int hiddenSize, int intermediateSize, int dtRank, int seed) =>
        TinyCheckpoint.CreateTemp("jamba-mlnet-", new TinyCheckpointOptions { HiddenSize = hiddenSize, IntermediateSize = intermediateSize, DtRank = dtRank, Seed = seed });

    public void Dispose()
    {
        JambaPipelineModels.ReleaseAll();
        TinyCheckpoint.Delete(Folder);
        TinyCheckpoint.Delete(ChatFolder);
    }
}

[CollectionDefinition(Name)]
public sealed class TextModelCollection : ICollectionFixture<TextModelFixture>
{
    public const string Name = "text model";
}
