using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Text.Json;

namespace Jamba.Inference.Checkpoint;

/// <summary>Element types a safetensors file may declare; only the floating-point ones hold Jamba weights.</summary>
public enum SafetensorsDType
{
    /// <summary>IEEE float32.</summary>
    F32,
    /// <summary>IEEE float16.</summary>
    F16,
    /// <summary>bfloat16 (upper half of a float32).</summary>
    BF16,
    /// <summary>float64.</summary>
    F64,
    /// <summary>64-bit signed integer.</summary>
    I64,
    /// <summary>32-bit signed integer.</summary>
    I32,
    /// <summary>16-bit signed integer.</summary>
    I16,
    /// <summary>8-bit signed integer.</summary>
    I8,
    /// <summary>8-bit unsigned integer.</summary>
    U8,
    /// <summary>Boolean (one byte).</summary>
    BOOL,
}

/// <summary>One tensor's entry in a safetensors header.</summary>
/// <param name="Name">The tensor name (Hugging Face parameter name).</param>
/// <param name="DType">Element type as stored.</param>
/// <param name="Shape">Dimensions.</param>
/// <param name="Begin">Start of the bytes, relative to the data section.</param>
/// <param name="End">End (exclusive) of the bytes, relative to the data section.</param>
public sealed record SafetensorsTensorInfo(string Name, SafetensorsDType DType, long[] Shape, long Begin, long End)
{
    /// <summary>Number of elements.</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Byte length of the stored data.</summary>
    public long ByteLength => End - Begin;
}

