using Jamba.Inference.Checkpoint;
using Jamba.Inference.Engine;
using Jamba.Inference.Modeling;
using Jamba.Inference.Templates;
using Jamba.Inference.Tests.Fixtures;
using Jamba.Inference.Tokenization;
using Xunit;

namespace Jamba.Inference.Tests.Checkpoint;

/// <summary>Checkpoints laid out as real users have them: the Hugging Face hub cache (every file a relative link into
/// <c>blobs/</c>), a linked folder, non-ASCII paths, a trailing separator, a read-only folder.</summary>
public sealed class HfCacheLayoutTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("jamba-hf-").FullName;

    public void Dispose()
    {
        if (!OperatingSystem.IsWindows())
            foreach (var d in Directory.GetDirectories(_dir, "*", SearchOption.AllDirectories).Append(_dir))
                try { File.SetUnixFileMode(d, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute); } catch (IOException) { }
        Directory.Delete(_dir, recursive: true);
    }

    private static ModelLoadOptions Fp32 => new() { Model = new ModelOptions { DType = ComputeDType.Float32 } };

    private float[] PlainLogits(string folder)
    {
        using var model = JambaForCausalLM.FromPretrained(folder, new ModelOptions { DType = ComputeDType.Float32 });
        return HostileInputs.Logits(model);
    }

    private static async Task<float[]> HandleLogits(string folder, bool expectTokenizer = true)
    {
        using var handle = await JambaModelHandle.LoadAsync(folder, Fp32);
        Assert.Equal(expectTokenizer, handle.Tokenizer is not null);
        return HostileInputs.Logits(handle.Model);
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(20000L)]
    public async Task HubCacheSnapshotOfSymlinksLoadsLikeThePlainFolder(long shardBytes)
    {
        string plain = HostileInputs.WriteCheckpoint(Path.Combine(_dir, "plain"), shardBytes: shardBytes, tokenizer: true);
        Assert.Equal(shardBytes > 0, File.Exists(Path.Combine(plain, SafetensorsCheckpoint.IndexFileName)));
        string snapshot = HostileInputs.MakeHfCacheLayout(plain, Path.Combine(_dir, "hub"));
        foreach (var f in Directory.GetFiles(snapshot))
        {
            var info = new FileInfo(f);
            Assert.NotNull(info.LinkTarget);
            Assert.StartsWith("../../blobs/", info.LinkTarget);
        }

        var expected = PlainLogits(plain);
        Assert.Equal(expected, PlainLogits(snapshot));
        Assert.Equal(expected, await HandleLogits(snapshot));
        Assert.Equal(expected, await HandleLogits(snapshot + Path.DirectorySeparatorChar));

        var tokenizer = JambaTokenizer.Load(snapshot);
        Assert.Equal(JambaTokenizer.Load(plain).Encode("Hello world"), tokenizer.Encode("Hello world"));
        Assert.Contains(8, tokenizer.EosTokenIds); // from the linked generation_config.json
        Assert.Equal("<|user|>hi", ChatTemplate.FromCheckpoint(snapshot).Render(System.Text.Json.Nodes.JsonNode.Parse("""[{"role":"user","content":"hi"}]""")));
        using var ckpt = SafetensorsCheckpoint.Open(snapshot);
        Assert.All(ckpt.Files, f => Assert.Equal(((FileInfo)new FileInfo(f.Path).ResolveLinkTarget(true)!).Length, f.FileLength));
    }

    [Fact]
    public void IndexShardNamesMayNotLeaveTheSnapshotEvenThoughLinksDo()
    {
        // The rule: links inside the folder are followed wherever they point, but names given by the index stay inside.
        string plain = HostileInputs.WriteCheckpoint(Path.Combine(_dir, "plain"), shardBytes: 20000);
        string snapshot = HostileInputs.MakeHfCacheLayout(plain, Path.Combine(_dir, "hub"));
        string index = Path.Combine(snapshot, SafetensorsCheckpoint.IndexFileName);
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(index))!;
        string firstShard = json["weight_map"]!["model.embed_tokens.weight"]!.GetValue<string>();
        string blob = Path.GetFileName(new FileInfo(Path.Combine(snapshot, firstShard)).LinkTarget!);
        json["weight_map"]!["model.embed_tokens.weight"] = "../../blobs/" + blob;
        File.Delete(index); // replace the link by a plain file (the blob stays as it was)
        File.WriteAllText(index, json.ToJsonString());
        var ex = Assert.Throws<JambaCheckpointException>(() => SafetensorsCheckpoint.Open(snapshot));
        Assert.Equal(index, ex.File);
        Assert.Equal("model.embed_tokens.weight", ex.Tensor);
        Assert.Contains("leaves the checkpoint folder", ex.Message);
        Assert.Contains("symbolic links inside the folder are followed", ex.Message);
    }

    [Fact]
    public void BrokenAndLoopingLinksAreNamed()
    {
        string plain = HostileInputs.WriteCheckpoint(Path.Combine(_dir, "plain"), tokenizer: true);
        string snapshot = HostileInputs.MakeHfCacheLayout(plain, Path.Combine(_dir, "hub"));
        string weights = Path.Combine(snapshot, "model.safetensors");
        File.Delete(new FileInfo(weights).ResolveLinkTarget(true)!.FullName); // the blob is gone
        var ex = Assert.Throws<JambaCheckpointException>(() => JambaForCausalLM.FromPretrained(snapshot));
        Assert.Equal(weights, ex.File);
        Assert.Contains("which does not exist", ex.Message);

        string tokenizerJson = Path.Combine(snapshot, "tokenizer.json");
        File.Delete(tokenizerJson);
        File.CreateSymbolicLink(tokenizerJson, "tokenizer.json");
        var tex = Assert.Throws<JambaTokenizerException>(() => JambaTokenizer.Load(snapshot));
        Assert.Equal(tokenizerJson, tex.File);
        Assert.Contains("cannot be read", tex.Message);

        string config = Path.Combine(snapshot, "config.json");
        File.Delete(config);
        File.CreateSymbolicLink(config, "../../blobs/missing");
        var cex = Assert.Throws<JambaConfigException>(() => JambaForCausalLM.FromPretrained(snapshot));
        Assert.Equal(config, cex.Source);
        Assert.Contains("does not exist", cex.Message);
    }

    [Fact]
    public async Task LinkedFolderNonAsciiPathAndTrailingSeparatorLoad()
    {
        string plain = HostileInputs.WriteCheckpoint(Path.Combine(_dir, "plain"), tokenizer: true);
        var expected = PlainLogits(plain);

        string link = Path.Combine(_dir, "linked-model");
        Directory.CreateSymbolicLink(link, plain);
        Assert.Equal(expected, PlainLogits(link));
        Assert.Equal(expected, await HandleLogits(link));

        string unicode = HostileInputs.CopyFolder(plain, Path.Combine(_dir, "modèles", "ジャンバ"));
        Assert.Equal(expected, PlainLogits(unicode));
        Assert.Equal(expected, await HandleLogits(unicode));
        Assert.NotNull(JambaTokenizer.Load(unicode));
        Assert.NotNull(ChatTemplate.FromCheckpoint(unicode));

        string withSeparator = plain + Path.DirectorySeparatorChar;
        Assert.Equal(expected, PlainLogits(withSeparator));
        Assert.Equal(expected, await HandleLogits(withSeparator));
        Assert.NotNull(JambaTokenizer.Load(withSeparator));
        using var handle = await JambaModelHandle.LoadAsync(withSeparator, Fp32);
        Assert.Equal("plain", handle.ModelId);
    }

    [Fact]
    public async Task ReadOnlyFolderLoadsAndIsNotWritten()
    {
        string folder = HostileInputs.WriteCheckpoint(Path.Combine(_dir, "readonly"), shardBytes: 20000, tokenizer: true);
        var expected = PlainLogits(folder);
        if (OperatingSystem.IsWindows())
        {
            foreach (var f in Directory.GetFiles(folder)) File.SetAttributes(f, FileAttributes.ReadOnly);
        }
        else
        {
            foreach (var f in Directory.GetFiles(folder)) File.SetUnixFileMode(f, UnixFileMode.UserRead | UnixFileMode.GroupRead | UnixFileMode.OtherRead); // 444
            File.SetUnixFileMode(folder, UnixFileMode.UserRead | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute); // 555
        }
        // Tests may run as root, which writes through permission bits: compare the folder before and after instead.
        string Listing() => string.Join("\n", Directory.GetFileSystemEntries(folder).Order(StringComparer.Ordinal)
            .Select(f => $"{f} {new FileInfo(f).Length} {File.GetLastWriteTimeUtc(f):O}"));
        string before = Listing();
        var dirTime = Directory.GetLastWriteTimeUtc(folder);

        Assert.Equal(expected, await HandleLogits(folder));
        Assert.NotNull(JambaTokenizer.Load(folder));
        Assert.NotNull(ChatTemplate.FromCheckpoint(folder));

        Assert.Equal(before, Listing());
        Assert.Equal(dirTime, Directory.GetLastWriteTimeUtc(folder));
    }
}
