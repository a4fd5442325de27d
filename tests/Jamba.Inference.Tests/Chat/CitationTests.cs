using System.Text.Json.Nodes;
using Jamba.Inference.Chat;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Xunit;

namespace Jamba.Inference.Tests.Chat;

/// <summary>The citation section of the answer: parsed, kept out of the streamed text, reported as citations.</summary>
public sealed class CitationTests
{
    /// <summary>An assistant turn as the 1.7 template renders it (recorded case documents_with_citation_mode).</summary>
    private static string RecordedAnswer()
    {
        var cases = JsonNode.Parse(File.ReadAllText(Path.Combine(RepositoryPaths.ChatTemplates, "jamba-mini-1.7", "cases.json")))!.AsArray();
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
    public void RecordedCitationSectionParses()
    {
        string answer = RecordedAnswer();
        Assert.Equal(" A hybrid SSM-Transformer model.<citations>[0, 1]</citations>", answer);
        Assert.True(JambaCitations.TryParse(answer, out var cleaned, out var ids));
        Assert.Equal(" A hybrid SSM-Transformer model.", cleaned);
        Assert.Equal([0, 1], ids);
    }

    [Theory]
    [InlineData("Answer.<citations>[]</citations>", "Answer.", new int[0])]
    [InlineData("Answer. <citations>[2, 0, 2]</citations>\n", "Answer.", new[] { 2, 0 })]
    [InlineData("Answer.<citations>['1', \"3\"]</citations>", "Answer.", new[] { 1, 3 })]
    [InlineData("Answer.<citations>0, 1", "Answer.", new[] { 0, 1 })]
    [InlineData("{\"a\": 1}<citations>[1]</citations>", "{\"a\": 1}", new[] { 1 })]
    public void LenientForms(string text, string cleaned, int[] ids)
    {
        Assert.True(JambaCitations.TryParse(text, out var c, out var parsed));
        Assert.Equal(cleaned, c);
        Assert.Equal(ids, parsed);
    }

    [Theory]
    [InlineData("No citations here.")]
    [InlineData("Bad <citations>[zero]</citations>")]
    [InlineData("Bad <citations>[1, 2</citations>")]
    public void MalformedOrMissingSectionsAreNotCitations(string text)
    {
        Assert.False(JambaCitations.TryParse(text, out var cleaned, out var ids));
        Assert.Equal(text, cleaned);
        Assert.Null(ids);
    }

    public static TheoryData<int> PieceLengths() => new() { 1, 2, 3, 5, 7, 13, 1000 };

    [Theory]
    [MemberData(nameof(PieceLengths))]
    public async Task StreamedTextNeverShowsTheMarkupAndTheResponseCarriesCitations(int pieceLength)
    {
        var script = new ScriptedGenerator([RecordedAnswer(), RecordedAnswer()], pieceLength);
        using var client = script.CreateClient();
        var options = new ChatOptions().WithDocuments(Docs).WithCitations();
        List<ChatMessage> ask = [new(ChatRole.User, "What is Jamba?")];

        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync(ask, options))
        {
            Assert.DoesNotContain("<", u.Text);
            updates.Add(u);
        }
        Assert.Equal("A hybrid SSM-Transformer model.", string.Concat(updates.Select(u => u.Text)));
        Assert.All(updates.SkipLast(1), u => Assert.Empty(u.GetCitations()));
        var expected = new[] { new JambaCitation(0, "arch", "Jamba architecture"), new JambaCitation(1, "ctx", "Context length") };
        Assert.Equal(expected, updates[^1].GetCitations());
        Assert.Contains("## Citation Mode", script.Prompts[0]);

        var response = await client.GetResponseAsync(ask, options);
        Assert.Equal("A hybrid SSM-Transformer model.", response.Text);
        Assert.Equal(expected, response.GetCitations());
        var annotations = response.Messages.SelectMany(m => m.Contents).SelectMany(c => c.Annotations ?? []).OfType<CitationAnnotation>().ToList();
        Assert.Equal(["arch", "ctx"], annotations.Select(a => a.FileId));
        Assert.Equal(["Jamba architecture", "Context length"], annotations.Select(a => a.Title));

        // The answer goes back into the conversation with its citations, rendered as the template renders them.
        var formatter = client.GetService<JambaChatFormatter>()!;
        var next = formatter.Format([.. ask, .. response.Messages, new ChatMessage(ChatRole.User, "And?")], options);
        Assert.Contains("<|assistant|> A hybrid SSM-Transformer model.<citations>[0, 1]</citations><|eom|>", next.Text);
    }

    [Fact]
    public async Task MalformedSectionIsReleasedAsTextWithAWarning()
    {
        var logger = new ListLogger();
        var script = new ScriptedGenerator([" Yes.<citations>[first]</citations>"], 4);
        using var client = script.CreateClient(logger: logger);
        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Q")], new ChatOptions().WithDocuments(Docs).WithCitations());
        Assert.Equal("Yes.<citations>[first]</citations>", response.Text);
        Assert.Empty(response.GetCitations());
        Assert.Contains(logger.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("citation"));
    }

    [Fact]
    public async Task TextResemblingTheTagIsNotHeldForever()
    {
        var script = new ScriptedGenerator([" a <cite> b <citation c"], 1);
        using var client = script.CreateClient();
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "Q")], new ChatOptions().WithCitations())) updates.Add(u);
        Assert.Equal("a <cite> b <citation c", string.Concat(updates.Select(u => u.Text)));
        Assert.Empty(updates[^1].GetCitations());
    }

    [Fact]
    public void ParserHoldsBackAPartialOpeningTag()
    {
        var parser = new ChatOutputParser(ToolCallFormat.JambaToolCalls, parseCitations: true);
        Assert.Equal("Done.", string.Concat(parser.Push(" Done.<cit").OfType<TextContent>().Select(t => t.Text)));
        Assert.Empty(parser.Push("ations>[2"));
        Assert.Empty(parser.Push("]</citations>"));
        Assert.Empty(parser.Complete());
        Assert.Equal([2], parser.CitedDocumentIndexes);
    }
}
