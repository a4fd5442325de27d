namespace Jamba.Testing;

/// <summary>
/// The tiny checkpoint (<see cref="TinyCheckpoint"/>) with <c>max_position_embeddings</c> 4096 and the real Jamba Mini 1.7
/// chat template (<c>chat_template.jinja</c>), built once in a temp folder. Each test assembly that shares it declares
/// its own collection (xunit finds collection definitions in the test assembly only).
/// </summary>
public sealed class ChatModelFixture() : TinyCheckpointFixture("jamba-chat-", Options)
{
    /// <summary>The options of this checkpoint.</summary>
    public static TinyCheckpointOptions Options => new()
    {
        MaxPositionEmbeddings = 4096,
        ChatTemplateFile = TinyCheckpoint.SharedTemplateFile("jamba-mini-1.7"),
    };
}
