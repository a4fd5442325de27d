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
    /// <remarks>
    /// The file may be a symbolic link (the Hugging Face cache links every snapshot file into <c>blobs/</c>): it is
    /// opened once and sized and mapped through that handle, so the size is the target's. Validation is that of the
    /// reference implementation (huggingface/safetensors <c>Metadata::validate</c>), stricter where it accepts
    /// ambiguous input: the header is strict UTF-8 JSON starting with <c>{</c>, padded only with trailing spaces
    /// (0x20), without duplicate keys; <c>__metadata__</c> maps strings to strings; every tensor's byte count is
    /// exactly <c>product(shape) × dtype size</c>; sorted by offset, the tensors cover the data section exactly,
    /// contiguously (no gap, no overlap, nothing after the last one).
    /// </remarks>
    /// <exception cref="JambaCheckpointException">The file cannot be read, is truncated or its header is malformed.</exception>
    public static SafetensorsFile Open(string path)
    {
        path = System.IO.Path.GetFullPath(path);
        string file = path;
        InputFiles.EnsureConfined(path, (message, inner) => new JambaCheckpointException(file, null, message, inner));
        FileStream? fs;
        try
        {
            fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.RandomAccess);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            throw new JambaCheckpointException(path, null, $"cannot be opened{InputFiles.DescribeLink(path)}: {e.Message}", e);
        }
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        bool pointerAcquired = false;
        try
        {
            long length;
            try
            {
                length = RandomAccess.GetLength(fs.SafeFileHandle); // the opened target's size, not the link's
            }
            catch (Exception e) when (e is IOException or NotSupportedException or UnauthorizedAccessException)
            {
                throw new JambaCheckpointException(path, null, $"cannot be sized (not a regular file?): {e.Message}", e);
            }
            if (length < 8) throw new JambaCheckpointException(path, null, $"file is {length} bytes long, too short for a safetensors header length (8 bytes).");
            Span<byte> lenBytes = stackalloc byte[8];
            if (RandomAccess.Read(fs.SafeFileHandle, lenBytes, 0) != 8)
                throw new JambaCheckpointException(path, null, "the 8-byte header length cannot be read.");
            ulong headerLen = BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
            if (headerLen > (ulong)MaxHeaderBytes)
                throw new JambaCheckpointException(path, null, $"header length {headerLen} exceeds the limit of {MaxHeaderBytes} bytes (corrupt or not a safetensors file).");
            if (8 + (long)headerLen > length)
                throw new JambaCheckpointException(path, null, $"header length {headerLen} runs beyond the end of the file ({length} bytes; truncated?).");

            map = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            fs = null; // owned by the map from here
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* basePtr = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePtr);
            pointerAcquired = true;
            basePtr += view.PointerOffset;
            var header = new ReadOnlySpan<byte>(basePtr + 8, (int)headerLen);
            long dataStart = 8 + (long)headerLen;
            var (tensors, metadata) = ParseHeader(path, header, length - dataStart);
            return new SafetensorsFile(path, map, view, basePtr, dataStart, length, tensors, metadata);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Release();
            throw new JambaCheckpointException(path, null, $"cannot be mapped: {e.Message}", e);
        }
        catch
        {
            Release();
            throw;
        }

        void Release()
        {
            if (view is not null)
            {
                if (pointerAcquired) view.SafeMemoryMappedViewHandle.ReleasePointer();
                view.Dispose();
            }
            map?.Dispose();
            fs?.Dispose();
        }
    }

    /// <summary>Parses and validates a header (the bytes between the length and the data section).</summary>
    internal static (Dictionary<string, SafetensorsTensorInfo>, Dictionary<string, string>) ParseHeader(string path, ReadOnlySpan<byte> header, long dataLength)
    {
        if (InputFiles.FirstInvalidUtf8(header) is int bad)
            throw new JambaCheckpointException(path, null, $"header is not valid UTF-8 (invalid byte 0x{header[bad]:X2} at header offset {bad}).");
        if (header.Length == 0 || header[0] != (byte)'{')
            throw new JambaCheckpointException(path, null,
                $"header must start with '{{' (a JSON object), found {(header.Length == 0 ? "an empty header" : $"byte 0x{header[0]:X2}")}.");
        var json = header.TrimEnd((byte)' ');
        if (json[^1] != (byte)'}')
            throw new JambaCheckpointException(path, null,
                $"header is not valid JSON: it must be one JSON object padded only with trailing spaces (0x20), but it ends with byte 0x{json[^1]:X2} at header offset {json.Length - 1} " +
                $"(NUL padding, or a header length that is off: {header.Length}).");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json.ToArray(), InputFiles.JsonOptions(lenient: false));
        }
        catch (JsonException ex)
        {
            throw new JambaCheckpointException(path, null, $"header is not valid JSON (or its length {header.Length} is off): {ex.Message}", ex);
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
                    if (prop.Value.ValueKind == JsonValueKind.Null) continue;
                    if (prop.Value.ValueKind != JsonValueKind.Object)
                        throw new JambaCheckpointException(path, null, $"__metadata__ must be an object of strings, found {JsonField.Describe(prop.Value)}.");
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String)
                            throw new JambaCheckpointException(path, null, $"__metadata__ value '{m.Name}' must be a string, found {JsonField.Describe(m.Value)}.");
                        metadata[m.Name] = m.Value.GetString()!;
                    }
                    continue;
                }
                tensors[prop.Name] = ParseTensor(path, prop.Name, prop.Value, dataLength);
            }

            // As the reference: sorted by offsets, every tensor starts where the previous one ends, and the last
            // one ends where the file ends (no gap, no overlap, no trailing bytes).
            var ordered = tensors.Values.OrderBy(t => t.Begin).ThenBy(t => t.End).ThenBy(t => t.Name, StringComparer.Ordinal).ToList();
            long expectedBegin = 0;
            SafetensorsTensorInfo? previous = null;
            foreach (var t in ordered)
            {
                if (t.Begin < expectedBegin && previous is not null)
                    throw new JambaCheckpointException(path, t.Name,
                        $"byte range [{t.Begin}, {t.End}) overlaps tensor '{previous.Name}' [{previous.Begin}, {previous.End}).");
                if (t.Begin > expectedBegin)
                    throw new JambaCheckpointException(path, t.Name,
                        $"data_offsets start at {t.Begin}, expected {expectedBegin}: bytes [{expectedBegin}, {t.Begin}) of the data section belong to no tensor " +
                        "(tensors must cover the data section contiguously).");
                expectedBegin = t.End;
                previous = t;
            }
            if (expectedBegin != dataLength)
                throw new JambaCheckpointException(path, previous?.Name,
                    $"the data section is {dataLength} bytes long but the tensors cover {expectedBegin}: " +
                    $"{dataLength - expectedBegin} bytes after the last tensor's data (tensors must cover the data section exactly; wrong header length?).");
            return (tensors, metadata);
        }
    }

    private static SafetensorsDType? ParseDType(string? name) => name switch
    {
        "F32" => SafetensorsDType.F32,
        "F16" => SafetensorsDType.F16,
        "BF16" => SafetensorsDType.BF16,
        "F64" => SafetensorsDType.F64,
        "I64" => SafetensorsDType.I64,
        "I32" => SafetensorsDType.I32,
        "I16" => SafetensorsDType.I16,
        "I8" => SafetensorsDType.I8,
        "U8" => SafetensorsDType.U8,
        "BOOL" => SafetensorsDType.BOOL,
        _ => null,
    };

    private static SafetensorsTensorInfo ParseTensor(string path, string name, JsonElement e, long dataLength)
    {
        if (e.ValueKind != JsonValueKind.Object)
            throw new JambaCheckpointException(path, name, $"header entry must be an object with dtype, shape and data_offsets, found {JsonField.Describe(e)}.");
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw new JambaCheckpointException(path, name, "missing string field 'dtype'.");
        if (ParseDType(dt.GetString()) is not { } dtype)
            throw new JambaCheckpointException(path, name, $"unknown dtype \"{dt.GetString()}\" (known: {string.Join(", ", Enum.GetNames<SafetensorsDType>())}).");
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new JambaCheckpointException(path, name, "missing array field 'shape'.");
        var shape = new List<long>();
        long elements = 1;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long v) || v < 0)
                throw new JambaCheckpointException(path, name, $"shape entries must be non-negative integers, found {d.GetRawText()}.");
            shape.Add(v);
            if (elements != 0 && v != 0 && elements > long.MaxValue / v)
                throw new JambaCheckpointException(path, name, $"shape [{string.Join(", ", sh.EnumerateArray().Select(x => x.GetRawText()))}] has more elements than a 64-bit count can hold.");
            elements *= v;
        }
        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new JambaCheckpointException(path, name, "missing field 'data_offsets' ([begin, end]).");
        if (!off[0].TryGetInt64Safe(out long begin) || !off[1].TryGetInt64Safe(out long end) || begin < 0 || end < begin)
            throw new JambaCheckpointException(path, name, $"data_offsets {off.GetRawText()} must be two integers with 0 <= begin <= end.");
        if (end > dataLength)
            throw new JambaCheckpointException(path, name, $"data_offsets [{begin}, {end}) run beyond the data section ({dataLength} bytes; truncated file?).");
        int size = ElementSize(dtype);
        if (elements > long.MaxValue / size)
            throw new JambaCheckpointException(path, name, $"shape [{string.Join(", ", shape)}] x {dtype} has more bytes than a 64-bit count can hold.");
        long expected = elements * size;
        if (expected != end - begin)
            throw new JambaCheckpointException(path, name,
                $"shape [{string.Join(", ", shape)}] x {dtype} ({size} bytes) = {expected} bytes, but data_offsets cover {end - begin} bytes.");
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

internal static class SafetensorsJsonExtensions
{
    /// <summary><see cref="JsonElement.TryGetInt64"/> that is false (not throwing) for non-numbers.</summary>
    public static bool TryGetInt64Safe(this JsonElement e, out long value)
    {
        value = 0;
        return e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out value);
    }
}
