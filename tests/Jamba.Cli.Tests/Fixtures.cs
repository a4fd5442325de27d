using Jamba.Inference.Checkpoint;
using Jamba.Inference.Config;
using Jamba.Inference.Modeling;
using Xunit;

namespace Jamba.Cli.Tests;

/// <summary>Locates the repository and the shared reference fixtures (<c>../shared/fixtures</c> and <c>JAMBA_EXTRA_FIXTURES</c>).</summary>
public static class FixturePaths
{
    public static string RepositoryRoot { get; } = FindRepositoryRoot();

    private static string FindRepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Jamba.sln"))) return dir.FullName;
        throw new InvalidOperationException($"Jamba.sln not found above {AppContext.BaseDirectory}.");
    }

    public static IReadOnlyList<string> Roots()
    {
        var roots = new List<string>();
        string shared = Path.GetFullPath(Path.Combine(RepositoryRoot, "..", "shared", "fixtures"));
        if (Directory.Exists(shared)) roots.Add(shared);
        foreach (var extra in (Environment.GetEnvironmentVariable("JAMBA_EXTRA_FIXTURES") ?? "")
                     .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            if (Directory.Exists(extra)) roots.Add(Path.GetFullPath(extra));
        return roots;
    }

    /// <summary>Every model fixture folder (with an <c>expected.json</c>).</summary>
    public static IReadOnlyList<string> ModelFixtures() =>
        Roots().Select(r => Path.Combine(r, "models")).Where(Directory.Exists)
            .SelectMany(d => Directory.GetDirectories(d).Order(StringComparer.Ordinal))
            .Where(f => File.Exists(Path.Combine(f, "expected.json"))).ToList();

    public static TheoryData<string> ModelFixtureData()
    {
        var data = new TheoryData<string>();
        foreach (var f in ModelFixtures()) data.Add(f);
        return data;
    }

    /// <summary>The first model fixture (a checkpoint without tokenizer files).</summary>
    public static string AnyModelFixture() =>
        ModelFixtures().FirstOrDefault() ?? throw new InvalidOperationException("No model fixtures under ../shared/fixtures/models.");
}

/// <summary>A small random-weight checkpoint with the real SentencePiece test tokenizer and a chat template.</summary>
public sealed class TextModelFixture : IDisposable
{
    public const string ConfigJson = """
        {"model_type":"jamba","vocab_size":1500,"hidden_size":32,"intermediate_size":48,"num_hidden_layers":4,
         "num_attention_heads":4,"num_key_value_heads":2,"num_experts":4,"num_experts_per_tok":2,
         "attn_layer_period":2,"attn_layer_offset":1,"expert_layer_period":2,"expert_layer_offset":1,
         "mamba_d_state":8,"mamba_d_conv":4,"mamba_expand":2,"mamba_dt_rank":4,"eos_token_id":2,"pad_token_id":0,"bos_token_id":1}
        """;

    public const string ChatTemplate =
        "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";

    public TextModelFixture()
    {
        Folder = Directory.CreateTempSubdirectory("jamba-cli-text-").FullName;
        var config = JambaConfig.Parse(ConfigJson);
        using (var model = new JambaForCausalLM(config, new ModelOptions { DType = ComputeDType.Float32 }))
        {
            JambaInitializer.Initialize(model, seed: 11);
            using (TorchSharp.torch.no_grad()) model.lm_head!.weight.mul_(40);
            CheckpointWriter.Save(model, Folder);
        }
        string data = Path.Combine(AppContext.BaseDirectory, "TestData");
        File.Copy(Path.Combine(data, "tokenizer.model"), Path.Combine(Folder, "tokenizer.model"));
        File.Copy(Path.Combine(data, "tokenizer_config.json"), Path.Combine(Folder, "tokenizer_config.json"));
        File.WriteAllText(Path.Combine(Folder, "chat_template.jinja"), ChatTemplate);
    }

    public string Folder { get; }

    public void Dispose()
    {
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { }
    }
}

/// <summary>A temporary folder deleted on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("jamba-cli-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}
