using Jamba.Inference.Checkpoint;
using Jamba.Inference.Config;
using Jamba.Inference.Modeling;

namespace Jamba.Testing;

/// <summary>What may vary between the tiny checkpoints the test projects build (defaults: the shared tiny model).</summary>
public sealed record TinyCheckpointOptions
{
    /// <summary><c>hidden_size</c>.</summary>
    public int HiddenSize { get; init; } = 32;

    /// <summary><c>intermediate_size</c>.</summary>
    public int IntermediateSize { get; init; } = 48;

    /// <summary><c>mamba_dt_rank</c>.</summary>
    public int DtRank { get; init; } = 4;

    /// <summary>The seed of <see cref="JambaInitializer.Initialize"/>.</summary>
    public int Seed { get; init; } = 11;

    /// <summary><c>max_position_embeddings</c>; null leaves it out of the config (the config's default).</summary>
    public int? MaxPositionEmbeddings { get; init; }

    /// <summary>Text written as <c>chat_template.jinja</c>; null writes none (unless <see cref="ChatTemplateFile"/>).</summary>
    public string? ChatTemplate { get; init; }

    /// <summary>A file copied byte for byte as <c>chat_template.jinja</c> (see <see cref="TinyCheckpoint.SharedTemplateFile"/>).</summary>
    public string? ChatTemplateFile { get; init; }
}

/// <summary>
/// The tiny random-weight Jamba checkpoint of the text-level tests: 4 layers (attention at 1 and 3, 4 experts at 1 and 3),
/// the real SentencePiece test tokenizer's vocabulary (1500) and its files, fp32 weights from
/// <see cref="JambaInitializer"/> with <c>lm_head</c> scaled by 40 (a sharper output distribution than the default init,
/// so that sampled text has some structure and outputs differ between prompts).
/// </summary>
public static class TinyCheckpoint
{
    /// <summary>The config of the tiny model (exactly this text for the default options).</summary>
    public static string ConfigJson(TinyCheckpointOptions? options = null)
    {
        options ??= new TinyCheckpointOptions();
        string json = $$"""
            {"model_type":"jamba","vocab_size":1500,"hidden_size":{{options.HiddenSize}},"intermediate_size":{{options.IntermediateSize}},"num_hidden_layers":4,
             "num_attention_heads":4,"num_key_value_heads":2,"num_experts":4,"num_experts_per_tok":2,
             "attn_layer_period":2,"attn_layer_offset":1,"expert_layer_period":2,"expert_layer_offset":1,
             "mamba_d_state":8,"mamba_d_conv":4,"mamba_expand":2,"mamba_dt_rank":{{options.DtRank}},"eos_token_id":2,"pad_token_id":0,"bos_token_id":1}
            """;
        return options.MaxPositionEmbeddings is int max ? json[..^1] + $",\n \"max_position_embeddings\":{max}}}" : json;
    }

    /// <summary><c>template.jinja</c> of the recorded template folder <paramref name="name"/> (e.g. <c>jamba-mini-1.7</c>)
    /// under <see cref="RepositoryPaths.ChatTemplates"/>.</summary>
    public static string SharedTemplateFile(string name) => Path.Combine(RecordedChatTemplates.Folder(name), "template.jinja");

    /// <summary>Writes the checkpoint (config, safetensors, tokenizer files, optional chat template) into <paramref name="folder"/>.</summary>
    public static void Write(string folder, TinyCheckpointOptions? options = null)
    {
        options ??= new TinyCheckpointOptions();
        if (options.ChatTemplate is not null && options.ChatTemplateFile is not null)
            throw new ArgumentException("Give ChatTemplate or ChatTemplateFile, not both.", nameof(options));
        var config = JambaConfig.Parse(ConfigJson(options));
        using (var model = new JambaForCausalLM(config, new ModelOptions { DType = ComputeDType.Float32 }))
        {
            JambaInitializer.Initialize(model, seed: options.Seed);
            // Sharper output distribution than the default init so that sampled text has some structure.
            using (TorchSharp.torch.no_grad()) model.lm_head!.weight.mul_(40);
            CheckpointWriter.Save(model, folder);
        }
        string data = RepositoryPaths.TokenizerTestData;
        File.Copy(Path.Combine(data, "tokenizer.model"), Path.Combine(folder, "tokenizer.model"));
        File.Copy(Path.Combine(data, "tokenizer_config.json"), Path.Combine(folder, "tokenizer_config.json"));
        if (options.ChatTemplateFile is not null)
            File.Copy(options.ChatTemplateFile, Path.Combine(folder, "chat_template.jinja"));
        else if (options.ChatTemplate is not null)
            File.WriteAllText(Path.Combine(folder, "chat_template.jinja"), options.ChatTemplate);
    }

    /// <summary>Writes the checkpoint into a new temp folder named <paramref name="prefix"/>… and returns its path.</summary>
    public static string CreateTemp(string prefix, TinyCheckpointOptions? options = null)
    {
        string folder = Directory.CreateTempSubdirectory(prefix).FullName;
        Write(folder, options);
        return folder;
    }

    /// <summary>Deletes <paramref name="folder"/> and its contents, ignoring I/O errors (a file still open).</summary>
    public static void Delete(string folder)
    {
        try { Directory.Delete(folder, recursive: true); } catch (IOException) { }
    }
}

/// <summary>A tiny checkpoint in a temp folder for the lifetime of an xunit class or collection fixture.</summary>
public abstract class TinyCheckpointFixture : IDisposable
{
    /// <summary>Builds the checkpoint in a temp folder named <paramref name="prefix"/>….</summary>
    protected TinyCheckpointFixture(string prefix, TinyCheckpointOptions? options = null)
    {
        Folder = TinyCheckpoint.CreateTemp(prefix, options);
    }

    /// <summary>The checkpoint folder.</summary>
    public string Folder { get; }

    /// <summary>Deletes the folder.</summary>
    public virtual void Dispose()
    {
        TinyCheckpoint.Delete(Folder);
        GC.SuppressFinalize(this);
    }
}
