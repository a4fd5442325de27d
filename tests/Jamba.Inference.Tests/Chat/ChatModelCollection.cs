using Xunit;

namespace Jamba.Inference.Tests.Chat;

/// <summary>The tests that share one <see cref="ChatModelFixture"/> (the tiny checkpoint with the Jamba Mini 1.7 template).</summary>
[CollectionDefinition(Name)]
public sealed class ChatModelCollection : ICollectionFixture<ChatModelFixture>
{
    public const string Name = "chat model";
}
