using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Jamba.Inference.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Caching;

/// <summary>A snapshot file is damaged, of another format version, or made by another model.</summary>
public sealed class SnapshotFormatException : Exception
{
    /// <summary>Creates the exception for <paramref name="path"/>.</summary>
    public SnapshotFormatException(string path, string message) : base($"{path}: {message}") => Path = path;

    /// <summary>The snapshot file.</summary>
    public string Path { get; }
}

/// <summary>
/// A prefilled context: its token ids, the attention K/V of every position, the Mamba conv windows and SSM
/// states, and the next-token logits. Generations started from it clone the state (cheap: the Mamba state is
/// constant-size and K/V is one copy) instead of prefilling the prefix again. Immutable; thread-safe; may be
/// saved to a file and loaded by a later process for the same model. Dispose it when no longer needed
/// (generations already started from it are unaffected).
/// </summary>
public sealed class ContextSnapshot : IDisposable
{
    private const string Magic = "JAMBASNP";
    /// <summary>Current file format version.</summary>
    public const int FormatVersion = 1;

    private readonly object _gate = new();
    private readonly HybridCache _cache;
    private readonly float[] _lastLogits;
    private int _users;
    private bool _disposeRequested;
    private bool _disposed;

    internal ContextSnapshot(IReadOnlyList<int> tokens, HybridCache cache, float[] lastLogits)
    {
        if (cache.BatchSize != 1) throw new ArgumentException("A snapshot holds one sequence.", nameof(cache));
        Tokens = tokens.ToArray();
        _cache = cache;
        _lastLogits = lastLogits;
        Fingerprint = ModelFingerprint(cache.Config, cache.DType);
    }

    /// <summary>The prefix's token ids.</summary>
    public IReadOnlyList<int> Tokens { get; }
    /// <summary>Number of positions.</summary>
    public int Length => Tokens.Count;
    /// <summary>Bytes of state (the cache-size formula at <see cref="Length"/>).</summary>
    public long SizeInBytes => _cache.SizeInBytes;
    /// <summary>Identifies the model architecture and dtype this snapshot belongs to.</summary>
    public string Fingerprint { get; }
    /// <summary>The next-token logits after the prefix (fp32, host memory).</summary>
    public ReadOnlySpan<float> LastLogits => _lastLogits;
    /// <summary>Whether <see cref="Dispose"/> was called.</summary>
    public bool IsDisposed { get { lock (_gate) return _disposeRequested; } }

