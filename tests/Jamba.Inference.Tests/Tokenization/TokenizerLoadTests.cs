using Jamba.Inference.Tokenization;
using Xunit;
using static Jamba.Inference.Tests.Tokenization.TokenizerTestData;

namespace Jamba.Inference.Tests.Tokenization;

[Trait("Category", "Tokenizer")]
public sealed class TokenizerLoadTests
{
    [Fact]
    public void FolderWithoutTokenizerFiles()
    {
        string dir = Folder(("config.json", "{}"));
        try
        {
            Assert.False(JambaTokenizer.TryLoad(dir, out var t));
            Assert.Null(t);
            Assert.Throws<FileNotFoundException>(() => JambaTokenizer.Load(dir));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void PrefersTokenizerJson()
    {
        string both = Folder(("tokenizer.json", TokenizerJson), ("tokenizer.model", ModelBytes), ("tokenizer_config.json", TokenizerConfig));
        string spmOnly = Folder(("tokenizer.model", ModelBytes), ("tokenizer_config.json", TokenizerConfig),
            ("generation_config.json", """{"bos_token_id": 1, "eos_token_id": [2, 8]}"""));
        string jsonOnly = Folder(("tokenizer.json", TokenizerJson));
        try
        {
            Assert.Equal(JambaTokenizerSource.TokenizerJson, JambaTokenizer.Load(both).Source);
            Assert.Equal(JambaTokenizerSource.TokenizerJson, JambaTokenizer.Load(jsonOnly).Source);
            Assert.True(JambaTokenizer.TryLoad(spmOnly, out var spm));
            Assert.Equal(JambaTokenizerSource.SentencePieceModel, spm.Source);
            Assert.Equal(new[] { 2, 8 }, spm.EosTokenIds);
            Assert.Equal(2, spm.EosTokenId);
            var c = Cases.First(x => x.Text.StartsWith("Emoji", StringComparison.Ordinal));
            Assert.Equal(c.Ids, JambaTokenizer.Load(both).Encode(c.Text, addSpecialTokens: false));
            Assert.Equal(c.Ids, spm.Encode(c.Text, addSpecialTokens: false));
            // json without config: BOS comes from the TemplateProcessing post-processor
            var j = JambaTokenizer.Load(jsonOnly);
            Assert.True(j.AddBosToken);
            Assert.Equal(new[] { 1 }.Concat(c.Ids), j.Encode(c.Text));
        }
        finally
        {
            Directory.Delete(both, true);
            Directory.Delete(spmOnly, true);
            Directory.Delete(jsonOnly, true);
        }
    }

    [Fact]
    public void MalformedFilesThrowTokenizerException()
    {
        Assert.Throws<JambaTokenizerException>(() => JambaTokenizer.FromTokenizerJson("{ not json"));
        Assert.Throws<JambaTokenizerException>(() => JambaTokenizer.FromTokenizerJson("""{"model": {"type": "Unigram", "vocab": []}}"""));
        Assert.Throws<JambaTokenizerException>(() => JambaTokenizer.FromTokenizerJson(
            """{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}}"""));
        Assert.Throws<JambaTokenizerException>(() => JambaTokenizer.FromSentencePiece(new byte[] { 0x0A, 0xFF, 0xFF }));
        Assert.Throws<JambaTokenizerException>(() => JambaTokenizer.FromTokenizerJson(TokenizerJson, "[1, 2]"));
    }
}
