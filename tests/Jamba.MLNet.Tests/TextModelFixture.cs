using Jamba.Inference.Checkpoint;
using Jamba.Inference.Config;
using Jamba.Inference.Modeling;
using Microsoft.ML;
using Xunit;

namespace Jamba.MLNet.Tests;

/// <summary>
/// Small random-weight Jamba checkpoints with the real SentencePiece test tokenizer (the shared fixture checkpoints have
/// no tokenizer), built once per test run in temp folders. Same approach as Jamba.Inference.Tests' TextModelFixture.
/// </summary>
public sealed class TextModelFixture : IDisposable
{
    public TextModelFixture()
    {
        Folder = Create(hiddenSize: 32, intermediateSize: 48, dtRank: 4, seed: 11);
        ChatFolder = Create(hiddenSize: 32, intermediateSize: 48, dtRank: 4, seed: 11);
        File.WriteAllText(Path.Combine(ChatFolder, "chat_template.jinja"),
            "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|eom|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}");
    }

    /// <summary>A checkpoint folder (no chat template: the plain fallback applies).</summary>
    public string Folder { get; }

    /// <summary>The same weights with a chat template.</summary>
    public string ChatFolder { get; }

    /// <summary>Builds a checkpoint with <c>jamba-tiny-a</c>'s shape (hidden 64, 4 layers, 4 experts) but the test tokenizer's vocabulary.</summary>
    public static string CreateFixtureSize(int seed = 5) => Create(hiddenSize: 64, intermediateSize: 128, dtRank: 8, seed: seed);

    public static string Create(int hiddenSize, int intermediateSize, int dtRank, int seed)
    {
        string folder = Directory.CreateTempSubdirectory("jamba-mlnet-").FullName;
        var config = JambaConfig.Parse($$"""
            {"model_type":"jamba","vocab_size":1500,"hidden_size":{{hiddenSize}},"intermediate_size":{{intermediateSize}},"num_hidden_layers":4,
             "num_attention_heads":4,"num_key_value_heads":2,"num_experts":4,"num_experts_per_tok":2,
             "attn_layer_period":2,"attn_layer_offset":1,"expert_layer_period":2,"expert_layer_offset":1,
             "mamba_d_state":8,"mamba_d_conv":4,"mamba_expand":2,"mamba_dt_rank":{{dtRank}},"eos_token_id":2,"pad_token_id":0,"bos_token_id":1}
            """);
        using (var model = new JambaForCausalLM(config, new ModelOptions { DType = ComputeDType.Float32 }))
        {
            JambaInitializer.Initialize(model, seed);
            // A sharper output distribution than the default init, so that outputs differ between prompts.
            using (TorchSharp.torch.no_grad()) model.lm_head!.weight.mul_(40);
            CheckpointWriter.Save(model, folder);
        }
        string data = Path.Combine(AppContext.BaseDirectory, "TestData");
        File.Copy(Path.Combine(data, "tokenizer.model"), Path.Combine(folder, "tokenizer.model"));
        File.Copy(Path.Combine(data, "tokenizer_config.json"), Path.Combine(folder, "tokenizer_config.json"));
        return folder;
    }

    public void Dispose()
    {
        JambaPipelineModels.ReleaseAll();
        foreach (var f in new[] { Folder, ChatFolder })
            try { Directory.Delete(f, recursive: true); } catch (IOException) { }
    }
}

[CollectionDefinition(Name)]
public sealed class TextModelCollection : ICollectionFixture<TextModelFixture>
{
    public const string Name = "text model";
}
