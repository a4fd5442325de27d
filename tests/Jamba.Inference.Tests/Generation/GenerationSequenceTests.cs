using Jamba.Inference.Generation;
using Jamba.Inference.Tokenization;
using Jamba.Inference.Tests.Tokenization;
using Xunit;

namespace Jamba.Inference.Tests;

/// <summary>The per-sequence state machine on its own: synthetic logits in, updates out (no model, no engine).</summary>
public sealed class GenerationSequenceTests
{
    private const int Vocab = 16;
    private static readonly IReadOnlySet<int> Eos = new HashSet<int> { 2 };

    /// <summary>Logits whose argmax is <paramref name="token"/>.</summary>
    private static float[] Peak(int token)
    {
        var logits = new float[Vocab];
        logits[token] = 10f;
        return logits;
    }

    private static GenerationOptions Greedy(int max = 8) => new() { Temperature = 0, MaxNewTokens = max };

    [Fact]
    public void GreedyStepsEmitTheArgmaxUntilMaxNewTokens()
    {
        var seq = new GenerationSequence([1, 5], Greedy(3), Eos, null, 100);
        var a = seq.Next(Peak(7), 2);
        var b = seq.Next(Peak(9), 3);
        Assert.Equal((7, (FinishReason?)null), (a.TokenId!.Value, a.FinishReason));
        Assert.Equal(9, b.TokenId);
        Assert.Equal(9, seq.LastToken);
        var c = seq.Next(Peak(4), 4);
        Assert.Equal(FinishReason.Length, c.FinishReason);
        Assert.Equal(4, c.TokenId);
        Assert.Equal(new GenerationUsage(2, 3, 0), c.Usage);
        Assert.True(seq.IsFinished);
        Assert.Throws<InvalidOperationException>(() => seq.Next(Peak(1), 5));
    }

    [Fact]
    public void EosAndStopTokensEndWithStopUnlessEosIsIgnored()
    {
        var eos = new GenerationSequence([1], Greedy(), Eos, null, 100);
        Assert.Null(eos.Next(Peak(3), 1).FinishReason);
        var end = eos.Next(Peak(2), 2);
        Assert.Equal((FinishReason.Stop, 2, 2), (end.FinishReason!.Value, end.TokenId!.Value, end.Usage!.CompletionTokens));

        var options = Greedy();
        options.StopTokenIds.Add(11);
        var stopToken = new GenerationSequence([1], options, Eos, null, 100);
        Assert.Equal(FinishReason.Stop, stopToken.Next(Peak(11), 1).FinishReason);

        var ignoring = new GenerationSequence([1], new GenerationOptions { Temperature = 0, MaxNewTokens = 2, IgnoreEos = true }, Eos, null, 100);
        Assert.Null(ignoring.Next(Peak(2), 1).FinishReason);
        Assert.Equal(FinishReason.Length, ignoring.Next(Peak(2), 2).FinishReason);
    }

    [Fact]
    public void TheContextLimitEndsWithLengthAndNoToken()
    {
        var seq = new GenerationSequence([1, 2, 3], Greedy(), new HashSet<int>(), null, maxContextTokens: 4);
        Assert.Equal(5, seq.Next(Peak(5), 3).TokenId);
        var end = seq.Next(Peak(6), 4);
        Assert.Equal(FinishReason.Length, end.FinishReason);
        Assert.Null(end.TokenId);
        Assert.Equal(1, end.Usage!.CompletionTokens);
    }

    [Fact]
    public void EndingDropsHeldBackTextOnlyWhenCancelled()
    {
        var tokenizer = JambaTokenizer.FromSentencePiece(File.ReadAllBytes(Path.Combine(TokenizerTestData.Dir, "tokenizer.model")),
            TokenizerTestData.ReadText("tokenizer_config.json"));
        var ids = tokenizer.Encode("The whale swam", addSpecialTokens: false);
        var logits = new float[tokenizer.VocabSize];
        foreach (var mode in new[] { FinishReason.Cancelled, FinishReason.Stop })
        {
            var options = new GenerationOptions { Temperature = 0, MaxNewTokens = 64 };
            options.StopSequences.Add("whale swam!"); // a possible stop: the matcher holds "whale swam" back
            var seq = new GenerationSequence([1], options, new HashSet<int>(), tokenizer.CreateStreamingDetokenizer(), 1000);
            string text = "";
            foreach (int id in ids)
            {
                Array.Clear(logits);
                logits[id] = 10f;
                text += seq.Next(logits, 1 + seq.Generated).Text;
            }
            var end = seq.End(mode);
            text += end.Text;
            Assert.Equal(mode, end.FinishReason);
            if (mode == FinishReason.Cancelled) Assert.DoesNotContain("swam", text);
            else Assert.Equal(tokenizer.Decode(ids), text);
        }
    }

    [Fact]
    public void SeededSamplingIsReproducibleAndOptionsAreValidatedAndCopied()
    {
        var options = new GenerationOptions { Temperature = 1f, Seed = 42, MaxNewTokens = 20 };
        var flat = Enumerable.Range(0, Vocab).Select(i => (float)Math.Sin(i)).ToArray();
        int[] Run()
        {
            var seq = new GenerationSequence([1], options, new HashSet<int>(), null, 100);
            return Enumerable.Range(0, 10).Select(i => seq.Next((float[])flat.Clone(), 1 + i).TokenId!.Value).ToArray();
        }
        Assert.Equal(Run(), Run());
        var copy = new GenerationSequence([1], options, Eos, null, 100);
        options.MaxNewTokens = 1;
        Assert.Equal(20, copy.Options.MaxNewTokens);
        var bad = new GenerationOptions { TopP = 0 };
        Assert.Equal("TopP", Assert.Throws<ArgumentException>(() => new GenerationSequence([1], bad, Eos, null, 100)).ParamName);
    }

    [Fact]
    public void NullStopListsMeanNone()
    {
        var options = new GenerationOptions { StopSequences = null!, StopTokenIds = null! };
        Assert.Empty(options.StopSequences);
        Assert.Empty(options.Clone().StopTokenIds);
        options.Validate();
    }

    [Fact]
    public void ValidationNamesTheCallersSetting()
    {
        var e = Assert.Throws<ArgumentException>(() => new GenerationOptions { MaxNewTokens = 0 }.Validate(p => p == "MaxNewTokens" ? "max_tokens" : null));
        Assert.Equal("max_tokens", e.ParamName);
        Assert.StartsWith("max_tokens must be", e.Message);
        Assert.Equal("Temperature", Assert.Throws<ArgumentException>(() => new GenerationOptions { Temperature = -1 }.Validate(_ => null)).ParamName);
    }
}
