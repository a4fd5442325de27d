using System.Text;
using System.Text.Json;

namespace Jamba.Inference;

/// <summary>
/// Reads the files of a checkpoint folder, which are untrusted input: every failure becomes the caller's
/// specific exception (through <c>error</c>), naming the file.
/// </summary>
/// <remarks>
/// <para><b>Symbolic links.</b> Every file is opened through its path, so links are followed to their final
/// target and sizes are those of the target (never of the link). This is what the Hugging Face cache needs:
/// in <c>hub/models--org--name/snapshots/&lt;rev&gt;/</c> every file is a relative link into <c>../../blobs/&lt;sha&gt;</c>.
/// Links may point anywhere: whoever can put a link into the folder already chooses what the folder holds.
/// What is confined are the <i>names</i> that files inside the folder give, i.e. the shard names of
/// <c>model.safetensors.index.json</c>: they must be relative paths that stay, lexically, inside the
/// checkpoint folder (no <c>..</c> escape, no absolute path), so that a downloaded index cannot make the
/// loader open an arbitrary file. A link that is broken or loops is reported as such.</para>
/// <para><b>Sizes.</b> Reads are bounded (a link to <c>/dev/zero</c> or a huge file fails with a size error
/// instead of exhausting memory). Text must be valid UTF-8 (a leading BOM is skipped); JSON must be one
/// value, with no duplicate keys and at most <see cref="MaxJsonDepth"/> levels of nesting.</para>
/// </remarks>
internal static class InputFiles
{
    /// <summary>The largest JSON or text file read (tokenizer.json of a 256k vocabulary is ~20 MB).</summary>
    public const long MaxTextBytes = 1L << 30;

    /// <summary>Deepest JSON nesting accepted (System.Text.Json's default).</summary>
    public const int MaxJsonDepth = 64;

    /// <summary>Builds the caller's exception from a message (and the inner exception, if any).</summary>
    public delegate Exception ErrorFactory(string message, Exception? inner);

    /// <summary>JSON options for checkpoint files: duplicate keys rejected, bounded depth; <paramref name="lenient"/>
    /// adds comments and trailing commas (accepted in config files, as they were before).</summary>
    public static JsonDocumentOptions JsonOptions(bool lenient) => new()
    {
        AllowDuplicateProperties = false,
        MaxDepth = MaxJsonDepth,
        AllowTrailingCommas = lenient,
        CommentHandling = lenient ? JsonCommentHandling.Skip : JsonCommentHandling.Disallow,
    };

    /// <summary>Whether <paramref name="path"/> names a file or a link (possibly broken: reading it then reports the link).</summary>
    public static bool Exists(string path) => File.Exists(path) || new FileInfo(path).LinkTarget is not null;

    /// <summary>A short description of where a link at <paramref name="path"/> leads, for messages ("" when it is no link).</summary>
    public static string DescribeLink(string path)
    {
        try
        {
            var info = new FileInfo(path);
            if (info.LinkTarget is null) return "";
            var final = info.ResolveLinkTarget(returnFinalTarget: true);
            return final is null ? "" : $" (a symbolic link to '{final.FullName}'{(final.Exists ? "" : ", which does not exist")})";
        }
        catch (IOException e)
        {
            return $" (a symbolic link that cannot be resolved: {e.Message})";
        }
    }

    /// <summary>The environment variable that lets links of a checkpoint point anywhere (set to <c>1</c>).</summary>
    public const string AllowExternalLinksVariable = "JAMBA_ALLOW_EXTERNAL_LINKS";

    /// <summary>
    /// Links are followed but stay confined: a file that is a symbolic link must lead inside the folder that holds it, or
    /// inside the repository that folder is a snapshot of — the Hugging Face cache (<c>models--org--name/snapshots/rev/</c>,
    /// whose files link into <c>models--org--name/blobs/</c>) or a git-annex repository (links into <c>.git/annex/</c>).
    /// A link elsewhere (a <c>tokenizer.json</c> that is a link to <c>/etc/passwd</c>, say) is refused with a message naming
    /// both, unless <see cref="AllowExternalLinksVariable"/> is <c>1</c> (shared model stores linked by hand).
    /// </summary>
    public static void EnsureConfined(string path, ErrorFactory error)
    {
        FileSystemInfo? final;
        try
        {
            var info = new FileInfo(path);
            if (info.LinkTarget is null) return;
            final = info.ResolveLinkTarget(returnFinalTarget: true);
        }
        catch (IOException)
        {
            return; // a broken or looping link: opening it reports that
        }
        if (final is null || Environment.GetEnvironmentVariable(AllowExternalLinksVariable) == "1") return;
        string target = Path.GetFullPath(final.FullName);
        var roots = AllowedRoots(Path.GetDirectoryName(Path.GetFullPath(path))!).ToList();
        if (roots.Any(r => IsInside(target, r))) return;
        throw error($"is a symbolic link to '{target}', outside the checkpoint folder{(roots.Count > 1 ? " and the repository it is a snapshot of" : "")} " +
                    $"('{string.Join("', '", roots)}'); links must stay inside them (set {AllowExternalLinksVariable}=1 to follow links anywhere).", null);
    }

