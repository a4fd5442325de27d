using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Jamba.Inference.Checkpoint;
using Jamba.Inference.Config;
using Jamba.Inference.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Tests.Fixtures;

/// <summary>Builds small checkpoint folders (and variants of their files) for the untrusted-input tests.</summary>
internal static class HostileInputs
{
    /// <summary>The tokenizer test data folder (tokenizer.json, tokenizer.model, tokenizer_config.json).</summary>
    public static string TokenizerData => Path.Combine(AppContext.BaseDirectory, "Tokenization", "TestData");

    /// <summary>A tiny config whose vocabulary matches the test tokenizer (1500 ids).</summary>
    public static JambaConfig TinyConfig(bool tied = false, int vocab = 1500) => JambaConfig.Parse($$"""
        {"model_type":"jamba","vocab_size":{{vocab}},"hidden_size":16,"intermediate_size":24,"num_hidden_layers":4,
         "num_attention_heads":4,"num_key_value_heads":2,"num_experts":4,"num_experts_per_tok":2,
         "attn_layer_period":2,"attn_layer_offset":1,"expert_layer_period":2,"expert_layer_offset":1,
         "mamba_d_state":4,"mamba_d_conv":4,"mamba_expand":2,"mamba_dt_rank":2,"eos_token_id":2,"pad_token_id":0,"bos_token_id":1,
         "tie_word_embeddings":{{(tied ? "true" : "false")}}}
        """);

    /// <summary>Writes a random-weight checkpoint (seed 7) to <paramref name="folder"/>, optionally sharded and with the test tokenizer files.</summary>
    public static string WriteCheckpoint(string folder, JambaConfig? config = null, long shardBytes = 0, bool tokenizer = false)
    {
        config ??= TinyConfig();
        using (var model = new JambaForCausalLM(config, new ModelOptions { DType = ComputeDType.Float32 }))
        {
            JambaInitializer.Initialize(model, seed: 7);
            CheckpointWriter.Save(model, folder, null, shardBytes);
        }
        if (tokenizer)
        {
            foreach (var f in new[] { "tokenizer.json", "tokenizer_config.json" })
                File.Copy(Path.Combine(TokenizerData, f), Path.Combine(folder, f), overwrite: true);
            File.WriteAllText(Path.Combine(folder, "generation_config.json"), """{"bos_token_id": 1, "eos_token_id": [2, 8], "pad_token_id": 0}""");
            File.WriteAllText(Path.Combine(folder, "chat_template.jinja"), "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}");
        }
        return folder;
    }

    /// <summary>Lays <paramref name="plainFolder"/> out as the Hugging Face hub cache does under <paramref name="hubRoot"/>:
    /// <c>models--org--name/blobs/&lt;sha256&gt;</c>, <c>snapshots/&lt;rev&gt;/&lt;file&gt;</c> as relative links into
    /// <c>../../blobs/</c>, and <c>refs/main</c>. Returns the snapshot folder.</summary>
    public static string MakeHfCacheLayout(string plainFolder, string hubRoot, string repo = "models--ai21labs--tiny-jamba")
    {
        string repoDir = Path.Combine(hubRoot, repo);
        string blobs = Path.Combine(repoDir, "blobs");
        const string revision = "0123456789abcdef0123456789abcdef01234567";
        string snapshot = Path.Combine(repoDir, "snapshots", revision);
        Directory.CreateDirectory(blobs);
        Directory.CreateDirectory(snapshot);
        Directory.CreateDirectory(Path.Combine(repoDir, "refs"));
        File.WriteAllText(Path.Combine(repoDir, "refs", "main"), revision);
        foreach (var file in Directory.GetFiles(plainFolder))
        {
            var bytes = File.ReadAllBytes(file);
            string sha = Convert.ToHexStringLower(SHA256.HashData(bytes));
            File.WriteAllBytes(Path.Combine(blobs, sha), bytes);
            File.CreateSymbolicLink(Path.Combine(snapshot, Path.GetFileName(file)), Path.Combine("..", "..", "blobs", sha));
        }
        return snapshot;
    }

    /// <summary>Copies the files of <paramref name="from"/> into a new folder <paramref name="to"/>.</summary>
    public static string CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)), overwrite: true);
        return to;
    }

    /// <summary>Writes a safetensors file from a header text, a data section and (optionally) a wrong header length.</summary>
    public static string WriteRaw(string path, string headerJson, int dataBytes, long? headerLength = null) =>
        WriteRaw(path, Encoding.UTF8.GetBytes(headerJson), new byte[dataBytes], headerLength);

    /// <summary>Writes a safetensors file from raw header bytes and data.</summary>
    public static string WriteRaw(string path, byte[] header, byte[] data, long? headerLength = null)
    {
        using var fs = File.Create(path);
        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)(headerLength ?? header.Length));
        fs.Write(len);
        fs.Write(header);
        fs.Write(data);
        return path;
    }

    /// <summary>fp32 logits of every position for a fixed prompt.</summary>
    public static float[] Logits(JambaForCausalLM model)
    {
        using var ids = torch.tensor(new long[] { 1, 5, 9, 13, 2, 40 }, [1, 6]);
        using var logits = model.Forward(ids, positions: LogitPositions.All);
        return logits.data<float>().ToArray();
    }

    /// <summary>Live tensors of this thread (TorchSharp's dispose-scope statistics).</summary>
    public static long LiveTensors => DisposeScopeManager.Statistics.ThreadTotalLiveCount;
}
