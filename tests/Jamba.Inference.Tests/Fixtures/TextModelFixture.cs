using Jamba.Testing;

namespace Jamba.Inference.Tests.Fixtures;

/// <summary>A small random-weight Jamba checkpoint with the real SentencePiece test tokenizer, for text-level tests
/// (the shared <see cref="TinyCheckpoint"/>, no chat template).</summary>
public sealed class TextModelFixture() : TinyCheckpointFixture("jamba-text-");
