using System.Text;
using Jamba.Inference.Generation;
using Jamba.Inference.Tokenization;
using Xunit;

namespace Jamba.Inference.Tests.Generation;

/// <summary>The JSON constraint without any model: the schema compiler, the matcher on hand-written texts, token masks
/// over a vocabulary, and <see cref="GenerationSequence"/> driven by seeded random logits (a "model" that cannot write JSON).</summary>
public sealed class JsonConstraintTests
{
    private static JsonConstraint Schema(string json) => JsonConstraint.FromSchema(json);

    [Theory]
    [InlineData("""{"type":"number"}""", "-0.5e+10", true)]
    [InlineData("""{"type":"number"}""", "0", true)]
    [InlineData("""{"type":"number"}""", "-0", true)]
    [InlineData("""{"type":"number"}""", "1.25E-3", true)]
    [InlineData("""{"type":"number"}""", "012", false)]
    [InlineData("""{"type":"number"}""", "-", false)]
    [InlineData("""{"type":"number"}""", "1.", false)]
    [InlineData("""{"type":"number"}""", ".5", false)]
    [InlineData("""{"type":"number"}""", "+1", false)]
    [InlineData("""{"type":"integer"}""", "42", true)]
    [InlineData("""{"type":"integer"}""", "4.2", false)]
    [InlineData("""{"type":"integer"}""", "1e3", false)]
    [InlineData("""{"type":"integer","minimum":10,"maximum":20}""", "15", true)]
    [InlineData("""{"type":"integer","minimum":10,"maximum":20}""", "9", false)]
    [InlineData("""{"type":"integer","minimum":10,"maximum":20}""", "21", false)]
    [InlineData("""{"type":"integer","minimum":10,"maximum":20}""", "-15", false)]
    [InlineData("""{"type":"number","exclusiveMinimum":0,"maximum":1}""", "0", false)]
    [InlineData("""{"type":"number","exclusiveMinimum":0,"maximum":1}""", "0.001", true)]
    [InlineData("""{"type":"number","exclusiveMinimum":0,"maximum":1}""", "1", true)]
    [InlineData("""{"type":"number","exclusiveMinimum":0,"exclusiveMaximum":1}""", "1", false)]
    [InlineData("""{"type":"number","minimum":-5.5,"maximum":-2}""", "-5.5", true)]
    [InlineData("""{"type":"number","minimum":-5.5,"maximum":-2}""", "-5.6", false)]
    [InlineData("""{"type":"string"}""", "\"a\\\"b\\\\c\\/\\n\\u00e9\"", true)]
    [InlineData("""{"type":"string"}""", "\"\\ud83d\\ude00\"", true)]
    [InlineData("""{"type":"string"}""", "\"\\ud83d\"", false)]
    [InlineData("""{"type":"string"}""", "\"\\ude00\"", false)]
    [InlineData("""{"type":"string"}""", "\"\\x\"", false)]
    [InlineData("""{"type":"string"}""", "\"tab\there\"", false)]
    [InlineData("""{"type":"string"}""", "\"héllo wörld 😀\"", true)]
    [InlineData("""{"type":"string","minLength":2,"maxLength":3}""", "\"é😀\"", true)]
    [InlineData("""{"type":"string","minLength":2,"maxLength":3}""", "\"a\"", false)]
    [InlineData("""{"type":"string","minLength":2,"maxLength":3}""", "\"abcd\"", false)]
    [InlineData("""{"type":"string","format":"date"}""", "\"2024-02-28\"", true)]
    [InlineData("""{"type":"string","format":"date"}""", "\"2024-13-01\"", false)]
    [InlineData("""{"type":"string","format":"date-time"}""", "\"2024-02-28T23:59:00Z\"", true)]
    [InlineData("""{"type":"string","format":"date-time"}""", "\"2024-02-28T23:59:00+02:00\"", true)]
    [InlineData("""{"type":"string","format":"date-time"}""", "\"2024-02-28T24:00:00Z\"", false)]
    [InlineData("""{"type":"string","format":"uuid"}""", "\"0f8fad5b-d9cb-469f-a165-70867728950e\"", true)]
    [InlineData("""{"type":"string","format":"uuid"}""", "\"0f8fad5b-d9cb-469f-a165\"", false)]
    [InlineData("""{"type":"boolean"}""", "true", true)]
    [InlineData("""{"type":"boolean"}""", "tru", false)]
    [InlineData("""{"type":["string","null"]}""", "null", true)]
    [InlineData("""{"type":["string","null"]}""", "\"x\"", true)]
    [InlineData("""{"type":["string","null"]}""", "1", false)]
    [InlineData("""{"enum":["a","b",1,10,null]}""", "10", true)]
    [InlineData("""{"enum":["a","b",1,10,null]}""", "\"c\"", false)]
    [InlineData("""{"const":{"k":[1,2]}}""", "{\"k\":[1,2]}", true)]
    [InlineData("""{"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":2}""", "[1, 2]", true)]
    [InlineData("""{"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":2}""", "[]", false)]
    [InlineData("""{"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":2}""", "[1,2,3]", false)]
    [InlineData("""{"type":"array","items":{"type":"integer"}}""", "[1,]", false)]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},"required":["a"]}""", "{\"b\":\"x\",\"a\":1}", true)]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},"required":["a"]}""", "{\"b\":\"x\"}", false)]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":false}""", "{\"a\":1,\"c\":2}", false)]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":false}""", "{\"a\":1,\"a\":2}", false)]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":{"type":"string"}}""", "{\"ab\":\"x\",\"a\":1}", true)]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":{"type":"string"}}""", "{\"a\":\"x\"}", false)]
    [InlineData("""{"type":"object"}""", "{\"x\":[1,{\"y\":null}],\"z\":\"w\"}", true)]
    [InlineData("""{"$ref":"#/$defs/n","$defs":{"n":{"type":"object","properties":{"c":{"type":"array","items":{"$ref":"#/$defs/n"}}}}}}""", "{\"c\":[{},{\"c\":[{}]}]}", true)]
    [InlineData("""{"type":"object"}""", "{\"a\":1}  ", false)]
    [InlineData("""{"type":"object"}""", "{\"a\":1,      \"b\":2}", false)]
    [InlineData("""{"type":"object"}""", "{\"a\":1} x", false)]
    public void MatcherAcceptsExactlyTheValidTexts(string schema, string text, bool valid)
    {
        var c = Schema(schema);
        Assert.Equal(valid, c.Accepts(text));
        if (valid && !text.EndsWith(' ')) Assert.True(JsonSchemaCheck.Validate(schema, text).Valid, text);
    }

    [Fact]
    public void PrefixesAreRefusedAtTheFirstWrongByte()
    {
        var c = Schema("""{"type":"integer","minimum":100,"maximum":199}""");
        Assert.True(c.AcceptsPrefix("1"));
        Assert.True(c.AcceptsPrefix("19"));
        Assert.False(c.AcceptsPrefix("2"));
        Assert.False(c.AcceptsPrefix("1000"));
        Assert.False(c.AcceptsPrefix("0"));
        Assert.False(c.AcceptsPrefix("-"));
        Assert.True(JsonConstraint.AnyObject.AcceptsPrefix("{\"a\": [tr"));
        Assert.False(JsonConstraint.AnyObject.AcceptsPrefix("[1]"));
        Assert.True(JsonConstraint.AnyValue.Accepts("[1]"));
    }

    [Theory]
    [InlineData("""{"type":"string","pattern":"^a+$"}""", "pattern", "#")]
    [InlineData("""{"type":"object","properties":{"x":{"allOf":[{"type":"string"}]}}}""", "allOf", "#/properties/x")]
    [InlineData("""{"not":{"type":"string"}}""", "not", "#")]
    [InlineData("""{"if":{"type":"string"},"then":{"minLength":1}}""", "if", "#")]
    [InlineData("""{"type":"object","patternProperties":{"^x":{}}}""", "patternProperties", "#")]
    [InlineData("""{"type":"array","items":{"type":"string"},"uniqueItems":true}""", "uniqueItems", "#")]
    [InlineData("""{"type":"number","multipleOf":2}""", "multipleOf", "#")]
    [InlineData("""{"type":"string","format":"email"}""", "format", "#")]
    [InlineData("""{"$ref":"https://example.com/s.json"}""", "$ref", "#")]
    [InlineData("""{"type":"array","items":{"type":"array","prefixItems":[{"type":"string"}]}}""", "prefixItems", "#/items")]
    public void UnsupportedKeywordsThrowNamingTheKeywordAndWhere(string schema, string keyword, string path)
    {
        var e = Assert.Throws<NotSupportedException>(() => JsonConstraint.FromSchema(schema));
        Assert.Contains($"'{keyword}'", e.Message);
        Assert.Contains($"'{path}'", e.Message);
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("""{"type":"wat"}""")]
    [InlineData("""{"$ref":"#/$defs/missing"}""")]
    [InlineData("""{"$ref":"#/$defs/a","$defs":{"a":{"$ref":"#/$defs/b"},"b":{"$ref":"#/$defs/a"}}}""")]
    [InlineData("""{"$ref":"#/$defs/n","$defs":{"n":{"type":"object","properties":{"c":{"$ref":"#/$defs/n"}},"required":["c"]}}}""")]
    [InlineData("""{"type":"integer","minimum":5,"maximum":4}""")]
    [InlineData("""{"type":"string","minLength":5,"maxLength":4}""")]
    [InlineData("false")]
    public void InvalidOrEmptySchemasThrowArgumentException(string schema) =>
        Assert.Throws<ArgumentException>(() => JsonConstraint.FromSchema(schema));

    [Fact]
    public void PathologicalSchemasEndQuickly()
    {
        // Deep nesting, and a wide fan of references to one recursive definition.
        string deep = string.Concat(Enumerable.Repeat("{\"type\":\"array\",\"items\":", 200)) + "{}" + new string('}', 200);
        Assert.Throws<ArgumentException>(() => JsonConstraint.FromSchema(deep));
        var props = string.Join(",", Enumerable.Range(0, 60).Select(i => $"\"p{i}\":{{\"$ref\":\"#/$defs/n\"}}"));
        var wide = JsonConstraint.FromSchema("{\"$ref\":\"#/$defs/n\",\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{" + props + "}}}}");
        Assert.True(wide.Accepts("{\"p1\":{\"p2\":{}}}"));
        Assert.Throws<ArgumentException>(() => JsonConstraint.FromSchema(new string('[', 100_000)));
    }

    /// <summary>A small vocabulary: every ASCII byte plus multi-character pieces that span JSON tokens.</summary>
    private static ConstraintVocabulary SmallVocab(out List<string> pieces)
    {
        pieces = Enumerable.Range(0, 128).Select(i => ((char)i).ToString()).ToList();
        pieces.AddRange(["{\"", "\":", "\",\"", "\"}", "true", "null", "},{", "12", ".5", "e+", " {", "\n  ", "name", "\":\"", "]}", "\\u", "é", "😀"]);
        return new ConstraintVocabulary(pieces.Select(p => (byte[]?)Encoding.UTF8.GetBytes(p)).ToArray());
    }

    [Fact]
    public void MasksAllowExactlyTheTokensWhoseBytesContinueTheValue()
    {
        var vocab = SmallVocab(out var pieces);
        var c = Schema("""{"type":"object","properties":{"name":{"type":"string"},"ok":{"type":"boolean"}},"required":["name"]}""");
        var cache = c.MasksFor(vocab);
        foreach (string prefix in new[] { "", "{", "{\"na", "{\"name\":", "{\"name\":\"x", "{\"name\":\"x\",\"ok\":t" })
        {
            var state = MatcherState.Initial(c.Root).Advance(Encoding.UTF8.GetBytes(prefix));
            var mask = cache.Compute(state);
            for (int id = 0; id < pieces.Count; id++)
            {
                bool expected = pieces[id].Length > 0 && id != 0 && c.AcceptsPrefix(prefix + pieces[id]);
                bool got = (mask.Bits[id >> 6] & (1UL << (id & 63))) != 0;
                Assert.True(expected == got, $"after {prefix}: piece {Escape(pieces[id])} expected {expected}");
            }
            Assert.Same(cache.Get(state), cache.Get(MatcherState.Initial(c.Root).Advance(Encoding.UTF8.GetBytes(prefix))));
        }
    }

    private static string Escape(string s) => System.Text.Json.JsonSerializer.Serialize(s);

    private static JambaTokenizer TestTokenizer() => JambaTokenizer.Load(RepositoryPaths.ShippedModel);

    private static readonly Lazy<JambaTokenizer> Tokenizer = new(TestTokenizer);

    /// <summary>Generates with seeded random logits (sharpened so that a few tokens dominate, like a real model).</summary>
    private static (string Text, GenerationUpdate Last, List<int> Tokens) RandomModel(JsonConstraint? c, GenerationOptions o, int seed, int vocabSize)
    {
        o.Constraint = c;
        var tok = Tokenizer.Value;
        var seq = new GenerationSequence([1], o, new HashSet<int>(tok.EosTokenIds), tok.CreateStreamingDetokenizer(skipSpecialTokens: true), 4096);
        var rng = new Random(seed);
        var text = new StringBuilder();
        var tokens = new List<int>();
        GenerationUpdate u;
        var logits = new float[vocabSize];
        do
        {
            for (int i = 0; i < logits.Length; i++) logits[i] = (float)(rng.NextDouble() * 12);
            u = seq.Next(logits, 1 + seq.Generated);
            text.Append(u.Text);
            if (u.TokenId is { } id) tokens.Add(id);
        } while (u.FinishReason is null);
        return (text.ToString(), u, tokens);
    }

    public static TheoryData<string, int> SchemaSeeds()
    {
        var data = new TheoryData<string, int>();
        foreach (var name in JsonSchemaCheck.Schemas.Keys)
            foreach (int seed in new[] { 1, 2, 3 })
                data.Add(name, seed);
        return data;
    }

    [Theory]
    [MemberData(nameof(SchemaSeeds))]
    public void RandomLogitsUnderTheConstraintAlwaysGiveValidJson(string name, int seed)
    {
        string schema = JsonSchemaCheck.Schemas[name];
        var o = new GenerationOptions { Temperature = 0.9f, TopP = 0.95f, TopK = 50, MinP = 0.01f, PresencePenalty = 0.5f, Seed = seed, MaxNewTokens = 300 };
        var (text, last, _) = RandomModel(Schema(schema), o, seed, Tokenizer.Value.VocabSize + 3);
        Assert.Equal(FinishReason.Stop, last.FinishReason);
        Assert.False(last.ConstraintIncomplete);
        var (valid, detail) = JsonSchemaCheck.Validate(schema, text);
        Assert.True(valid, detail);
    }

    [Theory]
    [InlineData(3)]
    [InlineData(12)]
    [InlineData(40)]
    public void AShortBudgetClosesTheValueOrEndsWithLengthAndTheFlag(int max)
    {
        string schema = JsonSchemaCheck.Schemas["person"];
        var o = new GenerationOptions { Temperature = 1f, Seed = 5, MaxNewTokens = max };
        var (text, last, tokens) = RandomModel(Schema(schema), o, 5, Tokenizer.Value.VocabSize);
        Assert.True(tokens.Count <= max);
        if (last.FinishReason == FinishReason.Stop)
        {
            Assert.False(last.ConstraintIncomplete);
            Assert.True(JsonSchemaCheck.Validate(schema, text).Valid, text);
        }
        else
        {
            Assert.Equal(FinishReason.Length, last.FinishReason);
            Assert.True(last.ConstraintIncomplete, text);
        }
        // The shortest person is {"name":"x","age":0,"email":null} (33 bytes): 40 tokens are enough to close it.
        if (max >= 40) Assert.Equal(FinishReason.Stop, last.FinishReason);
        if (max <= 3) Assert.True(last.ConstraintIncomplete);
    }

    [Fact]
    public void ConstrainedGreedyKeepsEveryGreedyTokenThatIsAllowed()
    {
        // Step by step: where the unconstrained argmax continues the value, the constrained run takes it.
        var c = JsonConstraint.AnyObject;
        var tok = Tokenizer.Value;
        var seq = new GenerationSequence([1], new GenerationOptions { Temperature = 0, MaxNewTokens = 200, Constraint = c }, new HashSet<int>(tok.EosTokenIds),
            tok.CreateStreamingDetokenizer(), 4096);
        var vocab = ConstraintVocabulary.For(tok);
        var rng = new Random(7);
        var text = new StringBuilder();
        var history = new List<byte>();
        int kept = 0;
        while (!seq.IsFinished)
        {
            var logits = new float[tok.VocabSize];
            for (int i = 0; i < logits.Length; i++) logits[i] = (float)rng.NextDouble();
            // Make some steps' argmax a structural token the value can take.
            if (rng.Next(3) == 0) logits[rng.Next(tok.VocabSize)] = 5f;
            int argmax = LogitsSampler.ArgMax(logits);
            var bytes = vocab.Tokens[argmax];
            bool continues = bytes is not null && seq.Generated < 150 && c.AcceptsPrefix([.. history, .. bytes]);
            var u = seq.Next(logits, 1 + seq.Generated);
            if (continues && u.TokenId != argmax)
                Assert.Fail($"after {text}: the allowed greedy token {argmax} was replaced by {u.TokenId}");
            if (continues) kept++;
            if (u.TokenId is { } id && vocab.Tokens[id] is { } b) history.AddRange(b);
            text.Append(u.Text);
        }
        Assert.True(JsonSchemaCheck.Validate("""{"type":"object"}""", text.ToString()).Valid, text.ToString());
    }

    [Fact]
    public void ValidationAndStopSequencesWithAConstraint()
    {
        var o = new GenerationOptions { Constraint = JsonConstraint.AnyObject, StopSequences = ["}"], Temperature = 0.7f, Seed = 3, MaxNewTokens = 120 };
        var (text, last, _) = RandomModel(JsonConstraint.AnyObject, o, 3, Tokenizer.Value.VocabSize);
        Assert.Equal(FinishReason.Stop, last.FinishReason);
        Assert.EndsWith("}", text.TrimEnd());
        Assert.Throws<ArgumentException>(() => new GenerationSequence([1], o, new HashSet<int>(), null, 100));
    }
}
