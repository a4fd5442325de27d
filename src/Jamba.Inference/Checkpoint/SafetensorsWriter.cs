using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Checkpoint;

/// <summary>Writes tensors to a safetensors file in the layout Hugging Face writes (sorted names, space-padded header).</summary>
public static class SafetensorsWriter
{
    /// <summary>Writes <paramref name="tensors"/> (name → tensor; F32, F16 or BF16) to <paramref name="path"/>.</summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.OrderBy(t => t.Key, StringComparer.Ordinal).ToList();
        var header = new Dictionary<string, object>(StringComparer.Ordinal);
        if (metadata is not null) header["__metadata__"] = metadata;
        long offset = 0;
        foreach (var (name, t) in list)
        {
            long bytes = t.numel() * t.element_size();
            header[name] = new Dictionary<string, object>
            {
                ["dtype"] = DTypeName(t.dtype),
                ["shape"] = t.shape,
                ["data_offsets"] = new[] { offset, offset + bytes },
            };
            offset += bytes;
        }
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(header);
        int padded = (json.Length + 7) / 8 * 8;
        var headerBytes = new byte[padded];
        json.CopyTo(headerBytes, 0);
        for (int i = json.Length; i < padded; i++) headerBytes[i] = (byte)' ';
        string temp = path + ".tmp";
        using (var fs = new FileStream(temp, FileMode.Create, FileAccess.Write))
        {
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)padded);
            fs.Write(len);
            fs.Write(headerBytes);
            foreach (var (_, t) in list)
            {
                using var cpu = t.detach().to(DeviceType.CPU).contiguous();
                using var flat = cpu.view(-1);
                long n = flat.numel(), chunk = Math.Max(1, (1L << 30) / Math.Max(1, cpu.element_size()));
                for (long start = 0; start < n; start += chunk)
                {
                    using var part = flat.narrow(0, start, Math.Min(chunk, n - start));
                    fs.Write(part.bytes);
                }
            }
        }
        File.Move(temp, path, overwrite: true);
    }

    private static string DTypeName(ScalarType t) => t switch
    {
        ScalarType.Float32 => "F32",
        ScalarType.Float16 => "F16",
        ScalarType.BFloat16 => "BF16",
        ScalarType.Float64 => "F64",
        ScalarType.Int64 => "I64",
        ScalarType.Int32 => "I32",
        _ => throw new ArgumentException($"Cannot write dtype {t} to safetensors."),
    };

    /// <summary>UTF-8 without BOM, for the JSON files written beside the weights.</summary>
    internal static readonly Encoding Utf8 = new UTF8Encoding(false);
}
