using System.Text.Json.Nodes;
using Jamba.Inference.Templates;
using Jamba.Inference.Tests.Fixtures;
using Jamba.Inference.Tokenization;
using Xunit;

namespace Jamba.Inference.Tests.Tokenization;

/// <summary>Malformed tokenizer, tokenizer-config, generation-config and chat-template files fail with
/// JambaTokenizerException naming the file, the JSON path and what was expected.</summary>
public sealed class TokenizerFileErrorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("jamba-tokerr-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Folder(bool sentencePiece = false)
    {
        string folder = Directory.CreateDirectory(Path.Combine(_dir, Guid.NewGuid().ToString("N"))).FullName;
        foreach (var f in sentencePiece ? new[] { "tokenizer.model", "tokenizer_config.json" } : new[] { "tokenizer.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(HostileInputs.TokenizerData, f), Path.Combine(folder, f));
        return folder;
    }

    private static void Edit(string file, Action<JsonObject> edit)
    {
        var json = JsonNode.Parse(File.ReadAllText(file))!.AsObject();
        edit(json);
        File.WriteAllText(file, json.ToJsonString());
    }

    private static JambaTokenizerException Fails(Func<object?> load, string file, string? field, params string[] contains)
    {
        var ex = Assert.Throws<JambaTokenizerException>(load);
        Assert.Equal(file, ex.File);
        Assert.Contains(file, ex.Message);
        Assert.Equal(field, ex.Field);
        if (field is not null) Assert.Contains($"field '{field}'", ex.Message);
        foreach (var c in contains) Assert.Contains(c, ex.Message);
        return ex;
    }

    public static TheoryData<string, string, string> TokenizerJsonCases => new()
    {
        { "model.vocab.<|pad|>=-1", "model.vocab[\"<|pad|>\"]", "expected an integer in [0, 16777215], found -1" },
        { "model.vocab.<|pad|>=\"0\"", "model.vocab[\"<|pad|>\"]", "found the string \"0\"" },
        { "model.vocab.<|pad|>=4294967296", "model.vocab[\"<|pad|>\"]", "found 4294967296" },
        { "model.vocab.<|pad|>=1e20", "model.vocab[\"<|pad|>\"]", "found the number 1e20" },
        { "model.vocab.<|pad|>=2147483647", "model.vocab[\"<|pad|>\"]", "found 2147483647" },
        { "model.vocab.<|startoftext|>=0", "model.vocab[\"<|startoftext|>\"]", "id 0 is also the id of \"<|pad|>\"" },
        { "model.vocab=[]", "model.vocab", "expected an object" },
        { "model.vocab=null", "model.vocab", "is missing" },
        { "model.merges=[5]", "model.merges[0]", "expected a merge" },
        { "model.merges=[[\"a\"]]", "model.merges[0]", "expected a merge" },
        { "model.merges=[[\"a\",5]]", "model.merges[0][1]", "expected a string, found the number 5" },
        { "model.merges=[\"\"]", "model.merges[0]", "is not \"a b\"" },
        { "model.merges=[\"x\"]", "model.merges[0]", "is not \"a b\"" },
        { "model.merges={}", "model.merges", "expected an array" },
        { "model.unk_token=3", "model.unk_token", "expected a string" },
        { "model.byte_fallback=\"yes\"", "model.byte_fallback", "expected true or false" },
        { "model.dropout=0.1", "model.dropout", "dropout" },
        { "model=[]", "model", "expected an object" },
        { "decoder={}", "decoder.type", "is missing" },
        { "decoder={\"type\":\"Sequence\"}", "decoder.decoders", "is missing" },
        { "decoder={\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"content\":\" \"}]}", "decoder.decoders[0].pattern", "is missing" },
        { "decoder={\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"x\"}}]}", "decoder.decoders[0].content", "is missing" },
        { "decoder={\"type\":\"Strip\",\"content\":\" \",\"start\":\"1\"}", "decoder.start", "expected an integer" },
        { "decoder={\"type\":\"Sequence\",\"decoders\":[7]}", "decoder.decoders[0]", "expected an object" },
        { "decoder=5", "decoder", "expected an object" },
        { "normalizer={\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\"}]}", "normalizer.normalizers[0].prepend", "is missing" },
        { "normalizer={\"type\":\"Sequence\",\"normalizers\":{}}", "normalizer.normalizers", "expected an array" },
        { "normalizer={\"type\":5}", "normalizer.type", "expected a string" },
        { "pre_tokenizer={}", "pre_tokenizer.type", "is missing" },
        { "pre_tokenizer={\"type\":\"Metaspace\",\"split\":1}", "pre_tokenizer.split", "expected true or false" },
        { "added_tokens=[{\"id\":\"x\",\"content\":\"a\"}]", "added_tokens[0].id", "expected an integer" },
        { "added_tokens=[{\"id\":-4,\"content\":\"a\"}]", "added_tokens[0].id", "found -4" },
        { "added_tokens=[{\"content\":\"a\"}]", "added_tokens[0].id", "is missing" },
        { "added_tokens=[{\"id\":3,\"content\":[]}]", "added_tokens[0].content", "expected a string" },
        { "added_tokens={}", "added_tokens", "expected an array" },
        { "post_processor={\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":7}}]}", "post_processor.single[0].SpecialToken.id", "expected a string" },
        { "post_processor={\"type\":\"TemplateProcessing\",\"single\":[],\"special_tokens\":{\"x\":{\"ids\":[\"1\"]}}}", "post_processor.special_tokens.x.ids[0]", "expected an integer" },
        { "post_processor={\"type\":\"TemplateProcessing\",\"single\":5}", "post_processor.single", "expected an array" },
    };

    [Theory]
    [MemberData(nameof(TokenizerJsonCases))]
    public void TokenizerJsonValuesOfTheWrongTypeOrRangeAreNamed(string edit, string field, string message)
    {
        string folder = Folder();
        string file = Path.Combine(folder, "tokenizer.json");
        int eq = edit.IndexOf('=');
        string[] path = edit[..eq].Split('.', 2);
        var value = JsonNode.Parse(edit[(eq + 1)..]);
        Edit(file, root =>
        {
            if (path.Length == 1) root[path[0]] = value;
            else if (path[1].StartsWith("vocab.", StringComparison.Ordinal)) root[path[0]]!["vocab"]![path[1]["vocab.".Length..]] = value;
            else root[path[0]]![path[1]] = value;
        });
        Fails(() => JambaTokenizer.Load(folder), file, field, message);
    }

    [Theory]
    [InlineData("{\"version\": \"1.0\"", "not valid JSON")]
    [InlineData("{\"model\": {}, \"model\": {}}", "Duplicate property 'model'")]
    [InlineData("[]", "expected an object")]
    [InlineData("{}", "model")]
    public void TokenizerJsonThatIsNoTokenizerIsNamed(string text, string message)
    {
        string folder = Folder();
        string file = Path.Combine(folder, "tokenizer.json");
        File.WriteAllText(file, text);
        var ex = Assert.Throws<JambaTokenizerException>(() => JambaTokenizer.Load(folder));
        Assert.Equal(file, ex.File);
        Assert.Contains(message, ex.Message);
    }

    [Fact]
    public void InvalidUtf8TruncationAndDeepNestingAreNamed()
    {
        string folder = Folder();
        string file = Path.Combine(folder, "tokenizer.json");
        var bytes = File.ReadAllBytes(file);
        int at = Array.IndexOf(bytes, (byte)'|');
        bytes[at] = 0xFE;
        File.WriteAllBytes(file, bytes);
        Fails(() => JambaTokenizer.Load(folder), file, null, $"not valid UTF-8 text (invalid byte 0xFE at offset {at})");

        File.WriteAllBytes(file, File.ReadAllBytes(Path.Combine(HostileInputs.TokenizerData, "tokenizer.json"))[..20000]);
        Fails(() => JambaTokenizer.Load(folder), file, null, "not valid JSON");

        File.WriteAllText(file, "{\"model\":" + new string('[', 5000) + new string(']', 5000) + "}");
        Fails(() => JambaTokenizer.Load(folder), file, null, "depth");
    }

    [Theory]
    [InlineData("added_tokens_decoder", "{\"-1\": {\"content\": \"x\"}}", "added_tokens_decoder[\"-1\"]", "is not a token id")]
    [InlineData("added_tokens_decoder", "{\"01\": {\"content\": \"x\"}}", "added_tokens_decoder.01", "is not a token id")]
    [InlineData("added_tokens_decoder", "{\" 5\": {\"content\": \"x\"}}", "added_tokens_decoder[\" 5\"]", "is not a token id")]
    [InlineData("added_tokens_decoder", "{\"99999999\": {\"content\": \"x\"}}", "added_tokens_decoder.99999999", "is not a token id")]
    [InlineData("added_tokens_decoder", "{\"abc\": {\"content\": \"x\"}}", "added_tokens_decoder.abc", "is not a token id")]
    [InlineData("added_tokens_decoder", "{\"5\": 5}", "added_tokens_decoder.5", "expected an object")]
    [InlineData("added_tokens_decoder", "{\"5\": {\"content\": 5}}", "added_tokens_decoder.5.content", "expected a string")]
    [InlineData("added_tokens_decoder", "{\"5\": {}}", "added_tokens_decoder.5.content", "is missing")]
    [InlineData("added_tokens_decoder", "{\"5\": {\"content\": \"x\", \"special\": \"yes\"}}", "added_tokens_decoder.5.special", "expected true or false")]
    [InlineData("added_tokens_decoder", "[1, 2]", "added_tokens_decoder", "expected an object")]
    [InlineData("bos_token", "5", "bos_token", "expected a token string")]
    [InlineData("eos_token", "{\"content\": 5}", "eos_token.content", "expected a string")]
    [InlineData("pad_token", "{}", "pad_token.content", "is missing")]
    [InlineData("add_bos_token", "\"true\"", "add_bos_token", "expected true or false")]
    [InlineData("legacy", "1", "legacy", "expected true or false")]
    public void TokenizerConfigValuesAreNamed(string key, string value, string field, string message)
    {
        foreach (bool spm in new[] { false, true })
        {
            string folder = Folder(spm);
            string file = Path.Combine(folder, "tokenizer_config.json");
            Edit(file, root => root[key] = JsonNode.Parse(value));
            Fails(() => JambaTokenizer.Load(folder), file, field, message);
        }
    }

    [Theory]
    [InlineData("{\"eos_token_id\": \"2\"}", "eos_token_id", "expected an integer")]
    [InlineData("{\"eos_token_id\": 1e10}", "eos_token_id", "expected an integer")]
    [InlineData("{\"eos_token_id\": -1}", "eos_token_id", "found -1")]
    [InlineData("{\"eos_token_id\": 2.5}", "eos_token_id", "expected an integer")]
    [InlineData("{\"eos_token_id\": [2, \"x\"]}", "eos_token_id[1]", "expected an integer")]
    [InlineData("{\"eos_token_id\": [2, 99999]}", "eos_token_id", "outside the tokenizer's vocabulary")]
    [InlineData("{\"eos_token_id\": {\"id\": 2}}", "eos_token_id", "expected an integer")]
    [InlineData("{\"pad_token_id\": \"0\"}", "pad_token_id", "expected an integer")]
    [InlineData("{\"bos_token_id\": -3}", "bos_token_id", "found -3")]
    [InlineData("[2]", "(root)", "expected an object")]
    [InlineData("{\"eos_token_id\": 2", null, "not valid JSON")]
    [InlineData("{\"eos_token_id\": 2, \"eos_token_id\": 3}", null, "Duplicate property")]
    public void GenerationConfigIdsOfTheWrongTypeOrRangeAreNamed(string text, string? field, string message)
    {
        string folder = Folder();
        string file = Path.Combine(folder, "generation_config.json");
        File.WriteAllText(file, text);
        Fails(() => JambaTokenizer.Load(folder), file, field, message);
    }

    [Theory]
    [InlineData("5", "chat_template", "expected a string or a list of {name, template} objects")]
    [InlineData("{\"default\": \"x\"}", "chat_template", "expected a string or a list")]
    [InlineData("[5]", "chat_template[0]", "expected a {\"name\": ..., \"template\": ...} object")]
    [InlineData("[{\"name\": \"default\"}]", "chat_template[0].template", "is missing")]
    [InlineData("[{\"name\": 3, \"template\": \"x\"}]", "chat_template[0].name", "expected a string")]
    [InlineData("[{\"name\": \"default\", \"template\": \"x\"}, {\"name\": \"t\", \"template\": [1]}]", "chat_template[1].template", "expected a string")]
    [InlineData("[{\"name\": \"default\", \"template\": \"x\"}, {\"name\": \"default\", \"template\": \"y\"}]", "chat_template[1].name", "appears twice")]
    public void ChatTemplateEntriesOfTheWrongShapeAreNamed(string value, string field, string message)
    {
        string folder = Folder();
        string file = Path.Combine(folder, "tokenizer_config.json");
        Edit(file, root => root["chat_template"] = JsonNode.Parse(value));
        Fails(() => ChatTemplate.FromCheckpoint(folder), file, field, message);
        Fails(() => ChatTemplate.TryFromCheckpoint(folder, out _, "t"), file, field, message);

        string processor = Path.Combine(folder, "chat_template.json");
        Edit(file, root => root.Remove("chat_template"));
        File.WriteAllText(processor, $"{{\"chat_template\": {value}}}");
        Fails(() => ChatTemplate.FromCheckpoint(folder), processor, field, message);
    }

    [Fact]
    public void ChatTemplateFilesThatAreNotJsonOrUtf8AreNamed()
    {
        string folder = Folder();
        string file = Path.Combine(folder, "tokenizer_config.json");
        File.WriteAllText(file, "{\"chat_template\": \"x\"");
        Fails(() => ChatTemplate.FromCheckpoint(folder), file, null, "not valid JSON");
        string jinja = Path.Combine(folder, "chat_template.jinja");
        File.WriteAllBytes(jinja, [(byte)'h', 0xC0, 0xAF]);
        Fails(() => ChatTemplate.FromCheckpoint(folder), jinja, null, "not valid UTF-8");
        Assert.Throws<ArgumentException>(() => ChatTemplate.FromCheckpoint(folder, "../../etc/passwd"));
    }

    [Fact]
    public void AnEmptyTokenizerConfigFileIsInvalidJson()
    {
        string folder = Folder();
        string file = Path.Combine(folder, "tokenizer_config.json");
        File.WriteAllText(file, "  \n");
        Fails(() => JambaTokenizer.Load(folder), file, null, "not valid JSON");
    }

    [Fact]
    public void TextTheTokenizerCannotRepresentIsATokenizerErrorNotACrash()
    {
        string folder = Folder();
        string file = Path.Combine(folder, "tokenizer.json");
        Edit(file, root =>
        {
            root["model"]!["byte_fallback"] = false;
            root["model"]!["unk_token"] = null;
        });
        var tokenizer = JambaTokenizer.Load(folder);
        Fails(() => tokenizer.Encode("price: 5€"), file, "model.unk_token", "U+20AC");
    }

    [Fact]
    public void TruncatedOrGarbageSentencePieceModelsAreNamed()
    {
        var original = File.ReadAllBytes(Path.Combine(HostileInputs.TokenizerData, "tokenizer.model"));
        var rng = new Random(5);
        var cases = new List<byte[]> { original[..(original.Length / 2)], original[..1], Array.Empty<byte>(), new byte[] { 0xFF, 0xFF, 0xFF } };
        for (int i = 0; i < 20; i++)
        {
            var garbage = new byte[rng.Next(1, 4000)];
            rng.NextBytes(garbage);
            cases.Add(garbage);
        }
        foreach (var bytes in cases)
        {
            string folder = Folder(sentencePiece: true);
            string file = Path.Combine(folder, "tokenizer.model");
            File.WriteAllBytes(file, bytes);
            var ex = Assert.Throws<JambaTokenizerException>(() => JambaTokenizer.Load(folder));
            Assert.Equal(file, ex.File);
        }
    }
}
