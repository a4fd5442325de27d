using System.Text.Json.Nodes;
using Jamba.Inference.Chat;
using Jamba.Inference.Templates;
using Microsoft.Extensions.AI;
using Xunit;
using TextContent = Microsoft.Extensions.AI.TextContent;

namespace Jamba.Inference.Tests.Chat;

/// <summary>Documents, knobs and past citations from typed MEAI inputs, checked byte for byte against the recorded jinja2 renderings.</summary>
public sealed class RagFormattingTests
{
    private static readonly string[] Folders = ["jamba-1.5", "jamba-mini-1.7"];

    private static IEnumerable<JsonObject> Cases(string folder) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(RepositoryPaths.ChatTemplates, folder, "cases.json")))!.AsArray().Select(c => c!.AsObject());

    private static bool IsRag(JsonObject c) =>
        c["documents"] is JsonArray { Count: > 0 } || c["kwargs"]?["knobs"] is not null
        || c["messages"]!.AsArray().Any(m => m!["citations"] is not null);

    /// <summary>Every recorded case of the Jamba 1.5+ templates with documents, knobs or citations (discovered, not hand-picked).</summary>
    public static TheoryData<string, string> RagCases()
    {
        var data = new TheoryData<string, string>();
        foreach (var folder in Folders)
            foreach (var c in Cases(folder))
                if (IsRag(c) && c["expected"] is not null) data.Add(folder, (string)c["name"]!);
        return data;
    }

    /// <summary>The case's inputs as a typed MEAI request: messages (past citations as annotations), documents, citation and JSON mode.</summary>
    private static (List<ChatMessage> Messages, ChatOptions Options) ToMeai(JsonObject c)
    {
        var messages = new List<ChatMessage>();
        foreach (var m in c["messages"]!.AsArray())
        {
            var role = new ChatRole((string)m!["role"]!);
            var text = new TextContent((string)m["content"]!);
            if (m["citations"] is JsonArray cited)
                text.Annotations = JambaCitations.ToAnnotations(cited.Select(x => new JambaCitation((int)x!["document_id"]!, null, null)));
            messages.Add(new ChatMessage(role, [text]));
        }
        var options = new ChatOptions();
        if (c["documents"] is JsonArray docs && docs.Count > 0)
        {
            options.WithDocuments(docs.Select(d =>
            {
                var o = d!.AsObject();
                var fields = o.Where(kv => kv.Key is not ("title" or "text")).ToDictionary(kv => kv.Key, kv => (object?)kv.Value?.DeepClone());
                return new JambaDocument((string)o["text"]!, (string?)o["title"]) { Fields = fields.Count == 0 ? null : fields };
            }));
        }
        if (c["kwargs"]?["knobs"] is JsonObject knobs)
        {
            if ((string?)knobs["citation_mode"] == "fast") options.WithCitations();
            if ((string?)knobs["response_format"] == "json_object") options.WithJsonMode();
        }
        return (messages, options);
    }

    [Theory]
    [MemberData(nameof(RagCases))]
    public void TypedRequestRendersExactlyAsRecorded(string folder, string name)
    {
        var c = Cases(folder).Single(x => (string)x["name"]! == name);
        var formatter = new JambaChatFormatter(ToolCallParserTests.LoadTemplate(folder), (string?)c["bos_token"], (string?)c["eos_token"]);
        var (messages, options) = ToMeai(c);
        var prompt = formatter.Format(messages, options);
        Assert.Equal((string)c["expected"]!, prompt.Text);
        Assert.Equal(c["documents"] is JsonArray { Count: > 0 } d ? d.Count : 0, prompt.Documents.Count);
        Assert.False(prompt.DocumentsRenderedPlain);
        Assert.Equal((string?)c["kwargs"]?["knobs"]?["citation_mode"] == "fast" ? JambaCitationMode.Fast : JambaCitationMode.Off, prompt.CitationMode);
    }

    [Fact]
    public void RagCasesAreDiscovered() => Assert.True(RagCases().Count() >= 6);

    [Fact]
    public void RawJsonDocumentsRenderLikeTypedOnes()
    {
        var c = Cases("jamba-mini-1.7").Single(x => (string)x["name"]! == "documents_rag");
        var formatter = new JambaChatFormatter(ToolCallParserTests.LoadTemplate("jamba-mini-1.7"), "<|startoftext|>", "<|endoftext|>");
        var options = new ChatOptions { AdditionalProperties = new() { ["documents"] = System.Text.Json.JsonDocument.Parse(c["documents"]!.ToJsonString()).RootElement } };
        var prompt = formatter.Format([new ChatMessage(ChatRole.User, "How long is Jamba's context window?")], options);
        Assert.Equal((string)c["expected"]!, prompt.Text);
        Assert.Equal(["Jamba architecture", "Context length"], prompt.Documents.Select(d => d.Title));
        Assert.Equal(2, options.GetDocuments().Count);
    }

    [Fact]
    public void PastCitationsWithoutKnobsDoNotBreakThe17Template()
    {
        // HF raises "'knobs' is undefined" here (error_citations_without_knobs); the formatter passes knobs.is_set = false instead,
        // so the 1.7 template leaves the citations out and 1.5 (which ignores knobs for citations) renders them as recorded.
        var answer = new ChatMessage(ChatRole.Assistant, "A.") { AdditionalProperties = new() { ["citations"] = new[] { 0 } } };
        List<ChatMessage> messages = [new(ChatRole.User, "Q?"), answer, new(ChatRole.User, "More?")];
        var f17 = new JambaChatFormatter(ToolCallParserTests.LoadTemplate("jamba-mini-1.7"), "<|startoftext|>", "<|endoftext|>");
        Assert.Equal("<|startoftext|><|bom|><|system|> <|eom|><|bom|><|user|> Q?<|eom|><|bom|><|assistant|> A.<|eom|><|bom|><|user|> More?<|eom|><|bom|><|assistant|>", f17.Format(messages).Text);

        var c = Cases("jamba-1.5").Single(x => (string)x["name"]! == "citations_without_knobs_render");
        var f15 = new JambaChatFormatter(ToolCallParserTests.LoadTemplate("jamba-1.5"), "<|startoftext|>", "<|endoftext|>");
        answer.AdditionalProperties["citations"] = new[] { 0, 2 };
        Assert.Equal((string)c["expected"]!, f15.Format(messages).Text);
    }

    [Fact]
    public void KnobsObjectIsPassedVerbatimAndWins()
    {
        var formatter = new JambaChatFormatter(ToolCallParserTests.LoadTemplate("jamba-mini-1.7"), "<|startoftext|>");
        var options = new ChatOptions { ResponseFormat = ChatResponseFormat.Json, AdditionalProperties = new() { ["knobs"] = new Dictionary<string, object?> { ["is_set"] = true, ["citation_mode"] = "fast" } } };
        var prompt = formatter.Format([new ChatMessage(ChatRole.User, "Q")], options);
        Assert.Contains("## Citation Mode", prompt.Text);
        Assert.DoesNotContain("## JSON Mode", prompt.Text);
        Assert.Equal(JambaCitationMode.Fast, prompt.CitationMode);
        Assert.Throws<ArgumentException>(() => formatter.Format([new ChatMessage(ChatRole.User, "Q")], new ChatOptions { AdditionalProperties = new() { ["citation_mode"] = "slow" } }));
    }

    [Theory]
    [InlineData("jamba-reasoning-3b")]
    [InlineData(null)]
    public void TemplatesWithoutDocumentsGetThePlainFormatInTheSystemMessage(string? folder)
    {
        var template = folder is null ? ChatTemplate.PlainFallback : ToolCallParserTests.LoadTemplate(folder);
        var formatter = new JambaChatFormatter(template, "<|startoftext|>");
        Assert.False(formatter.SupportsDocuments);
        var docs = new[]
        {
            new JambaDocument("Alpha text.", "Alpha", Id: "a"),
            new JambaDocument("Beta text.", Id: "b") { Fields = new Dictionary<string, object?> { ["source-url"] = "https://x", ["year"] = 2024, ["tags"] = new[] { "x", "y" }, ["ok"] = true } },
        };
        const string block = "# Documents\n\nYou can use the following documents for reference:\n\n## Document ID: 0\nTitle: Alpha\nText: Alpha text.\n\n"
            + "## Document ID: 1\nSource-Url: https://x\nYear: 2024\nTags: ['x', 'y']\nOk: True\nText: Beta text.";
        Assert.Equal(block, JambaDocument.RenderPlain(docs.Select(d => d.ToTemplateObject())));

        var options = new ChatOptions().WithDocuments(docs).WithCitations();
        var prompt = formatter.Format([new ChatMessage(ChatRole.System, "Be brief."), new ChatMessage(ChatRole.User, "Q?")], options);
        var expectedMessages = new JsonArray(
            new JsonObject { ["role"] = "system", ["content"] = block + "\n\n## Citation Mode\n\nProvide a list of references only for the documents you base your response on. Format your response with the original answer followed by a citation section. Use this template: `{answer}<citations>DOCUMENT_IDS</citations>`, where DOCUMENT_IDS are the relevant document numbers (e.g. [2, 5, 9]), or [] if the answer cannot be supported by the provided documents.\n\nBe brief." },
            new JsonObject { ["role"] = "user", ["content"] = "Q?" });
        Assert.Equal(template.Render(expectedMessages, null, null, true, "<|startoftext|>"), prompt.Text);
        Assert.True(prompt.DocumentsRenderedPlain);
        Assert.Equal(JambaCitationMode.Fast, prompt.CitationMode);

        // Without a system message the documents become one.
        var bare = formatter.Format([new ChatMessage(ChatRole.User, "Q?")], new ChatOptions().WithDocuments(docs));
        Assert.Equal(template.Render(new JsonArray(new JsonObject { ["role"] = "system", ["content"] = block }, new JsonObject { ["role"] = "user", ["content"] = "Q?" }), null, null, true, "<|startoftext|>"), bare.Text);
    }
}