/// <summary>
/// A memory-mapped safetensors file: an 8-byte little-endian header length, a JSON header describing
/// every tensor, then the raw data. The header is validated completely when the file is opened; the
/// data is read on demand straight from the mapping (no copy of the whole file).
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>The largest header accepted (the format's reference implementation uses 100 MB).</summary>
    public const long MaxHeaderBytes = 100L * 1024 * 1024;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _base;
    private readonly long _dataStart;
    private readonly Dictionary<string, SafetensorsTensorInfo> _tensors;
    private bool _disposed;

    private SafetensorsFile(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* basePtr,
        long dataStart, long fileLength, Dictionary<string, SafetensorsTensorInfo> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        Path = path;
        _map = map;
        _view = view;
        _base = basePtr;
        _dataStart = dataStart;
        FileLength = fileLength;
        _tensors = tensors;
        Metadata = metadata;
    }

    /// <summary>The file's full path.</summary>
    public string Path { get; }

    /// <summary>File size in bytes.</summary>
    public long FileLength { get; }

    /// <summary>The <c>__metadata__</c> strings of the header.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>The tensors in the file, by name.</summary>
    public IReadOnlyDictionary<string, SafetensorsTensorInfo> Tensors => _tensors;

    /// <summary>Element size in bytes of <paramref name="dtype"/>.</summary>
    public static int ElementSize(SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F64 or SafetensorsDType.I64 => 8,
        SafetensorsDType.F32 or SafetensorsDType.I32 => 4,
        SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.I16 => 2,
        _ => 1,
    };

    /// <summary>Opens, maps and validates <paramref name="path"/>.</summary>
    /// <exception cref="JambaCheckpointException">The file is truncated or its header is malformed.</exception>
    public static SafetensorsFile Open(string path)
    {
        path = System.IO.Path.GetFullPath(path);
        long length = new FileInfo(path).Length;
        if (length < 8) throw new JambaCheckpointException(path, null, $"file is {length} bytes long, too short for a safetensors header length (8 bytes).");
        Span<byte> lenBytes = stackalloc byte[8];
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read))
            fs.ReadExactly(lenBytes);
        ulong headerLen = BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
        if (headerLen > (ulong)MaxHeaderBytes)
            throw new JambaCheckpointException(path, null, $"header length {headerLen} exceeds the limit of {MaxHeaderBytes} bytes (corrupt or not a safetensors file).");
        if (8 + (long)headerLen > length)
            throw new JambaCheckpointException(path, null, $"header length {headerLen} runs beyond the end of the file ({length} bytes; truncated?).");

        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        MemoryMappedViewAccessor? view = null;
        try
        {
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* basePtr = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePtr);
            basePtr += view.PointerOffset;
            var header = new ReadOnlySpan<byte>(basePtr + 8, (int)headerLen);
            long dataStart = 8 + (long)headerLen;
            var (tensors, metadata) = ParseHeader(path, header, length - dataStart);
            return new SafetensorsFile(path, map, view, basePtr, dataStart, length, tensors, metadata);
        }
        catch
        {
            if (view is not null)
            {
                view.SafeMemoryMappedViewHandle.ReleasePointer();
                view.Dispose();
            }
            map.Dispose();
            throw;
        }
    }

    private static (Dictionary<string, SafetensorsTensorInfo>, Dictionary<string, string>) ParseHeader(string path, ReadOnlySpan<byte> header, long dataLength)
    {
        JsonDocument doc;
        try
        {
            var reader = new Utf8JsonReader(header.TrimEnd((byte)' '));
            doc = JsonDocument.ParseValue(ref reader);
        }
        catch (JsonException ex)
        {
            throw new JambaCheckpointException(path, null, $"header is not valid JSON: {ex.Message}", ex);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new JambaCheckpointException(path, null, "header must be a JSON object.");
            var tensors = new Dictionary<string, SafetensorsTensorInfo>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object)
                        throw new JambaCheckpointException(path, null, "__metadata__ must be an object of strings.");
                    foreach (var m in prop.Value.EnumerateObject())
                        metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                    continue;
                }
                tensors.Add(prop.Name, ParseTensor(path, prop.Name, prop.Value, dataLength));
            }

            // Ranges must not overlap (two tensors aliasing the same bytes is a corrupt file).
            var ordered = tensors.Values.Where(t => t.ByteLength > 0).OrderBy(t => t.Begin).ToList();
            for (int i = 1; i < ordered.Count; i++)
                if (ordered[i].Begin < ordered[i - 1].End)
                    throw new JambaCheckpointException(path, ordered[i].Name,
                        $"byte range [{ordered[i].Begin}, {ordered[i].End}) overlaps tensor '{ordered[i - 1].Name}' [{ordered[i - 1].Begin}, {ordered[i - 1].End}).");
            return (tensors, metadata);
        }
    }

    private static SafetensorsTensorInfo ParseTensor(string path, string name, JsonElement e, long dataLength)
    {
        if (e.ValueKind != JsonValueKind.Object)
            throw new JambaCheckpointException(path, name, "header entry must be an object with dtype, shape and data_offsets.");
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw new JambaCheckpointException(path, name, "missing string field 'dtype'.");
        if (!Enum.TryParse<SafetensorsDType>(dt.GetString(), ignoreCase: false, out var dtype) || !Enum.IsDefined(dtype) || int.TryParse(dt.GetString(), out _))
            throw new JambaCheckpointException(path, name, $"unknown dtype \"{dt.GetString()}\" (known: {string.Join(", ", Enum.GetNames<SafetensorsDType>())}).");
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new JambaCheckpointException(path, name, "missing array field 'shape'.");
        var shape = new List<long>();
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long v) || v < 0)
                throw new JambaCheckpointException(path, name, $"shape entries must be non-negative integers, found {d.GetRawText()}.");
            shape.Add(v);
        }
        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new JambaCheckpointException(path, name, "missing field 'data_offsets' ([begin, end]).");
        if (!off[0].TryGetInt64(out long begin) || !off[1].TryGetInt64(out long end) || begin < 0 || end < begin)
            throw new JambaCheckpointException(path, name, $"data_offsets {off.GetRawText()} must be two integers with 0 <= begin <= end.");
        if (end > dataLength)
            throw new JambaCheckpointException(path, name, $"data_offsets [{begin}, {end}) run beyond the data section ({dataLength} bytes; truncated file?).");
        long elements = 1;
        foreach (var d in shape)
        {
            elements = checked(elements * d);
        }
        long expected = checked(elements * ElementSize(dtype));
        if (expected != end - begin)
            throw new JambaCheckpointException(path, name,
                $"shape [{string.Join(", ", shape)}] x {dtype} ({ElementSize(dtype)} bytes) = {expected} bytes, but data_offsets cover {end - begin} bytes.");
        return new SafetensorsTensorInfo(name, dtype, shape.ToArray(), begin, end);
    }

    /// <summary>The stored bytes of <paramref name="info"/>, straight from the mapping, in slices of at most <paramref name="maxSlice"/> bytes.
    /// Pages already consumed are released from this process's mapping (Linux), so loading never holds the file's pages
    /// and the copied weights at once: peak memory stays near the size of the weights.</summary>
    internal void ReadSlices(SafetensorsTensorInfo info, long maxSlice, ReadOnlySpanAction<byte, long> consume)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        long done = 0;
        while (done < info.ByteLength)
        {
            long n = Math.Min(maxSlice, info.ByteLength - done);
            byte* start = _base + _dataStart + info.Begin + done;
            consume(new ReadOnlySpan<byte>(start, (int)n), done);
            ReleasePages(start, n);
            done += n;
        }
    }

    private static void ReleasePages(byte* start, long length)
    {
        if (!OperatingSystem.IsLinux() || _madviseUnavailable) return;
        const long page = 4096;
        long first = ((long)start + page - 1) & ~(page - 1);
        long last = ((long)start + length) & ~(page - 1);
        try
        {
            if (last > first) _ = Madvise((nint)first, (nuint)(last - first), MadvDontNeed);
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            _madviseUnavailable = true; // only an optimisation
        }
    }

    private static bool _madviseUnavailable;

    private const int MadvDontNeed = 4;

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "madvise")]
    private static extern int Madvise(nint address, nuint length, int advice);

    /// <summary>Receives one slice of a tensor's bytes and its offset.</summary>
    internal delegate void ReadOnlySpanAction<T, in TArg>(ReadOnlySpan<T> span, TArg arg);

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
    }
}