    /// <summary>The fingerprint of a model: SHA-256 of its architecture (config without paths) and compute dtype.</summary>
    public static string ModelFingerprint(JambaConfig config, ScalarType dtype)
    {
        string canonical = (config with { SourcePath = null, TorchDtype = null }).ToJson() + "|" + dtype;
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(canonical))).ToLowerInvariant();
    }

    /// <summary>Clones the state into a new cache with room for <paramref name="extraCapacity"/> more positions.</summary>
    /// <exception cref="ObjectDisposedException">The snapshot was disposed.</exception>
    internal HybridCache CloneCache(int extraCapacity)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposeRequested, this);
            _users++;
        }
        try
        {
            return _cache.Clone(extraCapacity);
        }
        finally
        {
            lock (_gate)
            {
                _users--;
                if (_disposeRequested && _users == 0) FreeLocked();
            }
        }
    }

    /// <summary>Writes the snapshot to <paramref name="path"/> (versioned, checksummed).</summary>
    public void Save(string path)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposeRequested, this);
            _users++;
        }
        try
        {
            SaveCore(path);
        }
        finally
        {
            lock (_gate)
            {
                _users--;
                if (_disposeRequested && _users == 0) FreeLocked();
            }
        }
    }

    private void SaveCore(string path)
    {
        using var scope = NewDisposeScope();
        var tensors = _cache.StateTensors().Select(t => (t.Name, Value: t.Value.to(DeviceType.CPU).contiguous())).ToList();
        long offset = 0;
        var entries = new List<object>();
        foreach (var (name, value) in tensors)
        {
            long bytes = value.numel() * value.element_size();
            entries.Add(new { name, shape = value.shape, dtype = value.dtype.ToString(), offset, bytes });
            offset += bytes;
        }
        var header = JsonSerializer.SerializeToUtf8Bytes(new
        {
            fingerprint = Fingerprint,
            dtype = _cache.DType.ToString(),
            length = Length,
            tokens = Tokens,
            vocab = _lastLogits.Length,
            tensors = entries,
        });
        string temp = path + ".tmp";
        using (var fs = new FileStream(temp, FileMode.Create, FileAccess.Write))
        using (var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
        {
            void Write(ReadOnlySpan<byte> bytes)
            {
                fs.Write(bytes);
                hash.AppendData(bytes);
            }
            Span<byte> u32 = stackalloc byte[4];
            Write(Encoding.ASCII.GetBytes(Magic));
            BinaryPrimitives.WriteInt32LittleEndian(u32, FormatVersion);
            Write(u32);
            BinaryPrimitives.WriteInt32LittleEndian(u32, header.Length);
            Write(u32);
            Write(header);
            Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(_lastLogits.AsSpan()));
            foreach (var (_, value) in tensors)
            {
                using var flat = value.view(-1);
                long n = flat.numel(), chunk = (1L << 30) / value.element_size();
                for (long start = 0; start < n; start += chunk)
                {
                    using var part = flat.narrow(0, start, Math.Min(chunk, n - start));
                    Write(part.bytes);
                }
            }
            fs.Write(hash.GetHashAndReset());
        }
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Loads a snapshot written by <see cref="Save"/> for a model with <paramref name="config"/> and
    /// <paramref name="dtype"/> onto <paramref name="device"/>.</summary>
    /// <exception cref="SnapshotFormatException">Damaged file, unknown version, or a snapshot of another model or dtype.</exception>
    public static ContextSnapshot Load(string path, JambaConfig config, ScalarType dtype, Device device)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        long length = fs.Length;
        Span<byte> head = stackalloc byte[16];
        if (length < 16 + 32 || fs.Read(head) != 16 || Encoding.ASCII.GetString(head[..8]) != Magic)
            throw new SnapshotFormatException(path, "not a Jamba.NET context snapshot (bad magic).");
        int version = BinaryPrimitives.ReadInt32LittleEndian(head[8..]);
        if (version != FormatVersion)
            throw new SnapshotFormatException(path, $"format version {version} is not supported (this build reads version {FormatVersion}).");
        // Verify the checksum in one streamed pass (files may be far larger than 2 GB).
        using (var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
        {
            fs.Position = 0;
            var buffer = new byte[1 << 20];
            long remaining = length - 32;
            while (remaining > 0)
            {
                int n = fs.Read(buffer, 0, (int)Math.Min(buffer.Length, remaining));
                if (n <= 0) throw new SnapshotFormatException(path, "unexpected end of file.");
                hash.AppendData(buffer, 0, n);
                remaining -= n;
            }
            var stored = new byte[32];
            fs.ReadExactly(stored);
            if (!hash.GetHashAndReset().AsSpan().SequenceEqual(stored))
                throw new SnapshotFormatException(path, "checksum mismatch: the file is damaged or truncated.");
        }
        int headerLength = BinaryPrimitives.ReadInt32LittleEndian(head[12..]);
        if (headerLength <= 0 || 16L + headerLength > length - 32)
            throw new SnapshotFormatException(path, "header length runs beyond the file.");
        var headerBytes = new byte[headerLength];
        fs.Position = 16;
        fs.ReadExactly(headerBytes);
        using var doc = JsonDocument.Parse(headerBytes);
        var h = doc.RootElement;
        string fingerprint = h.GetProperty("fingerprint").GetString()!;
        string expected = ModelFingerprint(config, dtype);
        if (fingerprint != expected)
            throw new SnapshotFormatException(path, $"made by another model or dtype (snapshot {h.GetProperty("dtype").GetString()}, fingerprint {fingerprint[..12]}…; this model {dtype}, {expected[..12]}…).");
        int tokenCount = h.GetProperty("length").GetInt32();
        var tokens = h.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()).ToArray();
        int vocab = h.GetProperty("vocab").GetInt32();
        var logits = new float[vocab];
        fs.ReadExactly(System.Runtime.InteropServices.MemoryMarshal.AsBytes(logits.AsSpan()));
        long dataStart = 16L + headerLength + vocab * 4L;
        var index = h.GetProperty("tensors").EnumerateArray().ToDictionary(
            e => e.GetProperty("name").GetString()!,
            e => (Offset: e.GetProperty("offset").GetInt64(), Bytes: e.GetProperty("bytes").GetInt64(), Shape: e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray()));
        var cache = new HybridCache(config, 1, dtype, device);
        try
        {
            cache.Restore(tokenCount, (name, shape, type) =>
            {
                if (!index.TryGetValue(name, out var entry) || !entry.Shape.SequenceEqual(shape))
                    throw new SnapshotFormatException(path, $"tensor '{name}' is missing or has shape [{(entry.Shape is null ? "" : string.Join(", ", entry.Shape))}], expected [{string.Join(", ", shape)}].");
                var t = torch.empty(shape, dtype: type);
                if (entry.Bytes != t.numel() * t.element_size() || dataStart + entry.Offset + entry.Bytes > length - 32)
                    throw new SnapshotFormatException(path, $"tensor '{name}' has an inconsistent byte range.");
                fs.Position = dataStart + entry.Offset;
                using (var flat = t.view(-1))
                {
                    long n = flat.numel(), chunk = (1L << 30) / t.element_size();
                    for (long start = 0; start < n; start += chunk)
                    {
                        using var part = flat.narrow(0, start, Math.Min(chunk, n - start));
                        fs.ReadExactly(part.bytes);
                    }
                }
                if (device.type == DeviceType.CPU) return t;
                var moved = t.to(device);
                t.Dispose();
                return moved;
            });
        }
        catch
        {
            cache.Dispose();
            throw;
        }
        return new ContextSnapshot(tokens, cache, logits);
    }

    /// <summary>Frees the state once no clone is in progress.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _disposeRequested = true;
            if (_users == 0) FreeLocked();
        }
    }

    private void FreeLocked()
    {
        if (_disposed) return;
        _disposed = true;
        _cache.Dispose();
    }
}
