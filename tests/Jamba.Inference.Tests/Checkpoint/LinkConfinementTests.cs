using Jamba.Inference.Config;
using Jamba.Inference.Modeling;
using Xunit;

namespace Jamba.Inference.Tests;

/// <summary>Links in a checkpoint folder are followed only inside the folder or the repository it is a snapshot of.</summary>
public sealed class LinkConfinementTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("jamba-links-").FullName;

    public void Dispose()
    {
        Environment.SetEnvironmentVariable("JAMBA_ALLOW_EXTERNAL_LINKS", null);
        try { Directory.Delete(_root, true); } catch (IOException) { }
    }

    [Fact]
    public void ALinkLeavingTheCheckpointIsRefusedUnlessAllowed()
    {
        string folder = Path.Combine(_root, "model");
        TinyCheckpoint.Write(folder, new TinyCheckpointOptions());
        string outside = Path.Combine(_root, "elsewhere");
        Directory.CreateDirectory(outside);
        File.Move(Path.Combine(folder, "config.json"), Path.Combine(outside, "config.json"));
        File.CreateSymbolicLink(Path.Combine(folder, "config.json"), Path.Combine(outside, "config.json"));

        var e = Assert.Throws<JambaConfigException>(() => JambaConfig.Load(folder));
        Assert.Contains("outside the checkpoint folder", e.Message);
        Assert.Contains(Path.Combine(outside, "config.json"), e.Message);
        Assert.Contains("config.json", e.Source ?? e.Message);

        string shard = Path.Combine(folder, "model.safetensors");
        File.Move(shard, Path.Combine(outside, "model.safetensors"));
        File.CreateSymbolicLink(shard, Path.Combine(outside, "model.safetensors"));
        Environment.SetEnvironmentVariable("JAMBA_ALLOW_EXTERNAL_LINKS", "1");
        JambaConfig.Load(folder);
        using (var model = JambaForCausalLM.FromPretrained(folder, new ModelOptions { DType = ComputeDType.Float32 })) Assert.True(model.ParameterCount > 0);
        Environment.SetEnvironmentVariable("JAMBA_ALLOW_EXTERNAL_LINKS", null);
        File.Delete(Path.Combine(folder, "config.json"));
        File.Copy(Path.Combine(outside, "config.json"), Path.Combine(folder, "config.json"));
        var s = Assert.Throws<JambaCheckpointException>(() => JambaForCausalLM.FromPretrained(folder, new ModelOptions { DType = ComputeDType.Float32 }));
        Assert.Contains("outside the checkpoint folder", s.Message);
        Assert.Contains("model.safetensors", s.File);
    }
}
