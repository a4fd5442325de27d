using System.Text.Json;
using System.Text.Json.Nodes;
using Xunit;

namespace Jamba.Cli.Tests;

public sealed class GenerateTests : IClassFixture<TextModelFixture>
{
    private readonly TextModelFixture _text;

    public GenerateTests(TextModelFixture text) => _text = text;

    public static TheoryData<string> Fixtures() => FixturePaths.ModelFixtureData();

    /// <summary>Issue 7's acceptance check: greedy generation from the CLI equals transformers' greedy tokens.</summary>
    [Theory]
    [MemberData(nameof(Fixtures))]
    public void Greedy_json_on_every_fixture_matches_expected(string fixture)
    {
        var expected = JsonNode.Parse(File.ReadAllText(Path.Combine(fixture, "expected.json")))!;
        int maxNew = expected["max_new_tokens"]!.GetValue<int>();
        var batch = expected["batch1"]!;
        var inputs = batch["input_ids"]!.AsArray();
        var masks = batch["attention_mask"]!.AsArray();
        var greedy = batch["greedy_new_tokens"]!.AsArray();
        for (int row = 0; row < inputs.Count; row++)
        {
            // Left padding is not part of the prompt.
            var ids = inputs[row]!.AsArray().Select(n => n!.GetValue<int>())
                .Zip(masks[row]!.AsArray().Select(n => n!.GetValue<int>()))
                .Where(p => p.Second == 1).Select(p => p.First).ToArray();
            var r = CliRunner.Run("generate", "--model", fixture, "--prompt-ids", string.Join(',', ids),
                "--temperature", "0", "--max-new-tokens", maxNew.ToString(), "--ignore-eos", "--dtype", "f32", "--json");
            Assert.True(r.ExitCode == 0, r.ToString());
            var json = JsonNode.Parse(r.Out)!;
            var tokens = json["tokens"]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();
            Assert.Equal(greedy[row]!.AsArray().Select(n => n!.GetValue<int>()).ToArray(), tokens);
            Assert.Equal("length", json["finish_reason"]!.GetValue<string>());
        }
    }

