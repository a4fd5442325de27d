using Jamba.Inference.Generation;
using Xunit;

namespace Jamba.Inference.Tests.Generation;

/// <summary>GenerationOptions: null collections mean "none"; every invalid property is named.</summary>
public sealed class GenerationOptionsNullTests
{
    [Fact]
    public void NullStopListsMeanNoneAndCloneAndValidateAccept()
    {
        var o = new GenerationOptions { StopSequences = null, StopTokenIds = null };
        Assert.Empty(o.StopSequences!); // (the compiler keeps the assigned null's state; the getter never returns null)
        Assert.Empty(o.StopTokenIds!);
        var c = o.Clone();
        c.Validate();
        o.StopSequences!.Add("x");
        Assert.Empty(c.StopSequences); // a deep copy
        o.StopSequences = null;
        Assert.Empty(o.StopSequences!);
    }

    public static TheoryData<string, Action<GenerationOptions>> Invalid => new()
    {
        { nameof(GenerationOptions.MaxNewTokens), o => o.MaxNewTokens = 0 },
        { nameof(GenerationOptions.MaxNewTokens), o => o.MaxNewTokens = int.MaxValue },
        { nameof(GenerationOptions.Temperature), o => o.Temperature = float.NaN },
        { nameof(GenerationOptions.Temperature), o => o.Temperature = -1 },
        { nameof(GenerationOptions.TopK), o => o.TopK = -1 },
        { nameof(GenerationOptions.TopP), o => o.TopP = 0 },
        { nameof(GenerationOptions.TopP), o => o.TopP = float.PositiveInfinity },
        { nameof(GenerationOptions.MinP), o => o.MinP = 1.5f },
        { nameof(GenerationOptions.RepetitionPenalty), o => o.RepetitionPenalty = 0 },
        { nameof(GenerationOptions.PresencePenalty), o => o.PresencePenalty = 3 },
        { nameof(GenerationOptions.FrequencyPenalty), o => o.FrequencyPenalty = float.NegativeInfinity },
        { nameof(GenerationOptions.TopLogProbs), o => o.TopLogProbs = 21 },
        { nameof(GenerationOptions.StopSequences), o => o.StopSequences = Enumerable.Range(0, 17).Select(i => $"s{i}").ToList() },
        { nameof(GenerationOptions.StopSequences), o => o.StopSequences = new List<string> { "a", null! } },
        { nameof(GenerationOptions.StopSequences), o => o.StopSequences = new List<string> { "" } },
        { nameof(GenerationOptions.StopTokenIds), o => o.StopTokenIds = new List<int> { 3, -1 } },
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public void EveryInvalidPropertyIsNamed(string property, Action<GenerationOptions> set)
    {
        var o = new GenerationOptions();
        set(o);
        var ex = Assert.Throws<ArgumentException>(() => o.Clone().Validate());
        Assert.Equal(property, ex.ParamName);
        Assert.Contains(property, ex.Message);
    }

    [Fact]
    public void NullEntriesAreReportedWithTheirIndex()
    {
        var o = new GenerationOptions { StopSequences = new List<string> { "a", null! } };
        Assert.Contains("null at index 1", Assert.Throws<ArgumentException>(o.Validate).Message);
        o = new GenerationOptions { StopTokenIds = new List<int> { 3, -1 } };
        Assert.Contains("-1 at index 1", Assert.Throws<ArgumentException>(o.Validate).Message);
    }
}
