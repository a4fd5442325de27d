using System.Text.Json.Nodes;
using Jamba.Inference.Chat;
using Jamba.Inference.Engine;
using Jamba.Inference.Modeling;
using Jamba.Inference.Templates;
using Jamba.Inference.Tests.Fixtures;
using Jamba.Inference.Tests.Templates;
using Jamba.Inference.Tests.Tokenization;
using Jamba.Inference.Tokenization;
using Xunit;

namespace Jamba.Inference.Tests;

/// <summary>The session layer's chat setup: end-of-turn markers read off each real template, made once per loaded model.</summary>
public sealed class ChatSetupTests : IClassFixture<TextModelFixture>
{
    private readonly TextModelFixture _fx;

    public ChatSetupTests(TextModelFixture fx) => _fx = fx;

    private static JambaTokenizer TestTokenizer() => JambaTokenizer.FromSentencePiece(
        File.ReadAllBytes(Path.Combine(TokenizerTestData.Dir, "tokenizer.model")), TokenizerTestData.ReadText("tokenizer_config.json"));

    public static TheoryData<string> TemplateFolders()
    {
        var data = new TheoryData<string>();
        foreach (var f in ChatTemplateFixtureTests.FixtureFolders()) data.Add(f);
        return data;
    }

    /// <summary>In every jinja2 rendering of the fixture that has an assistant turn followed by more text, what follows the
    /// assistant's content starts with the detected end-of-turn marker (a token of the tokenizer or a stop string).</summary>
    [Theory]
    [MemberData(nameof(TemplateFolders))]
    public void TheEndOfTurnMarkerIsWhatTheTemplateWritesAfterAnAssistantTurn(string folder)
    {
        var tokenizer = TestTokenizer();
        var setup = ChatSetup.Create(ChatTemplate.Parse(File.ReadAllText(Path.Combine(folder, "template.jinja"))), tokenizer);
        var markers = setup.EndOfTurnTokenIds.Select(id => tokenizer.IdToToken(id)!).Concat(setup.EndOfTurnStrings).ToList();
        Assert.True(markers.Count <= 1, string.Join(", ", markers));
        int checkedTurns = 0;
        foreach (var c in JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "cases.json")))!.AsArray())
        {
            if (c!["expected"]?.GetValue<string>() is not { } expected) continue;
            var messages = c["messages"]!.AsArray();
            for (int i = 0; i < messages.Count - 1; i++)
            {
                if (messages[i]!["role"]?.GetValue<string>() != "assistant" || messages[i]!["content"] is not JsonValue v
                    || !v.TryGetValue<string>(out var content) || content.Trim().Length < 8 || messages[i]!.AsObject().Count != 2) continue; // role and content only
                int at = expected.IndexOf(content.Trim(), StringComparison.Ordinal);
                if (at < 0) continue;
                string after = expected[(at + content.Trim().Length)..].TrimStart(' ', '\t');
                if (markers.Count == 1) Assert.StartsWith(markers[0], after);
                checkedTurns++;
            }
        }
        // Every Jamba chat template has a marker ending assistant turns, and its cases show it.
        Assert.Single(markers);
        Assert.True(checkedTurns > 0, "no case of this fixture has an assistant turn followed by more text");
    }

    [Fact]
    public void TheEndOfTurnIsATokenWhenTheTokenizerHasOneAndAStringOtherwise()
    {
        var tokenizer = TestTokenizer();
        var withToken = ChatSetup.Create(ChatTemplate.Parse("{% for m in messages %}<|bom|>{{ m.content }}<|eom|>\n{% endfor %}"), tokenizer);
        Assert.Equal([tokenizer.TokenToId("<|eom|>")!.Value], withToken.EndOfTurnTokenIds);
        Assert.Empty(withToken.EndOfTurnStrings);
        var withString = ChatSetup.Create(ChatTemplate.Parse("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"), tokenizer);
        Assert.Empty(withString.EndOfTurnTokenIds);
        Assert.Equal(["<|im_end|>"], withString.EndOfTurnStrings);
        var plain = ChatSetup.Create(ChatTemplate.PlainFallback, tokenizer);
        Assert.Empty(plain.EndOfTurnTokenIds);
        Assert.Empty(plain.EndOfTurnStrings);
    }

    [Fact]
    public async Task OneSetupPerLoadedModelSharedByItsCallers()
    {
        var registry = new JambaModelRegistry();
        using var a = await registry.LoadAsync(_fx.Folder, new ModelLoadOptions { Model = { DType = ComputeDType.Float32 } });
        using var b = await registry.LoadAsync(_fx.Folder, new ModelLoadOptions { Model = { DType = ComputeDType.Float32 } });
        var setup = ChatSetup.For(a);
        Assert.Same(setup, ChatSetup.For(b));
        var tokens = setup.EncodeSingleTurn("Hello", "Be brief.");
        Assert.Equal(a.Tokenizer!.Encode(setup.Template.Render(
            new JsonArray { new JsonObject { ["role"] = "system", ["content"] = "Be brief." }, new JsonObject { ["role"] = "user", ["content"] = "Hello" } },
            addGenerationPrompt: true, bosToken: setup.BosToken, eosToken: setup.EosToken), addSpecialTokens: false), tokens);
        using var client = new JambaChatClient(a);
        Assert.Same(setup.Template, client.GetService(typeof(ChatTemplate)));
    }
}
