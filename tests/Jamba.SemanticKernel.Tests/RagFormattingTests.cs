using System.Text.Json.Nodes;
using Jamba.Inference.Chat;
using Microsoft.Extensions.AI;
using Microsoft.SemanticKernel;
using Xunit;

namespace Jamba.SemanticKernel.Tests;

/// <summary>Documents and knobs through SK's execution settings (the core's RAG formatting tests are in
/// Jamba.Inference.Tests/Chat/RagFormattingTests.cs).</summary>
public sealed class RagFormattingTests
{
    private static IEnumerable<JsonObject> Cases(string folder) => RecordedChatTemplates.Cases(folder).Select(c => c!.AsObject());

    [Fact]
    public void SemanticKernelSettingsCarryDocumentsAndKnobs()
    {
        var c = Cases("jamba-mini-1.7").Single(x => (string)x["name"]! == "documents_citation_and_json_mode");
        var settings = new JambaPromptExecutionSettings { CitationMode = "fast", ResponseFormat = "json_object" }
            .WithDocuments(c["documents"]!.AsArray().Select(d => JambaDocument.FromTemplateObject(d)));
        var options = settings.ToChatOptions(kernel: null);
        var formatter = new JambaChatFormatter(RecordedChatTemplates.Load("jamba-mini-1.7"), "<|startoftext|>", "<|endoftext|>");
        var prompt = formatter.Format([new ChatMessage(ChatRole.System, "Be precise."), new ChatMessage(ChatRole.User, "Summarise the documents.")], options);
        Assert.Equal((string)c["expected"]!, prompt.Text);

        // Through KernelArguments / JSON (a prompt config) too.
        var json = System.Text.Json.JsonSerializer.Serialize(settings);
        var fromJson = JambaPromptExecutionSettings.FromExecutionSettings(System.Text.Json.JsonSerializer.Deserialize<PromptExecutionSettings>(json));
        Assert.Equal("fast", fromJson.CitationMode);
        Assert.Equal((string)c["expected"]!, formatter.Format([new ChatMessage(ChatRole.System, "Be precise."), new ChatMessage(ChatRole.User, "Summarise the documents.")], fromJson.ToChatOptions(kernel: null)).Text);
        var args = new KernelArguments(settings);
        Assert.Same(settings, args.ExecutionSettings!.Values.Single());
    }
}