    private static IEnumerable<string> AllowedRoots(string folder)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var start in new[] { folder, RealPath(folder) })
        {
            if (seen.Add(start)) yield return start;
            // Hugging Face cache: <repo>/snapshots/<revision>/file -> ../../blobs/<hash>
            var parent = Directory.GetParent(start);
            if (parent is { Name: "snapshots", Parent: { } repo } && Directory.Exists(Path.Combine(repo.FullName, "blobs")) && seen.Add(repo.FullName))
                yield return repo.FullName;
            // git-annex: any ancestor holding .git/annex
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (Directory.Exists(Path.Combine(dir.FullName, ".git", "annex")))
                {
                    if (seen.Add(dir.FullName)) yield return dir.FullName;
                    break;
                }
        }
    }

    private static string RealPath(string folder)
    {
        try
        {
            var info = new DirectoryInfo(folder);
            if (info.LinkTarget is not null && info.ResolveLinkTarget(true) is { } t) return Path.GetFullPath(t.FullName);
            // A link higher up: resolve the parent, keep the name.
            if (info.Parent is { } p && RealPath(p.FullName) is var rp && rp != p.FullName) return Path.Combine(rp, info.Name);
        }
        catch (IOException) { }
        return folder;
    }

    private static bool IsInside(string path, string root)
    {
        string r = root.EndsWith(Path.DirectorySeparatorChar) ? root : root + Path.DirectorySeparatorChar;
        return path.StartsWith(r, StringComparison.Ordinal);
    }

    /// <summary>Reads at most <paramref name="maxBytes"/> bytes of <paramref name="path"/> (following links that stay confined, see <see cref="EnsureConfined"/>).</summary>
    public static byte[] ReadBytes(string path, long maxBytes, ErrorFactory error)
    {
        EnsureConfined(path, error);
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
            long length = fs.CanSeek ? fs.Length : 0; // of the opened target, not of a link
            if (length > maxBytes)
                throw error($"is {length} bytes long, more than the {maxBytes} bytes accepted for this file.", null);
            using var ms = new MemoryStream((int)Math.Max(0, length));
            var buffer = new byte[1 << 16];
            int n;
            // Read to the end whatever the reported length (devices report 0), but never past the limit.
            while ((n = fs.Read(buffer, 0, buffer.Length)) > 0)
            {
                if (ms.Length + n > maxBytes)
                    throw error($"holds more than the {maxBytes} bytes accepted for this file.", null);
                ms.Write(buffer, 0, n);
            }
            return ms.ToArray();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            throw error($"cannot be read{DescribeLink(path)}: {e.Message}", e);
        }
    }

    /// <summary>Decodes strict UTF-8 (a BOM is skipped).</summary>
    public static string DecodeUtf8(ReadOnlySpan<byte> bytes, ErrorFactory error)
    {
        bytes = SkipBom(bytes);
        if (FirstInvalidUtf8(bytes) is int bad)
            throw error($"is not valid UTF-8 text (invalid byte 0x{bytes[bad]:X2} at offset {bad}).", null);
        return Encoding.UTF8.GetString(bytes);
    }

    /// <summary>Reads a text file: bounded, strict UTF-8.</summary>
    public static string ReadText(string path, ErrorFactory error) => DecodeUtf8(ReadBytes(path, MaxTextBytes, error), error);

    /// <summary>Parses JSON text with <see cref="JsonOptions"/>; any failure becomes <paramref name="error"/>.</summary>
    public static JsonDocument ParseJson(string json, bool lenient, ErrorFactory error)
    {
        try
        {
            return JsonDocument.Parse(json, JsonOptions(lenient));
        }
        catch (JsonException e)
        {
            throw error($"is not valid JSON: {e.Message}", e);
        }
        catch (ArgumentException e)
        {
            throw error($"is not valid JSON text: {e.Message}", e); // lone surrogates in a caller's string
        }
    }

    /// <summary>Reads and parses a JSON file (bounded, strict UTF-8, <see cref="JsonOptions"/>).</summary>
    public static JsonDocument ReadJson(string path, bool lenient, ErrorFactory error) => ParseJson(ReadText(path, error), lenient, error);

    /// <summary>The offset of the first byte that is not part of a valid UTF-8 sequence, or null when all are valid.</summary>
    public static int? FirstInvalidUtf8(ReadOnlySpan<byte> bytes)
    {
        if (System.Text.Unicode.Utf8.IsValid(bytes)) return null;
        int offset = 0;
        while (offset < bytes.Length)
        {
            if (System.Text.Rune.DecodeFromUtf8(bytes[offset..], out _, out int consumed) != System.Buffers.OperationStatus.Done) return offset;
            offset += consumed;
        }
        return null;
    }

    private static ReadOnlySpan<byte> SkipBom(ReadOnlySpan<byte> bytes) =>
        bytes.Length >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF ? bytes[3..] : bytes;
}
