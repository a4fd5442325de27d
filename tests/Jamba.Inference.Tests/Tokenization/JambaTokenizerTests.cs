using Jamba.Inference.Tokenization;
using Xunit;
using static Jamba.Inference.Tests.Tokenization.TokenizerTestData;

namespace Jamba.Inference.Tests.Tokenization;

[Trait("Category", "Tokenizer")]
public sealed class JambaTokenizerTests
{
    public static TheoryData<string> Loaders => new() { "json", "model", "json-array-merges", "model-no-config", "json-no-config" };

    private static JambaTokenizer Make(string loader) => loader switch
    {
        "json" => JsonTokenizer(),
        "model" => ModelTokenizer(),
        "json-array-merges" => JambaTokenizer.FromTokenizerJson(ArrayMergesJson(), TokenizerConfig),
        "model-no-config" => JambaTokenizer.FromSentencePiece(ModelBytes),
        "json-no-config" => JambaTokenizer.FromTokenizerJson(TokenizerJson),
        _ => throw new ArgumentException(loader),
    };

    [Fact]
    public void TestDataIsPresentAndSmall()
    {
        Assert.True(new FileInfo(Path.Combine(Dir, "tokenizer.model")).Length < 1_000_000);
        Assert.True(Cases.Count >= 30);
        Assert.True(SpecialCases.Count >= 10);
    }

