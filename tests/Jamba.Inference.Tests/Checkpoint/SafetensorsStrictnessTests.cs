using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using Jamba.Inference.Checkpoint;
using Jamba.Inference.Modeling;
using Jamba.Inference.Tests.Fixtures;
using Xunit;

namespace Jamba.Inference.Tests.Checkpoint;

/// <summary>Safetensors files and shard indexes are validated as strictly as the reference implementation
/// (huggingface/safetensors <c>Metadata::validate</c>): anything else is a JambaCheckpointException naming the file and tensor.</summary>
public sealed class SafetensorsStrictnessTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("jamba-st-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private const string A8 = "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";

    private JambaCheckpointException Rejects(string header, int dataBytes, string? tensor, string message, long? headerLength = null)
    {
        string path = HostileInputs.WriteRaw(Path.Combine(_dir, $"t{Guid.NewGuid():N}.safetensors"), header, dataBytes, headerLength);
        var ex = Assert.Throws<JambaCheckpointException>(() => SafetensorsFile.Open(path));
        Assert.Equal(path, ex.File);
        Assert.Equal(tensor, ex.Tensor);
        Assert.Contains(path, ex.Message);
        Assert.Contains(message, ex.Message);
        return ex;
    }

    [Theory]
    // bytes after the last tensor's data
    [InlineData("{" + A8 + "}", 12, "a", "4 bytes after the last tensor")]
    // no tensors but a data section
    [InlineData("{}", 3, null, "3 bytes after the last tensor")]
    // a gap between tensors
    [InlineData("{" + A8 + ",\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}", 16, "b", "bytes [8, 12) of the data section belong to no tensor")]
    // a first tensor that does not start at 0
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "a", "expected 0")]
    // overlaps, including a zero-length tensor inside another
    [InlineData("{" + A8 + ",\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", 8, "z", "overlaps tensor 'a'")]
    // dtype / shape / byte length
    [InlineData("{\"a\":{\"dtype\":\"F32, F16\",\"shape\":[4],\"data_offsets\":[0,8]}}", 8, "a", "unknown dtype \"F32, F16\"")]
    [InlineData("{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "a", "unknown dtype \"f32\"")]
    [InlineData("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "a", "= 4 bytes, but data_offsets cover 8")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, "a", "non-negative integers")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, "a", "non-negative integers")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1, -8],\"data_offsets\":[0,8]}}", 8, "a", "non-negative integers")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}", 8, "a", "more elements than a 64-bit count")]
    [InlineData("{\"a\":{\"dtype\":\"I64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,8]}}", 8, "a", "more bytes than a 64-bit count")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",8]}}", 8, "a", "must be two integers")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "a", "must be two integers with 0 <= begin <= end")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", 8, "a", "data_offsets")]
    [InlineData("{\"a\":[1,2]}", 8, "a", "must be an object")]
    // metadata
    [InlineData("{\"__metadata__\":{\"format\":1}," + A8 + "}", 8, null, "__metadata__ value 'format' must be a string, found the number 1")]
    [InlineData("{\"__metadata__\":{\"format\":{\"x\":\"pt\"}}," + A8 + "}", 8, null, "__metadata__ value 'format' must be a string, found an object")]
    [InlineData("{\"__metadata__\":[\"pt\"]," + A8 + "}", 8, null, "__metadata__ must be an object of strings")]
    // header shape
    [InlineData(" {" + A8 + "}", 8, null, "must start with '{'")]
    [InlineData("[" + A8 + "]", 8, null, "must start with '{'")]
    [InlineData("{" + A8 + ",\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, null, "Duplicate property 'a'")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, null, "Duplicate property 'dtype'")]
    [InlineData("{" + A8 + "}\t", 8, null, "padded only with trailing spaces")]
    [InlineData("{" + A8 + "}\n", 8, null, "padded only with trailing spaces")]
    [InlineData("{" + A8 + "} {}", 8, null, "not valid JSON")]
    [InlineData("{" + A8 + ",}", 8, null, "not valid JSON")]
    [InlineData("{/*c*/" + A8 + "}", 8, null, "not valid JSON")]
    public void HostileHeadersAreRejected(string header, int dataBytes, string? tensor, string message) => Rejects(header, dataBytes, tensor, message);

    [Fact]
    public void TensorsInAnyHeaderOrderAreAcceptedWhenTheyTileTheData()
    {
        // The reference sorts by offsets: JSON order does not matter, and spaces may pad the header.
        string header = "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},\"__metadata__\":{\"format\":\"pt\"}," + A8 +
                        ",\"e\":{\"dtype\":\"F16\",\"shape\":[0, 3],\"data_offsets\":[12,12]}}     ";
        string path = HostileInputs.WriteRaw(Path.Combine(_dir, "ok.safetensors"), header, 12);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(["a", "b", "e"], file.Tensors.Keys.Order());
        Assert.Equal("pt", file.Metadata["format"]);
    }

    [Fact]
    public void NulPaddingInvalidUtf8AndHeaderLengthLimitsAreRejected()
    {
        var json = Encoding.UTF8.GetBytes("{" + A8 + "}");
        string nul = HostileInputs.WriteRaw(Path.Combine(_dir, "nul.safetensors"), [.. json, 0, 0, 0], new byte[8]);
        var ex = Assert.Throws<JambaCheckpointException>(() => SafetensorsFile.Open(nul));
        Assert.Equal(nul, ex.File);
        Assert.Contains("ends with byte 0x00", ex.Message);
        Assert.Contains("only with trailing spaces (0x20)", ex.Message);

        var utf8 = Encoding.UTF8.GetBytes("{\"aX\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}");
        utf8[3] = 0xFF; // "a" followed by an invalid byte in the tensor name
        string bad = HostileInputs.WriteRaw(Path.Combine(_dir, "utf8.safetensors"), utf8, new byte[8]);
        ex = Assert.Throws<JambaCheckpointException>(() => SafetensorsFile.Open(bad));
        Assert.Equal(bad, ex.File);
        Assert.Contains("not valid UTF-8 (invalid byte 0xFF at header offset 3)", ex.Message);

        string big = HostileInputs.WriteRaw(Path.Combine(_dir, "big.safetensors"), "{}", 0, SafetensorsFile.MaxHeaderBytes + 1);
        Assert.Contains("exceeds the limit", Assert.Throws<JambaCheckpointException>(() => SafetensorsFile.Open(big)).Message);
        string beyond = HostileInputs.WriteRaw(Path.Combine(_dir, "beyond.safetensors"), "{}", 0, 3);
        Assert.Contains("runs beyond the end of the file", Assert.Throws<JambaCheckpointException>(() => SafetensorsFile.Open(beyond)).Message);
        string empty = HostileInputs.WriteRaw(Path.Combine(_dir, "empty.safetensors"), "", 0);
        Assert.Contains("must start with '{'", Assert.Throws<JambaCheckpointException>(() => SafetensorsFile.Open(empty)).Message);
        string dir = Directory.CreateDirectory(Path.Combine(_dir, "adir.safetensors")).FullName;
        Assert.Contains("cannot be opened", Assert.Throws<JambaCheckpointException>(() => SafetensorsFile.Open(dir)).Message);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(1)]
    [InlineData(-8)]
    [InlineData(8)]
    [InlineData(-3)]
    public void HeaderLengthOffByAFewBytesNeverLoadsShiftedWeights(int delta)
    {
        string folder = HostileInputs.WriteCheckpoint(Path.Combine(_dir, "ckpt"));
        string file = Path.Combine(folder, "model.safetensors");
        var bytes = File.ReadAllBytes(file);
        ulong len = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)((long)len + delta));
        File.WriteAllBytes(file, bytes);
        var ex = Assert.Throws<JambaCheckpointException>(() => JambaForCausalLM.FromPretrained(folder));
        Assert.Equal(file, ex.File);
        Assert.Matches("header|data section|bytes after the last tensor", ex.Message);
    }

    private (string Folder, string Index, JsonNode Json) Sharded()
    {
        string folder = HostileInputs.WriteCheckpoint(Path.Combine(_dir, $"sharded-{Guid.NewGuid():N}"), shardBytes: 20000);
        string index = Path.Combine(folder, SafetensorsCheckpoint.IndexFileName);
        return (folder, index, JsonNode.Parse(File.ReadAllText(index))!);
    }

    [Fact]
    public void IndexValuesMustBeShardNamesAndMatchTheShardsBothWays()
    {
        var (folder, index, json) = Sharded();
        json["weight_map"]!["model.embed_tokens.weight"] = 3;
        File.WriteAllText(index, json.ToJsonString());
        var ex = Assert.Throws<JambaCheckpointException>(() => SafetensorsCheckpoint.Open(folder));
        Assert.Equal(index, ex.File);
        Assert.Equal("model.embed_tokens.weight", ex.Tensor);
        Assert.Contains("must be a shard file name (a non-empty string), found the number 3", ex.Message);

        (folder, index, json) = Sharded();
        string shard = json["weight_map"]!["model.embed_tokens.weight"]!.GetValue<string>();
        json["weight_map"]!["model.no_such.weight"] = shard;
        File.WriteAllText(index, json.ToJsonString());
        ex = Assert.Throws<JambaCheckpointException>(() => SafetensorsCheckpoint.Open(folder));
        Assert.Equal(Path.Combine(folder, shard), ex.File);
        Assert.Equal("model.no_such.weight", ex.Tensor);
        Assert.Contains("listed in the index", ex.Message);

        (folder, index, json) = Sharded();
        shard = json["weight_map"]!["model.final_layernorm.weight"]!.GetValue<string>();
        json["weight_map"]!.AsObject().Remove("model.final_layernorm.weight");
        File.WriteAllText(index, json.ToJsonString());
        ex = Assert.Throws<JambaCheckpointException>(() => SafetensorsCheckpoint.Open(folder));
        Assert.Equal(Path.Combine(folder, shard), ex.File);
        Assert.Equal("model.final_layernorm.weight", ex.Tensor);
        Assert.Contains("not in the index", ex.Message);

        (folder, index, json) = Sharded();
        var names = json["weight_map"]!.AsObject().Select(kv => (kv.Key, Shard: kv.Value!.GetValue<string>())).ToList();
        var (moved, _) = names.First(n => n.Shard != names[0].Shard);
        json["weight_map"]![moved] = names[0].Shard; // claims a tensor is in the first shard
        File.WriteAllText(index, json.ToJsonString());
        ex = Assert.Throws<JambaCheckpointException>(() => SafetensorsCheckpoint.Open(folder));
        Assert.Equal(moved, ex.Tensor);
        Assert.Contains("listed in the index", ex.Message);
    }

    [Theory]
    [InlineData("{\"weight_map\": []}", "field 'weight_map': expected an object, found an array of 0")]
    [InlineData("[1]", "field '(root)': expected an object")]
    [InlineData("{\"metadata\": {}}", "expected an object with a 'weight_map' object")]
    [InlineData("{\"weight_map\": {\"a\": \"x.safetensors\", \"a\": \"y.safetensors\"}}", "Duplicate property 'a'")]
    [InlineData("{\"weight_map\": {\"a\": \"x.safetensors\"", "not valid JSON")]
    [InlineData("{\"weight_map\": {\"a\": \"\"}}", "must be a shard file name")]
    [InlineData("{\"weight_map\": {\"a\": null}}", "must be a shard file name (a non-empty string), found null")]
    [InlineData("{\"weight_map\": {\"a\": \"sub/../../x.safetensors\"}}", "leaves the checkpoint folder")]
    [InlineData("{\"weight_map\": {\"a\": \"nothere.safetensors\"}}", "listed in the index does not exist")]
    public void MalformedIndexesNameTheIndex(string text, string message)
    {
        var (folder, index, _) = Sharded();
        File.WriteAllText(index, text);
        var ex = Assert.Throws<JambaCheckpointException>(() => SafetensorsCheckpoint.Open(folder));
        Assert.Equal(index, ex.File);
        Assert.Contains(index, ex.Message);
        Assert.Contains(message, ex.Message);
    }

    [Fact]
    public void InvalidUtf8AndDeepNestingInTheIndexAreNamed()
    {
        var (folder, index, _) = Sharded();
        File.WriteAllBytes(index, [(byte)'{', (byte)'"', 0xC3, 0x28, (byte)'"', (byte)':', (byte)'1', (byte)'}']);
        var ex = Assert.Throws<JambaCheckpointException>(() => SafetensorsCheckpoint.Open(folder));
        Assert.Equal(index, ex.File);
        Assert.Contains("not valid UTF-8", ex.Message);

        File.WriteAllText(index, "{\"weight_map\":" + new string('[', 200) + new string(']', 200) + "}");
        ex = Assert.Throws<JambaCheckpointException>(() => SafetensorsCheckpoint.Open(folder));
        Assert.Contains("depth", ex.Message);
    }
}
