using Jamba.Inference.Checkpoint;
using Jamba.Inference.Config;
using Jamba.Inference.Modeling;
using Xunit;

namespace Jamba.SemanticKernel.Tests.Fixtures;

/// <summary>
/// A tiny random-weight Jamba checkpoint with the real SentencePiece test tokenizer and the real Jamba Mini 1.7
/// chat template (<c>chat_template.jinja</c>), built once in a temp folder (same approach as
/// Jamba.Inference.Tests' TextModelFixture).
/// </summary>
public sealed class ChatModelFixture : IDisposable
{
    public ChatModelFixture()
    {
        Folder = Directory.CreateTempSubdirectory("jamba-chat-").FullName;
        var config = JambaConfig.Parse("""
            {"model_type":"jamba","vocab_size":1500,"hidden_size":32,"intermediate_size":48,"num_hidden_layers":4,
             "num_attention_heads":4,"num_key_value_heads":2,"num_experts":4,"num_experts_per_tok":2,
             "attn_layer_period":2,"attn_layer_offset":1,"expert_layer_period":2,"expert_layer_offset":1,
             "mamba_d_state":8,"mamba_d_conv":4,"mamba_expand":2,"mamba_dt_rank":4,"eos_token_id":2,"pad_token_id":0,"bos_token_id":1,
             "max_position_embeddings":4096}
            """);
        using (var model = new JambaForCausalLM(config, new ModelOptions { DType = ComputeDType.Float32 }))
        {
            JambaInitializer.Initialize(model, seed: 11);
            // Sharper output distribution than the default init so that sampled text has some structure.
            using (TorchSharp.torch.no_grad()) model.lm_head!.weight.mul_(40);
            CheckpointWriter.Save(model, Folder);
        }
        string data = Path.Combine(AppContext.BaseDirectory, "TestData");
        File.Copy(Path.Combine(data, "tokenizer.model"), Path.Combine(Folder, "tokenizer.model"));
        File.Copy(Path.Combine(data, "tokenizer_config.json"), Path.Combine(Folder, "tokenizer_config.json"));
        File.Copy(Path.Combine(TemplatesRoot, "jamba-mini-1.7", "template.jinja"), Path.Combine(Folder, "chat_template.jinja"));
    }

    /// <summary>The checkpoint folder.</summary>
    public string Folder { get; }

    /// <summary><c>shared/fixtures/chat-templates</c>.</summary>
    public static string TemplatesRoot => FindTemplatesRoot();

    private static string FindTemplatesRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Jamba.sln")))
                return Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "fixtures", "chat-templates"));
        throw new InvalidOperationException($"Jamba.sln not found above {AppContext.BaseDirectory}.");
    }

    public void Dispose()
    {
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { }
    }
}

[CollectionDefinition(Name)]
public sealed class ChatModelCollection : ICollectionFixture<ChatModelFixture>
{
    public const string Name = "chat model";
}