    [Theory]
    [MemberData(nameof(Loaders))]
    public void EncodeMatchesSentencePiece(string loader)
    {
        var tok = Make(loader);
        var failures = new List<string>();
        foreach (var c in PlainCases)
        {
            foreach (bool parse in new[] { true, false })
            {
                var ids = tok.Encode(c.Text, addSpecialTokens: false, parseSpecialTokens: parse);
                if (!ids.SequenceEqual(c.Ids))
                    failures.Add($"{c} parse={parse}: expected [{string.Join(",", c.Ids)}] got [{string.Join(",", ids)}]");
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Theory]
    [MemberData(nameof(Loaders))]
    public void PiecesMatchSentencePiece(string loader)
    {
        var tok = Make(loader);
        foreach (var c in PlainCases)
            Assert.Equal(c.Pieces, c.Ids.Select(id => tok.IdToToken(id)!).ToArray());
    }

    [Theory]
    [MemberData(nameof(Loaders))]
    public void DecodeMatchesSentencePiece(string loader)
    {
        var tok = Make(loader);
        foreach (var c in Cases) Assert.Equal(c.Decoded, tok.Decode(c.Ids));
        foreach (var c in PlainCases) Assert.Equal(c.Decoded, tok.Decode(c.Ids, skipSpecialTokens: true));
    }

    [Theory]
    [MemberData(nameof(Loaders))]
    public void RoundTripsPlainText(string loader)
    {
        var tok = Make(loader);
        // (a literal "▁" in the input decodes as a space, in SentencePiece too)
        foreach (var c in PlainCases.Where(c => !c.Text.Contains('\u2581')))
            Assert.Equal(c.Text, tok.Decode(tok.Encode(c.Text), skipSpecialTokens: true));
    }

    [Theory]
    [InlineData("json")]
    [InlineData("model")]
    public void AddsBosWhenAskedTo(string loader)
    {
        var tok = Make(loader);
        Assert.True(tok.AddBosToken);
        Assert.False(tok.AddEosToken);
        var c = Cases.First(x => x.Text == "Hello world");
        Assert.Equal(new[] { 1 }.Concat(c.Ids), tok.Encode(c.Text));
        Assert.Equal(new[] { 1 }, tok.Encode(""));
        Assert.Empty(tok.Encode("", addSpecialTokens: false));
        Assert.Equal("<|startoftext|> Hello world", tok.Decode(tok.Encode(c.Text)));
        Assert.Equal("Hello world", tok.Decode(tok.Encode(c.Text), skipSpecialTokens: true));
    }

    [Theory]
    [InlineData("json")]
    [InlineData("model")]
    public void TokenizerConfigControlsBosAndEos(string loader)
    {
        string cfg = TokenizerConfig.Replace("\"add_bos_token\": true", "\"add_bos_token\": false").Replace("\"add_eos_token\": false", "\"add_eos_token\": true");
        var tok = loader == "json" ? JsonTokenizer(cfg) : ModelTokenizer(cfg);
        Assert.False(tok.AddBosToken);
        Assert.True(tok.AddEosToken);
        var c = Cases.First(x => x.Text == "Hello world");
        Assert.Equal(c.Ids.Concat(new[] { 2 }), tok.Encode(c.Text));
    }

    [Theory]
    [MemberData(nameof(Loaders))]
    public void SpecialIdsAndVocabulary(string loader)
    {
        var tok = Make(loader);
        Assert.Equal(1500, tok.VocabSize);
        Assert.Equal(1, tok.BosTokenId);
        if (loader == "json-no-config")
        {
            // tokenizer.json alone names no EOS token (HF reads it from tokenizer_config.json)
            Assert.Null(tok.EosTokenId);
            Assert.Empty(tok.EosTokenIds);
        }
        else
        {
            Assert.Equal(2, tok.EosTokenId);
            Assert.Equal(new[] { 2 }, tok.EosTokenIds);
        }
        Assert.Equal(3, tok.UnkTokenId is null && loader.StartsWith("json") ? 3 : tok.UnkTokenId);
        Assert.Equal(7, tok.TokenToId("<|bom|>"));
        Assert.Equal(9, tok.TokenToId("<tool_calls>"));
        Assert.Equal("<|eom|>", tok.IdToToken(8));
        Assert.Equal("<0x0A>", tok.IdToToken(tok.TokenToId("<0x0A>")!.Value));
        Assert.Equal("▁The", tok.IdToToken(tok.TokenToId("▁The")!.Value));
        Assert.Null(tok.TokenToId("definitely-not-a-token"));
        Assert.Null(tok.IdToToken(1500));
        Assert.Null(tok.IdToToken(-1));
        Assert.Contains("<|startoftext|>", tok.SpecialTokens);
        Assert.Contains("<|endoftext|>", tok.SpecialTokens);
        Assert.Contains(4, tok.SpecialTokenIds);
        Assert.DoesNotContain(9, tok.SpecialTokenIds);
        Assert.DoesNotContain("<tool_calls>", tok.SpecialTokens);
        if (!loader.EndsWith("no-config"))
        {
            Assert.Equal(0, tok.PadTokenId);
            Assert.Equal(3, tok.UnkTokenId);
            Assert.Contains("<|bom|>", tok.SpecialTokens); // marked special by tokenizer_config.json
            Assert.True(tok.IsSpecialToken(7));
        }
    }

    public static TheoryData<SpecialCase> Specials => new(SpecialCases);

    [Theory]
    [MemberData(nameof(Specials))]
    public void AddedTokensLegacyLayout(SpecialCase c)
    {
        // legacy=true (default): every segment after an added token gets the dummy prefix, as in HF.
        Assert.Equal(c.Legacy, JsonTokenizer().Encode(c.Text, addSpecialTokens: false));
        Assert.Equal(c.Legacy, ModelTokenizer().Encode(c.Text, addSpecialTokens: false));
        Assert.Equal(c.Legacy, JambaTokenizer.FromTokenizerJson(ArrayMergesJson(), TokenizerConfig).Encode(c.Text, addSpecialTokens: false));
    }

    [Theory]
    [MemberData(nameof(Specials))]
    public void AddedTokensFirstPrefixLayout(SpecialCase c)
    {
        // Metaspace prepend_scheme "first" / legacy=false: only text at offset 0 gets the dummy prefix.
        var json = JambaTokenizer.FromTokenizerJson(MetaspaceJson(), TokenizerConfig);
        var model = ModelTokenizer(ConfigWithLegacy(false));
        Assert.Equal(c.First, json.Encode(c.Text, addSpecialTokens: false));
        Assert.Equal(c.First, model.Encode(c.Text, addSpecialTokens: false));
        // and in this layout text round-trips through the chat-template tokens
        Assert.Equal(c.Text, json.Decode(json.Encode(c.Text, addSpecialTokens: false)));
        Assert.Equal(c.Text, model.Decode(model.Encode(c.Text, addSpecialTokens: false)));
    }

    [Fact]
    public void WithoutUserSymbolAtStartFirstLayoutEqualsSentencePiece()
    {
        // SentencePiece itself treats user-defined symbols (<|bom|>, <|eom|>, <tool_calls>) as atomic
        // without re-adding the dummy prefix: that is the "first" layout, unless the text starts with one
        // (there spm adds a lone "▁" before it).
        var model = ModelTokenizer(ConfigWithLegacy(false));
        foreach (var c in SpecialCases.Where(c => c.Text.Contains("<|bom|>") && !c.Text.StartsWith('<') && !c.Text.Contains("<|startoftext|>") && !c.Text.Contains("<|endoftext|>")))
            Assert.Equal(c.Spm, model.Encode(c.Text, addSpecialTokens: false));
    }

    [Theory]
    [InlineData("json")]
    [InlineData("model")]
    public void SpecialTokensAreTextWhenNotParsed(string loader)
    {
        var tok = Make(loader);
        var c = SpecialCases.First(x => x.Text.StartsWith("Control strings", StringComparison.Ordinal));
        // control tokens are plain text to spm_encode; with parseSpecialTokens=false we match it
        Assert.Equal(c.Spm, tok.Encode(c.Text, addSpecialTokens: false, parseSpecialTokens: false));
        Assert.NotEqual(c.Spm, tok.Encode(c.Text, addSpecialTokens: false, parseSpecialTokens: true));

        string chat = "<|bom|><|user|> Hi<|eom|> <tool_calls>[]</tool_calls>";
        var ids = tok.Encode(chat, addSpecialTokens: false, parseSpecialTokens: false);
        Assert.DoesNotContain(7, ids);
        Assert.DoesNotContain(5, ids);
        Assert.DoesNotContain(8, ids);
        Assert.Contains(9, ids);   // non-special added tokens are always matched (HF split_special_tokens)
        Assert.Contains(10, ids);
        // legacy layout: the segment after <tool_calls> gets its own "▁", which decodes as a space (as in HF)
        Assert.Equal(chat.Replace("<tool_calls>[", "<tool_calls> ["), tok.Decode(ids));
    }

    [Fact]
    public void LongestMatchFirst()
    {
        const string json = """
            {"model": {"type": "BPE", "byte_fallback": false, "fuse_unk": true, "unk_token": "<unk>",
              "vocab": {"<unk>": 0, "a": 1, "b": 2, "ab": 3, "<x>": 4, "<x><y>": 5, "<y>": 6, "▁": 7, "▁a": 8},
              "merges": ["a b", "▁ a"]},
             "added_tokens": [
              {"id": 4, "content": "<x>", "special": true},
              {"id": 5, "content": "<x><y>", "special": true},
              {"id": 6, "content": "<y>", "special": false}],
             "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
             "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}}
            """;
        var tok = JambaTokenizer.FromTokenizerJson(json);
        Assert.Equal(new[] { 5, 4, 7, 7, 3, 6 }, tok.Encode("<x><y><x> ab<y>"));
        Assert.Equal(new[] { 4, 7, 3, 5 }, tok.Encode("<x>ab<x><y>", parseSpecialTokens: true));
        // legacy Prepend normalizer: the segment after an added token gets its own "▁" (HF does the same)
        Assert.Equal("<x><y><x>  ab<y>", tok.Decode(tok.Encode("<x><y><x> ab<y>")));
        Assert.Equal(new[] { 8, 0, 2 }, tok.Encode("acdb")); // fuse_unk: "cd" is one <unk>
        Assert.Null(tok.BosTokenId);
        Assert.False(tok.AddBosToken);
    }

    [Fact]
    public void MetaspaceFirstLayoutOnPlainText()
    {
        var legacy = JsonTokenizer();
        var meta = JambaTokenizer.FromTokenizerJson(MetaspaceJson(), TokenizerConfig);
        foreach (var c in PlainCases)
        {
            // Metaspace does not prepend "▁" to text that already starts with a space (or "▁").
            if (c.Text == " " || c.Text == "  ") continue;
            var expected = c.Text.StartsWith(' ') || c.Text.StartsWith('\u2581') ? legacy.Encode(c.Text[1..], addSpecialTokens: false) : c.Ids;
            Assert.Equal(expected, meta.Encode(c.Text, addSpecialTokens: false));
        }
    }

    [Fact]
    public void MetaspaceSplitLayout()
    {
        // split=true: BPE per "▁word"; equal to spm where no piece spans several "▁".
        var meta = JambaTokenizer.FromTokenizerJson(MetaspaceJson(split: true, scheme: "always"), TokenizerConfig);
        foreach (var c in PlainCases.Where(c => !c.Text.Contains("  ") && !c.Text.StartsWith(' ') && !c.Text.Contains('\u2581') && !c.Text.EndsWith(' ')))
            Assert.Equal(c.Ids, meta.Encode(c.Text, addSpecialTokens: false));
        Assert.Equal(new[] { tok(meta, "▁"), tok(meta, "▁a") }, meta.Encode("  a", addSpecialTokens: false));
        Assert.Equal(new[] { tok(meta, "▁a"), tok(meta, "▁"), tok(meta, "▁"), tok(meta, "▁a") }, meta.Encode("a   a", addSpecialTokens: false));

        static int tok(JambaTokenizer t, string s) => t.TokenToId(s)!.Value;
    }

    [Fact]
    public void LongTextIsFastAndLoadersAgree()
    {
        var text = string.Concat(Enumerable.Repeat(string.Join("\n", PlainCases.Where(c => !c.Text.Contains('\u2581')).Select(c => c.Text)), 40));
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var a = JsonTokenizer().Encode(text, parseSpecialTokens: false);
        var b = ModelTokenizer().Encode(text, parseSpecialTokens: false);
        Assert.Equal(a, b);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20), sw.Elapsed.ToString());
        Assert.Equal(text, JsonTokenizer().Decode(a, skipSpecialTokens: true));
    }

    [Fact]
    public void OutOfRangeIdsAreIgnoredByDecode()
    {
        var tok = JsonTokenizer();
        var ids = tok.Encode("Hello world", addSpecialTokens: false).ToList();
        ids.Insert(1, 65535);
        ids.Insert(0, -5);
        Assert.Equal("Hello world", tok.Decode(ids));
    }
}
