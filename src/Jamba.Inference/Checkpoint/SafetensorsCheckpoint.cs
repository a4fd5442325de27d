using System.Text.Json;

namespace Jamba.Inference.Checkpoint;

/// <summary>
/// The weights of a Hugging Face checkpoint folder: a single <c>model.safetensors</c>, or shards listed
/// by <c>model.safetensors.index.json</c>. Every shard is memory-mapped and validated on open; tensors
/// are looked up by their Hugging Face name.
/// </summary>
public sealed class SafetensorsCheckpoint : IDisposable
{
    /// <summary>The single-file weights name.</summary>
    public const string SingleFileName = "model.safetensors";
    /// <summary>The sharded-weights index name.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly List<SafetensorsFile> _files;
    private readonly Dictionary<string, SafetensorsFile> _owner;

    private SafetensorsCheckpoint(string folder, List<SafetensorsFile> files, Dictionary<string, SafetensorsFile> owner)
    {
        Folder = folder;
        _files = files;
        _owner = owner;
    }

    /// <summary>The checkpoint folder.</summary>
    public string Folder { get; }

    /// <summary>The mapped files (one, or one per shard).</summary>
    public IReadOnlyList<SafetensorsFile> Files => _files;

    /// <summary>Every tensor name in the checkpoint.</summary>
    public IEnumerable<string> TensorNames => _owner.Keys;

    /// <summary>Total bytes of tensor data.</summary>
    public long TotalTensorBytes => _owner.Sum(kv => kv.Value.Tensors[kv.Key].ByteLength);

    /// <summary>Whether the checkpoint has a tensor called <paramref name="name"/>.</summary>
    public bool Contains(string name) => _owner.ContainsKey(name);

    /// <summary>The header entry of tensor <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">No such tensor.</exception>
    public SafetensorsTensorInfo GetInfo(string name) => _owner[name].Tensors[name];

    /// <summary>The file holding tensor <paramref name="name"/>.</summary>
    public SafetensorsFile FileOf(string name) => _owner[name];

    /// <summary>Opens the weights of a checkpoint folder (sharded when an index is present).</summary>
    /// <remarks>Symbolic links are followed (the Hugging Face cache links every snapshot file into <c>blobs/</c>), but the
    /// shard names of the index must be relative paths that stay inside the folder; the index and the shards must list
    /// the same tensors. See <see cref="InputFiles"/> for the rule.</remarks>
    /// <exception cref="JambaCheckpointException">Missing weights, a malformed index or shard, or a shard path outside the folder.</exception>
    public static SafetensorsCheckpoint Open(string folder)
    {
        folder = Path.GetFullPath(folder);
        if (!Directory.Exists(folder)) throw new JambaCheckpointException(folder, null, "checkpoint folder does not exist.");
        string index = Path.Combine(folder, IndexFileName);
        string single = Path.Combine(folder, SingleFileName);
        var files = new List<SafetensorsFile>();
        try
        {
            var owner = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            if (InputFiles.Exists(index))
            {
                var map = ReadIndex(folder, index);
                var byFile = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
                foreach (var (tensor, shardPath) in map)
                {
                    if (!byFile.TryGetValue(shardPath, out var file))
                    {
                        if (!InputFiles.Exists(shardPath))
                            throw new JambaCheckpointException(index, tensor, $"shard '{Path.GetRelativePath(folder, shardPath)}' listed in the index does not exist.");
                        file = SafetensorsFile.Open(shardPath);
                        files.Add(file);
                        byFile[shardPath] = file;
                    }
                    if (!file.Tensors.ContainsKey(tensor))
                        throw new JambaCheckpointException(shardPath, tensor, $"listed in the index ({IndexFileName}) for this shard, but the shard has no such tensor.");
                    owner[tensor] = file;
                }
                // The index must describe the shards completely: a tensor it does not list would be silently ignored.
                foreach (var file in files)
                    foreach (var name in file.Tensors.Keys.Order(StringComparer.Ordinal))
                        if (!owner.TryGetValue(name, out var listed) || !ReferenceEquals(listed, file))
                            throw new JambaCheckpointException(file.Path, name, listed is null
                                ? $"is in this shard but not in the index ({IndexFileName}'s weight_map)."
                                : $"is in this shard, but the index ({IndexFileName}) assigns it to '{Path.GetFileName(listed.Path)}'.");
            }
            else if (InputFiles.Exists(single))
            {
                var file = SafetensorsFile.Open(single);
                files.Add(file);
                foreach (var name in file.Tensors.Keys) owner[name] = file;
            }
            else
            {
                throw new JambaCheckpointException(folder, null, $"no weights found: expected '{SingleFileName}' or '{IndexFileName}'.");
            }
            return new SafetensorsCheckpoint(folder, files, owner);
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
    }

    private static List<(string Tensor, string ShardPath)> ReadIndex(string folder, string index)
    {
        using var doc = InputFiles.ReadJson(index, lenient: false, (message, inner) => new JambaCheckpointException(index, null, message, inner));
        var root = new JsonField(doc.RootElement, "", (path, message) => new JambaCheckpointException(index, null, $"field '{path}': {message}"));
        var weightMap = root.Object().Get("weight_map")
            ?? throw new JambaCheckpointException(index, null, "expected an object with a 'weight_map' object (tensor name -> shard file).");
        weightMap.Object();
        string inside = folder.EndsWith(Path.DirectorySeparatorChar) ? folder : folder + Path.DirectorySeparatorChar;
        var result = new List<(string, string)>();
        foreach (var (name, value) in weightMap.Properties())
        {
            if (value.Kind != JsonValueKind.String || string.IsNullOrEmpty(value.Value.GetString()))
                throw new JambaCheckpointException(index, name, $"weight_map value must be a shard file name (a non-empty string), found {JsonField.Describe(value.Value)}.");
            string shard = value.Value.GetString()!;
            // Confinement (see InputFiles): the NAME must stay inside the folder; a link inside the folder is followed.
            string full;
            try
            {
                full = Path.GetFullPath(Path.Combine(folder, shard));
            }
            catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
            {
                throw new JambaCheckpointException(index, name, $"shard name '{shard}' is not a valid path: {e.Message}", e);
            }
            if (Path.IsPathRooted(shard) || shard.Contains('\0') || !full.StartsWith(inside, StringComparison.Ordinal))
                throw new JambaCheckpointException(index, name,
                    $"shard path '{shard}' leaves the checkpoint folder (shard names must be relative paths inside '{folder}'; symbolic links inside the folder are followed).");
            result.Add((name, full));
        }
        return result;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
    }
}
