using Jamba.Inference.Config;

namespace Jamba.Cli.Infrastructure;

/// <summary>Named random-weight checkpoint shapes for benchmarks and tests.</summary>
internal static class Presets
{
    /// <summary>
    /// <c>bench</c>: the speed benchmark's small Jamba (issues 4 and 8): vocab 32768, hidden 1024, 8 layers with attention at
    /// layer 4, 8 experts top-2 on odd layers, intermediate 2816, 16 heads / 4 KV heads, d_state 16, d_conv 4, expand 2,
    /// dt_rank 64, bf16. <c>long</c>: a narrow model for long-context tests (issue 9): hidden 256, 8 layers with attention
    /// at layer 4, 4 experts top-2, vocab 32768, intermediate 512, 8 heads / 2 KV heads, bf16.
    /// </summary>
    public static IReadOnlyDictionary<string, string> Json { get; } = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        ["bench"] = """
            {"model_type":"jamba","vocab_size":32768,"hidden_size":1024,"intermediate_size":2816,"num_hidden_layers":8,
             "num_attention_heads":16,"num_key_value_heads":4,"attn_layer_period":8,"attn_layer_offset":4,
             "num_experts":8,"num_experts_per_tok":2,"expert_layer_period":2,"expert_layer_offset":1,
             "mamba_d_state":16,"mamba_d_conv":4,"mamba_expand":2,"mamba_dt_rank":64,"use_mamba_kernels":false,
             "max_position_embeddings":262144,"pad_token_id":0,"bos_token_id":1,"eos_token_id":2,"torch_dtype":"bfloat16"}
            """,
        ["long"] = """
            {"model_type":"jamba","vocab_size":32768,"hidden_size":256,"intermediate_size":512,"num_hidden_layers":8,
             "num_attention_heads":8,"num_key_value_heads":2,"attn_layer_period":8,"attn_layer_offset":4,
             "num_experts":4,"num_experts_per_tok":2,"expert_layer_period":2,"expert_layer_offset":1,
             "mamba_d_state":16,"mamba_d_conv":4,"mamba_expand":2,"mamba_dt_rank":16,"use_mamba_kernels":false,
             "max_position_embeddings":262144,"pad_token_id":0,"bos_token_id":1,"eos_token_id":2,"torch_dtype":"bfloat16"}
            """,
    };

    /// <summary>The preset's configuration.</summary>
    /// <exception cref="UsageException">Unknown name.</exception>
    public static JambaConfig Get(string name) =>
        Json.TryGetValue(name, out var json)
            ? JambaConfig.Parse(json, $"preset '{name.ToLowerInvariant()}'")
            : throw new UsageException($"unknown --preset '{name}'; known: {string.Join(", ", Json.Keys)}.");
}
