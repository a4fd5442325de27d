using Jamba.Inference.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Checkpoint;

/// <summary>Writes a Hugging Face checkpoint folder from a configuration and named tensors: <c>config.json</c> and
/// safetensors weights (one file, or shards with <c>model.safetensors.index.json</c>). Knows files and names only; a model
/// is saved through <c>Modeling.CheckpointWriter</c>, which supplies its parameters under their HF names.</summary>
public static class CheckpointFolderWriter
{
    /// <summary>Saves <paramref name="tensors"/> (written in name order) with <paramref name="config"/> into <paramref name="folder"/>.</summary>
    /// <param name="config">The configuration (its <c>torch_dtype</c> is set to <paramref name="storage"/>).</param>
    /// <param name="tensors">Tensor names and values.</param>
    /// <param name="folder">Target folder (created if needed).</param>
    /// <param name="storage">Storage dtype (F32, F16 or BF16).</param>
    /// <param name="maxShardBytes">Split into shards of at most this many bytes; 0 writes one file.</param>
    public static void Save(JambaConfig config, IEnumerable<(string Name, Tensor Value)> tensors, string folder, ScalarType storage, long maxShardBytes = 0)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentOutOfRangeException.ThrowIfNegative(maxShardBytes);
        Directory.CreateDirectory(folder);
        string torchDtype = storage switch { ScalarType.BFloat16 => "bfloat16", ScalarType.Float16 => "float16", _ => "float32" };
        File.WriteAllText(Path.Combine(folder, "config.json"), (config with { TorchDtype = torchDtype }).ToJson(), SafetensorsWriter.Utf8);

        var ordered = tensors.OrderBy(p => p.Name, StringComparer.Ordinal).ToList();
        var shards = new List<List<(string Name, Tensor Value)>> { new() };
        long current = 0;
        foreach (var (name, p) in ordered)
        {
            long bytes = p.numel() * ElementSize(storage);
            if (maxShardBytes > 0 && current > 0 && current + bytes > maxShardBytes)
            {
                shards.Add([]);
                current = 0;
            }
            shards[^1].Add((name, p));
            current += bytes;
        }
        var metadata = new Dictionary<string, string> { ["format"] = "pt" };
        if (shards.Count == 1)
        {
            WriteShard(Path.Combine(folder, SafetensorsCheckpoint.SingleFileName), shards[0], storage, metadata);
            return;
        }
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        long total = 0;
        for (int i = 0; i < shards.Count; i++)
        {
            string file = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            WriteShard(Path.Combine(folder, file), shards[i], storage, metadata);
            foreach (var (name, t) in shards[i])
            {
                weightMap[name] = file;
                total += t.numel() * ElementSize(storage);
            }
        }
        var index = new { metadata = new { total_size = total }, weight_map = weightMap };
        File.WriteAllText(Path.Combine(folder, SafetensorsCheckpoint.IndexFileName),
            System.Text.Json.JsonSerializer.Serialize(index, new System.Text.Json.JsonSerializerOptions { WriteIndented = true }), SafetensorsWriter.Utf8);
    }

    private static void WriteShard(string path, List<(string Name, Tensor Value)> tensors, ScalarType storage, Dictionary<string, string> metadata)
    {
        using var scope = NewDisposeScope();
        var converted = tensors.Select(t => new KeyValuePair<string, Tensor>(t.Name, t.Value.detach().to(storage))).ToList();
        SafetensorsWriter.Write(path, converted, metadata);
    }

    private static int ElementSize(ScalarType t) => t == ScalarType.Float32 ? 4 : 2;
}