    [Fact]
    public void Json_output_has_the_documented_shape()
    {
        var r = CliRunner.Run("generate", "--model", FixturePaths.AnyModelFixture(), "--prompt-ids", "5,6,7,8", "--max-new-tokens", "6",
            "--temperature", "0.7", "--seed", "3", "--ignore-eos", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Single(r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        var json = JsonNode.Parse(r.Out)!.AsObject();
        foreach (var key in new[] { "tokens", "text", "finish_reason", "prompt_tokens", "completion_tokens", "prefill_tokens_per_second", "decode_tokens_per_second" })
            Assert.True(json.ContainsKey(key), key);
        Assert.Equal(6, json["tokens"]!.AsArray().Count);
        Assert.Null(json["text"]); // no tokenizer: ids only
        Assert.Equal(4, json["prompt_tokens"]!.GetValue<int>());
        Assert.Equal(6, json["completion_tokens"]!.GetValue<int>());
        Assert.True(json["prefill_tokens_per_second"]!.GetValue<double>() > 0);
        Assert.True(json["decode_tokens_per_second"]!.GetValue<double>() > 0);
        Assert.Equal("", r.Error);

        // The same seed gives the same tokens.
        var again = CliRunner.Run("generate", "--model", FixturePaths.AnyModelFixture(), "--prompt-ids", "5,6,7,8", "--max-new-tokens", "6",
            "--temperature", "0.7", "--seed", "3", "--ignore-eos", "--json");
        Assert.Equal(json["tokens"]!.ToJsonString(), JsonNode.Parse(again.Out)!["tokens"]!.ToJsonString());
    }

    [Fact]
    public void Without_a_tokenizer_streaming_prints_ids()
    {
        var r = CliRunner.Run("generate", "--model", FixturePaths.AnyModelFixture(), "--prompt-ids", "5,6,7", "--max-new-tokens", "5", "--temperature", "0", "--ignore-eos");
        Assert.True(r.ExitCode == 0, r.ToString());
        var ids = r.Out.Trim().Split(' ');
        Assert.Equal(5, ids.Length);
        Assert.All(ids, s => Assert.True(int.TryParse(s, out _), s));
        Assert.Contains("finish: length", r.Error);
    }

    [Fact]
    public void Text_prompt_streams_the_same_text_as_json_reports()
    {
        string[] common = ["--model", _text.Folder, "--prompt", "The whale", "--max-new-tokens", "12", "--temperature", "0", "--ignore-eos"];
        var streamed = CliRunner.Run(["generate", .. common]);
        Assert.True(streamed.ExitCode == 0, streamed.ToString());
        var json = CliRunner.Run(["generate", .. common, "--json"]);
        Assert.True(json.ExitCode == 0, json.ToString());
        var obj = JsonNode.Parse(json.Out)!;
        string text = obj["text"]!.GetValue<string>();
        Assert.Equal(text + Environment.NewLine, streamed.Out);
        Assert.Equal(12, obj["completion_tokens"]!.GetValue<int>());
        Assert.True(obj["prompt_tokens"]!.GetValue<int>() >= 2);
    }

    [Fact]
    public void Stop_sequence_ends_generation()
    {
        var free = CliRunner.Run("generate", "--model", _text.Folder, "--prompt", "The whale", "--max-new-tokens", "24", "--temperature", "0", "--ignore-eos", "--json");
        string text = JsonNode.Parse(free.Out)!["text"]!.GetValue<string>();
        Assert.True(text.Length >= 4, text);
        string stop = text.Substring(text.Length / 2, 2);
        var stopped = CliRunner.Run("generate", "--model", _text.Folder, "--prompt", "The whale", "--max-new-tokens", "24", "--temperature", "0",
            "--ignore-eos", "--stop", stop, "--stop", "zzzzzz", "--json");
        Assert.True(stopped.ExitCode == 0, stopped.ToString());
        var obj = JsonNode.Parse(stopped.Out)!;
        Assert.Equal("stop", obj["finish_reason"]!.GetValue<string>());
        Assert.DoesNotContain(stop, obj["text"]!.GetValue<string>());
    }

    [Fact]
    public void Chat_flag_renders_the_template_with_a_single_bos()
    {
        var r = CliRunner.Run("generate", "--model", _text.Folder, "--prompt", "hello", "--chat", "--system", "be brief",
            "--max-new-tokens", "4", "--temperature", "0", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());

        var tokenizer = Inference.Tokenization.JambaTokenizer.Load(_text.Folder);
        var setup = Inference.Chat.ChatSetup.Create(Inference.Templates.ChatTemplate.FromCheckpointOrFallback(_text.Folder), tokenizer);
        var ids = setup.EncodeSingleTurn("hello", "be brief");
        Assert.Equal(tokenizer.BosTokenId, ids[0]);
        Assert.NotEqual(tokenizer.BosTokenId, ids[1]);
        Assert.Equal(ids.Count, JsonNode.Parse(r.Out)!["prompt_tokens"]!.GetValue<int>());
        string rendered = tokenizer.Decode(ids);
        Assert.Contains("<system>be brief", rendered);
        Assert.EndsWith("<assistant>", rendered);
    }

    [Fact]
    public void Cancelling_a_generation_exits_130()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
        var r = CliRunner.RunCancellable(null, cts.Token, "generate", "--model", FixturePaths.AnyModelFixture(), "--prompt-ids", "1,2,3",
            "--max-new-tokens", "1000000", "--ignore-eos", "--temperature", "0");
        Assert.True(r.ExitCode == 130, r.ToString());
        Assert.Equal("error: cancelled.", r.Error.Trim());
    }

    [Fact]
    public async Task Cancelling_a_chat_waiting_for_input_exits_130()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        var output = new StringWriter();
        var error = new StringWriter();
        var blockingInput = new BlockingReader();
        var io = Infrastructure.CliIO.Capture(output, error, blockingInput);
        int code = await JambaApp.RunAsync(["chat", "--model", _text.Folder], io, cts.Token);
        blockingInput.Release();
        Assert.Equal(130, code);
    }

    /// <summary>A reader whose ReadLine blocks like a console with nobody typing.</summary>
    private sealed class BlockingReader : TextReader
    {
        private readonly ManualResetEventSlim _gate = new();

        public void Release() => _gate.Set();

        public override string? ReadLine()
        {
            _gate.Wait();
            return null;
        }
    }
}
