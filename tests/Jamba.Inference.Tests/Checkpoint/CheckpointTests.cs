using System.Buffers.Binary;
using System.Text;
using Jamba.Inference.Checkpoint;
using Jamba.Inference.Config;
using Jamba.Inference.Modeling;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Jamba.Inference.Tests;

/// <summary>Safetensors validation, sharding, tied embeddings, dense-as-expert-0 storage and load errors.</summary>
public sealed class CheckpointTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("jamba-ckpt-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    internal static JambaConfig TinyConfig(bool tied = false, int experts = 4) => JambaConfig.Parse($$"""
        {"model_type":"jamba","vocab_size":64,"hidden_size":16,"intermediate_size":24,"num_hidden_layers":4,
         "num_attention_heads":4,"num_key_value_heads":2,"num_experts":{{experts}},"num_experts_per_tok":2,
         "attn_layer_period":2,"attn_layer_offset":1,"expert_layer_period":2,"expert_layer_offset":1,
         "mamba_d_state":4,"mamba_d_conv":4,"mamba_expand":2,"mamba_dt_rank":2,"tie_word_embeddings":{{(tied ? "true" : "false")}}}
        """);

    private string WriteRandomCheckpoint(JambaConfig config, string name, long shardBytes = 0, ScalarType? dtype = null)
    {
        string folder = Path.Combine(_dir, name);
        using var model = new JambaForCausalLM(config, new ModelOptions { DType = ComputeDType.Float32 });
        JambaInitializer.Initialize(model, seed: 7);
        CheckpointWriter.Save(model, folder, dtype, shardBytes);
        return folder;
    }

    private static float[] Logits(JambaForCausalLM model)
    {
        using var ids = torch.tensor(new long[] { 1, 5, 9, 13, 2, 40 }, [1, 6]);
        using var logits = model.Forward(ids, positions: LogitPositions.All);
        return logits.data<float>().ToArray();
    }

    private string WriteRaw(string name, string headerJson, int dataBytes, long? headerLength = null)
    {
        string path = Path.Combine(_dir, name);
        var header = Encoding.UTF8.GetBytes(headerJson);
        using var fs = File.Create(path);
        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)(headerLength ?? header.Length));
        fs.Write(len);
        fs.Write(header);
        fs.Write(new byte[dataBytes]);
        return path;
    }

    [Fact]
    public void ShardedTiedAndBf16CheckpointsRoundTrip()
    {
        foreach (var (tied, shard, dtype) in new[] { (false, 0L, (ScalarType?)null), (true, 0L, null), (false, 4096L, null), (true, 3000L, ScalarType.BFloat16) })
        {
            var config = TinyConfig(tied);
            string folder = WriteRandomCheckpoint(config, $"rt-{tied}-{shard}-{dtype}", shard, dtype);
            Assert.Equal(shard > 0, File.Exists(Path.Combine(folder, SafetensorsCheckpoint.IndexFileName)));
            using var loaded = JambaForCausalLM.FromPretrained(folder, new ModelOptions { DType = ComputeDType.Float32 });
            Assert.Equal(tied, loaded.lm_head is null);
            using var reference = new JambaForCausalLM(config, new ModelOptions { DType = ComputeDType.Float32 });
            JambaInitializer.Initialize(reference, seed: 7);
            if (dtype == ScalarType.BFloat16)
                using (torch.no_grad())
                    foreach (var (_, p) in reference.named_parameters()) p.copy_(p.to(ScalarType.BFloat16).to(ScalarType.Float32));
            Assert.Equal(Logits(reference), Logits(loaded));
        }
    }

    [Fact]
    public void DenseMlpStoredAsExpertZeroIsAccepted()
    {
        var config = TinyConfig();
        string folder = WriteRandomCheckpoint(config, "dense-as-expert0");
        using var original = JambaForCausalLM.FromPretrained(folder, new ModelOptions { DType = ComputeDType.Float32 });
        // Rewrite the file renaming layer 0's dense MLP to feed_forward.experts.0.*
        var renamed = original.named_parameters().ToDictionary(
            p => p.name.StartsWith("model.layers.0.feed_forward.", StringComparison.Ordinal) ? p.name.Replace("feed_forward.", "feed_forward.experts.0.") : p.name,
            p => (Tensor)p.parameter);
        string other = Path.Combine(_dir, "renamed");
        Directory.CreateDirectory(other);
        File.Copy(Path.Combine(folder, "config.json"), Path.Combine(other, "config.json"));
        SafetensorsWriter.Write(Path.Combine(other, "model.safetensors"), renamed);
        using var reloaded = JambaForCausalLM.FromPretrained(other, new ModelOptions { DType = ComputeDType.Float32 });
        Assert.Equal(Logits(original), Logits(reloaded));
    }

    [Fact]
    public void TruncatedFileIsRejected()
    {
        string folder = WriteRandomCheckpoint(TinyConfig(), "truncated");
        string file = Path.Combine(folder, "model.safetensors");
        var bytes = File.ReadAllBytes(file);
        File.WriteAllBytes(file, bytes[..(bytes.Length - 100)]);
        var ex = Assert.Throws<JambaCheckpointException>(() => JambaForCausalLM.FromPretrained(folder));
        Assert.Equal(file, ex.File);
        Assert.NotNull(ex.Tensor);
        Assert.Contains("beyond the data section", ex.Message);
    }

    [Fact]
    public void HeaderLengthBeyondTheFileIsRejected()
    {
        string path = WriteRaw("huge-header.safetensors", "{}", 0, headerLength: 1000);
        var ex = Assert.Throws<JambaCheckpointException>(() => SafetensorsFile.Open(path));
        Assert.Contains("beyond the end of the file", ex.Message);
        string path2 = WriteRaw("insane-header.safetensors", "{}", 0, headerLength: long.MaxValue);
        Assert.Contains("exceeds the limit", Assert.Throws<JambaCheckpointException>(() => SafetensorsFile.Open(path2)).Message);
        string path3 = Path.Combine(_dir, "tiny.safetensors");
        File.WriteAllBytes(path3, [1, 2, 3]);
        Assert.Contains("too short", Assert.Throws<JambaCheckpointException>(() => SafetensorsFile.Open(path3)).Message);
    }

    [Theory]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "b", "overlaps tensor 'a'")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "a", "= 12 bytes, but data_offsets cover 8")]
    [InlineData("{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "a", "unknown dtype \"Q4\"")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "a", "beyond the data section")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "a", "non-negative")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "a", "data_offsets")]
    [InlineData("{\"a\": [1,2", 8, null, "not valid JSON")]
    public void MalformedHeadersNameTheFileAndTensor(string header, int dataBytes, string? tensor, string message)
    {
        string path = WriteRaw("bad.safetensors", header, dataBytes);
        var ex = Assert.Throws<JambaCheckpointException>(() => SafetensorsFile.Open(path));
        Assert.Equal(path, ex.File);
        Assert.Equal(tensor, ex.Tensor);
        Assert.Contains(message, ex.Message);
    }

    [Fact]
    public void WrongShapeMissingAndUnexpectedTensorsAreNamed()
    {
        var config = TinyConfig();
        string folder = WriteRandomCheckpoint(config, "names");
        using var model = JambaForCausalLM.FromPretrained(folder, new ModelOptions { DType = ComputeDType.Float32 });
        var all = model.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);

        void Rewrite(string sub, Dictionary<string, Tensor> tensors)
        {
            string f = Path.Combine(_dir, sub);
            Directory.CreateDirectory(f);
            File.Copy(Path.Combine(folder, "config.json"), Path.Combine(f, "config.json"), true);
            SafetensorsWriter.Write(Path.Combine(f, "model.safetensors"), tensors);
        }

        var missing = new Dictionary<string, Tensor>(all);
        missing.Remove("model.layers.0.mamba.x_proj.weight");
        Rewrite("missing", missing);
        var ex = Assert.Throws<JambaCheckpointException>(() => JambaForCausalLM.FromPretrained(Path.Combine(_dir, "missing")));
        Assert.Equal("model.layers.0.mamba.x_proj.weight", ex.Tensor);
        Assert.Contains("missing", ex.Message);

        using var wrong = torch.zeros(3, 3);
        var misShaped = new Dictionary<string, Tensor>(all) { ["model.layers.2.mamba.A_log"] = wrong };
        Rewrite("shape", misShaped);
        ex = Assert.Throws<JambaCheckpointException>(() => JambaForCausalLM.FromPretrained(Path.Combine(_dir, "shape")));
        Assert.Equal("model.layers.2.mamba.A_log", ex.Tensor);
        Assert.Contains("shape [3, 3] does not match the model's [32, 4]", ex.Message);

        var extra = new Dictionary<string, Tensor>(all) { ["model.layers.9.mamba.D"] = wrong };
        Rewrite("extra", extra);
        ex = Assert.Throws<JambaCheckpointException>(() => JambaForCausalLM.FromPretrained(Path.Combine(_dir, "extra")));
        Assert.Equal("model.layers.9.mamba.D", ex.Tensor);
        Assert.Contains("unexpected", ex.Message);
    }

    [Theory]
    [InlineData("../outside.safetensors")]
    [InlineData("/etc/passwd")]
    [InlineData("sub/../../x.safetensors")]
    public void IndexEntriesLeavingTheFolderAreRejected(string shard)
    {
        string folder = WriteRandomCheckpoint(TinyConfig(), "escape-" + Math.Abs(shard.GetHashCode()), shardBytes: 4096);
        string index = Path.Combine(folder, SafetensorsCheckpoint.IndexFileName);
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(index))!;
        json["weight_map"]!["model.embed_tokens.weight"] = shard;
        File.WriteAllText(index, json.ToJsonString());
        var ex = Assert.Throws<JambaCheckpointException>(() => JambaForCausalLM.FromPretrained(folder));
        Assert.Equal(index, ex.File);
        Assert.Equal("model.embed_tokens.weight", ex.Tensor);
        Assert.Contains("leaves the checkpoint folder", ex.Message);
    }

    [Fact]
    public void MissingWeightsAndInvalidConfigGiveSpecificErrors()
    {
        string folder = Path.Combine(_dir, "empty");
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "config.json"), TinyConfig().ToJson());
        Assert.Contains("no weights found", Assert.Throws<JambaCheckpointException>(() => JambaForCausalLM.FromPretrained(folder)).Message);
        File.WriteAllText(Path.Combine(folder, "config.json"), "{\"attn_layer_period\": 2, \"attn_layer_offset\": 3}");
        Assert.Equal("attn_layer_offset", Assert.Throws<JambaConfigException>(() => JambaForCausalLM.FromPretrained(folder)).Field);
        Assert.Throws<FileNotFoundException>(() => JambaForCausalLM.FromPretrained(Path.Combine(_dir, "nowhere")));
    }

    [Fact]
    public void CancelledLoadFreesItsTensorsAndProgressIsReported()
    {
        string folder = WriteRandomCheckpoint(TinyConfig(), "cancel");
        var reports = new List<LoadProgress>();
        using (var m = JambaForCausalLM.FromPretrained(folder, new ModelOptions { DType = ComputeDType.Float32 }, new SyncProgress(reports.Add)))
        {
            Assert.Equal(m.named_parameters().Count(), reports.Count);
            Assert.Equal(1.0, reports[^1].Fraction);
        }
        using var cts = new CancellationTokenSource();
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        int seen = 0;
        var cancelling = new SyncProgress(_ => { if (++seen == 3) cts.Cancel(); });
        Assert.ThrowsAny<OperationCanceledException>(() => JambaForCausalLM.FromPretrained(folder, new ModelOptions { DType = ComputeDType.Float32 }, cancelling, cts.Token));
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [Fact]
    public void EveryFixtureOpensAndItsTensorBytesMatchItsReadme()
    {
        foreach (var folder in FixtureRoots.Folders("models"))
        {
            using var ckpt = SafetensorsCheckpoint.Open(folder);
            Assert.True(ckpt.TotalTensorBytes > 0);
            Assert.All(ckpt.TensorNames, n => Assert.Contains(ckpt.GetInfo(n).DType, new[] { SafetensorsDType.F32, SafetensorsDType.BF16, SafetensorsDType.F16 }));
        }
    }

    private sealed class SyncProgress(Action<LoadProgress> report) : IProgress<LoadProgress>
    {
        public void Report(LoadProgress value) => report(value);
    }
}
