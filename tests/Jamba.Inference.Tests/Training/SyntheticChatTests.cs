using Jamba.Inference.Chat;
using Jamba.Inference.Templates;
using Jamba.Inference.Tokenization;
using Jamba.Inference.Training;
using Microsoft.Extensions.AI;
using Xunit;

namespace Jamba.Inference.Tests;

/// <summary>The synthetic chat corpus: seeded, rendered through the real Jamba 1.7 template, loss on the assistant turns only.</summary>
[Trait("Category", "Training")]
public sealed class SyntheticChatTests
{
    private static readonly Lazy<ChatSetup> Setup = new(() =>
    {
        string folder = RepositoryPaths.ShippedModel; // the Jamba Mini 1.7 template and the 4,096-piece tokenizer
        var tokenizer = JambaTokenizer.Load(folder);
        return ChatSetup.Create(ChatTemplate.Parse(File.ReadAllText(Path.Combine(folder, "chat_template.jinja"))), tokenizer);
    });

    [Fact]
    public void TheSameSeedGivesTheSameCorpusAndAnotherSeedAnother()
    {
        var a = ChatCorpus.Encode(Setup.Value, new SyntheticChat(5).Generate(40));
        var b = ChatCorpus.Encode(Setup.Value, new SyntheticChat(5).Generate(40));
        var c = ChatCorpus.Encode(Setup.Value, new SyntheticChat(6).Generate(40));
        Assert.Equal(a.Tokens, b.Tokens);
        Assert.Equal(a.LossMask, b.LossMask);
        Assert.NotEqual(a.Tokens, c.Tokens);
    }

    [Fact]
    public void EveryFamilyRendersAndOnlyTheAssistantTurnsCarryLoss()
    {
        var conversations = new SyntheticChat(11).Generate(200);
        Assert.Equal(["chat", "document", "json", "tool_answer", "tool_call"], conversations.Select(c => c.Kind).Distinct().Order(StringComparer.Ordinal));
        var formatter = Setup.Value.CreateFormatter();
        var tok = Setup.Value.Tokenizer;
        foreach (var c in conversations.Take(60))
        {
            var encoded = ChatCorpus.Encode(Setup.Value, [c]);
            Assert.Equal(0, encoded.Skipped);
            // The unmasked prefix is exactly the prompt JambaChatClient sends for the conversation without its last turn.
            string prompt = formatter.Format(c.Messages.Take(c.Messages.Count - 1), c.Options).Text;
            int lastTarget = Array.LastIndexOf(encoded.LossMask, false, encoded.LossMask.Length - 1);
            var lastTurn = encoded.Tokens.Skip(lastTarget + 1).ToList();
            Assert.Equal(tok.Encode(prompt, addSpecialTokens: false), encoded.Tokens.Take(lastTarget + 1));
            string turn = tok.Decode(lastTurn, skipSpecialTokens: false);
            Assert.EndsWith("<|eom|>", turn);
            Assert.DoesNotContain("<|bom|>", turn);
            if (c.Kind == "tool_call")
            {
                Assert.True(turn.Replace(" ", "", StringComparison.Ordinal).StartsWith("<tool_calls>[", StringComparison.Ordinal), turn);
                // The learnt turn parses back into the conversation's calls.
                var parser = Setup.Value.CreateParser();
                var parsed = parser.Push(turn[..^"<|eom|>".Length]).Concat(parser.Complete()).OfType<FunctionCallContent>().ToList();
                var want = c.Messages[^1].Contents.OfType<FunctionCallContent>().ToList();
                Assert.Equal(want.Select(w => w.Name), parsed.Select(p => p.Name));
            }
            if (c.Kind == "document" && !c.Expected.StartsWith("The documents do not mention", StringComparison.Ordinal))
            {
                var docs = JambaChatFormatter.ReadDocuments(c.Options);
                Assert.Contains(docs, d => d.Text.Contains(c.Expected, StringComparison.Ordinal));
                Assert.Contains("The document says: \"" + c.Expected, turn);
            }
        }
    }

    [Fact]
    public void CopyDrillsCopyFromTheUserTurnAndLeaveTheOtherFamiliesAsTheyWere()
    {
        // Without drills the draws are the earlier ones, so a committed training command stays reproducible.
        Assert.Equal(new SyntheticChat(3).Generate(30).Select(c => c.Messages[^1].Text), new SyntheticChat(3).Generate(30, copyFraction: 0).Select(c => c.Messages[^1].Text));
        var drills = new SyntheticChat(8, ["The whale rose slowly out of the grey sea. Ahab watched it from the deck."]).Generate(300, copyFraction: 0.5);
        var copies = drills.Where(c => c.Kind == "copy").ToList();
        Assert.InRange(copies.Count, 110, 190);
        foreach (var c in copies)
        {
            string user = c.Messages[^2].Text, answer = c.Messages[^1].Text;
            Assert.Equal(ChatRole.User, c.Messages[^2].Role);
            // Every drill's answer carries a span of the user's message verbatim (beyond fixed phrasing).
            string core = answer.StartsWith("Nice to meet you, ", StringComparison.Ordinal) ? answer["Nice to meet you, ".Length..^1]
                : answer.StartsWith("You named ", StringComparison.Ordinal) ? answer["You named ".Length..^1]
                : answer.StartsWith("The ", StringComparison.Ordinal) && answer.Contains(" is ", StringComparison.Ordinal) ? answer[(answer.IndexOf(" is ", StringComparison.Ordinal) + 4)..^1]
                : answer.Trim('"');
            Assert.True(core.Length > 0 && user.Contains(core, StringComparison.Ordinal), $"{user} -> {answer}");
            Assert.Equal(0, ChatCorpus.Encode(Setup.Value, [c]).Skipped);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => new SyntheticChat(1).Generate(5, copyFraction: 1.5));
    }
}
