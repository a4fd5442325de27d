using Jamba.Inference.Chat;
using Microsoft.SemanticKernel;
using Xunit;

namespace Jamba.SemanticKernel.Tests;

/// <summary>Citations through SK (the core's citation tests are in Jamba.Inference.Tests/Chat/CitationTests.cs).</summary>
public sealed class CitationTests
{
    /// <summary>An assistant turn as the 1.7 template renders it (recorded case documents_with_citation_mode).</summary>
    private static string RecordedAnswer()
    {
        var cases = RecordedChatTemplates.Cases("jamba-mini-1.7");
        string expected = (string)cases.Single(c => (string)c!["name"]! == "documents_with_citation_mode")!["expected"]!;
        int start = expected.IndexOf("<|assistant|> ", StringComparison.Ordinal) + "<|assistant|>".Length;
        int end = expected.IndexOf("<|eom|>", start, StringComparison.Ordinal);
        return expected[start..end]; // " A hybrid SSM-Transformer model.<citations>[0, 1]</citations>"
    }

    private static readonly JambaDocument[] Docs =
    [
        new("Jamba interleaves attention and Mamba layers.", "Jamba architecture", Id: "arch"),
        new("Jamba 1.5 models support a 256K-token context window.", "Context length", Id: "ctx"),
        new("Unrelated.", "Other", Id: "other"),
    ];

    [Fact]
    public async Task SemanticKernelMessagesCarryTheCitationsInTheirMetadata()
    {
        var script = new ScriptedGenerator([RecordedAnswer()], 4);
        using var service = new JambaChatCompletionService(script.CreateClient());
        var history = new Microsoft.SemanticKernel.ChatCompletion.ChatHistory();
        history.AddUserMessage("What is Jamba?");
        var settings = new JambaPromptExecutionSettings { CitationMode = "fast" }.WithDocuments(Docs);
        var message = (await service.GetChatMessageContentsAsync(history, settings)).Single();
        Assert.Equal("A hybrid SSM-Transformer model.", message.Content);
        Assert.Contains("## Citation Mode", script.Prompts[0]);
        var citations = Assert.IsAssignableFrom<IReadOnlyList<JambaCitation>>(message.Metadata![JambaCitations.AdditionalPropertiesKey]);
        // Through SK the documents travel as JSON (no caller ids): the citations name the document numbers and titles.
        Assert.Equal([new JambaCitation(0, null, "Jamba architecture"), new JambaCitation(1, null, "Context length")], citations);
    }
}
