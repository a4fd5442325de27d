using System.Text;
using Jamba.Inference.Tokenization;
using Xunit;
using static Jamba.Inference.Tests.Tokenization.TokenizerTestData;

namespace Jamba.Inference.Tests.Tokenization;

[Trait("Category", "Tokenizer")]
public sealed class StreamingDetokenizerTests
{
    private static IEnumerable<(string Name, JambaTokenizer Tok)> Tokenizers()
    {
        yield return ("json", JsonTokenizer());
        yield return ("model", ModelTokenizer());
        yield return ("json-metaspace", JambaTokenizer.FromTokenizerJson(MetaspaceJson(), TokenizerConfig));
        yield return ("model-nonlegacy", ModelTokenizer(ConfigWithLegacy(false)));
    }

    private static IEnumerable<int[]> IdSequences(JambaTokenizer tok)
    {
        foreach (var c in Cases)
        {
            yield return c.Ids;
            yield return tok.Encode(c.Text).ToArray();
            yield return tok.Encode(c.Text, addSpecialTokens: true, parseSpecialTokens: false).ToArray();
        }
        foreach (var c in SpecialCases)
        {
            yield return c.Legacy;
            yield return c.First;
            yield return new[] { 1 }.Concat(c.First).Concat(new[] { 2 }).ToArray();
        }
        // chat-like concatenation of everything
        yield return Cases.SelectMany(c => new[] { 7 }.Concat(c.Ids).Concat(new[] { 8 })).ToArray();
        // broken byte sequences: lone continuation byte, truncated 4-byte char, invalid lead byte
        int B(byte b) => tok.TokenToId($"<0x{b:X2}>")!.Value;
        int W(string s) => tok.TokenToId(s)!.Value;
        yield return new[] { B(0x9F), W("▁a") };
        yield return new[] { W("▁a"), B(0xF0), B(0x9F), W("▁a"), B(0xF0), B(0x9F), B(0x98), B(0x80) };
        yield return new[] { B(0xF0), B(0x9F), B(0x98) };
        yield return new[] { B(0xFF), B(0xC3), B(0xA9), B(0xC3) };
        yield return new[] { B(0x20), W("▁▁"), W("▁a") };
        yield return new[] { W("▁"), W("▁a") };
        yield return new[] { W("▁▁▁"), W("▁a") };
    }

    [Fact]
    public void DeltasConcatenateToDecode()
    {
        foreach (var (name, tok) in Tokenizers())
        {
            foreach (var ids in IdSequences(tok))
            {
                foreach (bool skip in new[] { false, true })
                {
                    var d = tok.CreateStreamingDetokenizer(skip);
                    var sb = new StringBuilder();
                    foreach (int id in ids)
                    {
                        string delta = d.Append(id);
                        AssertWellFormed(delta, name, ids);
                        sb.Append(delta);
                    }
                    string tail = d.Flush();
                    AssertWellFormed(tail, name, ids);
                    sb.Append(tail);
                    Assert.True(tok.Decode(ids, skip) == sb.ToString(),
                        $"{name} skip={skip} ids=[{string.Join(",", ids)}]: decode={Esc(tok.Decode(ids, skip))} stream={Esc(sb.ToString())}");
                    Assert.Equal(ids.Length, d.TokenCount);
                    Assert.False(d.HasPendingBytes);
                }
            }
        }
    }

    [Fact]
    public void HoldsSplitCharactersUntilComplete()
    {
        var tok = JsonTokenizer();
        var c = Cases.First(x => x.Text.StartsWith("Emoji", StringComparison.Ordinal));
        var d = tok.CreateStreamingDetokenizer();
        var deltas = c.Ids.Select(d.Append).ToList();
        int first = Array.FindIndex(c.Ids, id => tok.IdToToken(id) == "<0xF0>");
        Assert.Equal("", deltas[first]);
        Assert.Equal("", deltas[first + 1]);
        Assert.Equal("", deltas[first + 2]);
        Assert.Equal("😀", deltas[first + 3]);
        Assert.Equal("", d.Flush());
        Assert.Equal(c.Text, string.Concat(deltas));
    }

    [Fact]
    public void LeadingSpaceOnlyStrippedOnce()
    {
        var tok = JsonTokenizer();
        var d = tok.CreateStreamingDetokenizer();
        Assert.Equal("Hello", d.Append(tok.TokenToId("▁H")!.Value) + d.Append(tok.TokenToId("ell")!.Value) + d.Append(tok.TokenToId("o")!.Value));
        Assert.Equal(" w", d.Append(tok.TokenToId("▁w")!.Value));

        // leading whitespace that is part of the text survives (" leading space" → "▁▁", …)
        var c = Cases.First(x => x.Text == "   three leading spaces");
        var d2 = tok.CreateStreamingDetokenizer();
        Assert.Equal("  ", d2.Append(c.Ids[0])); // "▁▁▁" → one space is the dummy prefix
        Assert.Equal(c.Text, "  " + string.Concat(c.Ids.Skip(1).Select(d2.Append)) + d2.Flush());

        // after BOS the space is kept (as HF decode does), unless special tokens are skipped
        var ids = tok.Encode("Hello world");
        Assert.Equal("<|startoftext|> Hello world", Stream(tok, ids, false));
        Assert.Equal("Hello world", Stream(tok, ids, true));
    }

    [Fact]
    public void IncompleteBytesFlushAsReplacementCharacters()
    {
        var tok = ModelTokenizer();
        var d = tok.CreateStreamingDetokenizer();
        Assert.Equal("", d.Append(tok.TokenToId("<0xE2>")!.Value));
        Assert.Equal("", d.Append(tok.TokenToId("<0x88>")!.Value));
        Assert.True(d.HasPendingBytes);
        Assert.Equal("\uFFFD\uFFFD", d.Flush());
        d.Reset();
        Assert.Equal("a", d.Append(tok.TokenToId("▁a")!.Value));
    }

    [Fact]
    public void UnknownIdsProduceNothing()
    {
        var tok = JsonTokenizer();
        var d = tok.CreateStreamingDetokenizer();
        Assert.Equal("", d.Append(70000));
        Assert.Equal("", d.Append(-1));
        Assert.Equal("a", d.Append(tok.TokenToId("▁a")!.Value));
    }

    private static string Stream(JambaTokenizer tok, IEnumerable<int> ids, bool skip)
    {
        var d = tok.CreateStreamingDetokenizer(skip);
        return string.Concat(ids.Select(d.Append)) + d.Flush();
    }

    private static void AssertWellFormed(string s, string name, int[] ids)
    {
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]))
            {
                Assert.True(i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]), $"{name}: split surrogate pair in delta for [{string.Join(",", ids)}]");
                i++;
            }
            else
            {
                Assert.False(char.IsLowSurrogate(s[i]), $"{name}: lone low surrogate for [{string.Join(",", ids)}]");
            }
        }
    }

    private static string Esc(string s) => System.Text.Json.JsonSerializer.Serialize(s);
}
