// Long-context RAG over the State of the Union addresses: the whole corpus goes into the prompt (no chunking, no vector
// store), is prefilled once into a context snapshot, and every question pays only for its own tokens. See README.md.
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Jamba.Inference.Chat;
using Jamba.Inference.Engine;
using Jamba.Inference.Modeling;
using Jamba.Samples.Rag;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Spectre.Console;

var options = RagOptions.Parse(args);
if (options is null) return 2;
try
{
    return await Run(options);
}
catch (Exception ex) when (ex is not OutOfMemoryException)
{
    // One clear line instead of a crash dump (the details go to stderr for a bug report).
    AnsiConsole.MarkupLineInterpolated($"[red]The sample stopped:[/] {ex.GetType().Name}: {ex.Message.Split('\n')[0]}");
    Console.Error.WriteLine(ex);
    return 1;
}

static async Task<int> Run(RagOptions options)
{

    // 1. Data: the addresses, newest first, until the token budget is reached.
    string dataDir;
    try
    {
        dataDir = options.DataDir ?? SotuData.EnsureDownloaded();
    }
    catch (Exception ex) when (ex is IOException or InvalidOperationException or System.ComponentModel.Win32Exception)
    {
        AnsiConsole.MarkupLineInterpolated($"[red]Could not fetch the State of the Union data:[/] {ex.Message}");
        return 1;
    }

    using var loggerFactory = LoggerFactory.Create(b => b.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning));
    AnsiConsole.MarkupLineInterpolated($"Loading [bold]{options.ModelPath}[/] ({options.Device}) …");
    var loadClock = Stopwatch.StartNew();
    await using var handle = await JambaModelHandle.LoadAsync(options.ModelPath, new ModelLoadOptions
    {
        Model = new ModelOptions { Device = options.Device, DType = options.DType },
        // The automatic prefix cache would turn the "cold" run below into a warm one; the session's snapshot is explicit.
        Engine = new EngineOptions { PrefixCacheBytes = 0, MaxContextTokens = options.MaxContext, PrefillChunkTokens = options.ChunkTokens },
    });
    if (handle.Tokenizer is null)
    {
        AnsiConsole.MarkupLine("[red]The checkpoint has no tokenizer files (tokenizer.json / tokenizer.model).[/]");
        return 1;
    }
    AnsiConsole.MarkupLineInterpolated($"Loaded in {loadClock.Elapsed.TotalSeconds:F1} s: {handle.ParameterCount / 1e6:F1}M parameters, {handle.Config.NumAttentionLayers} attention / {handle.Config.NumMambaLayers} Mamba layers, context limit {handle.Engine.MaxContextTokens:N0}; RSS {Rss.CurrentMb():N0} MiB.");

    int budget = Math.Min(options.MaxTokens, handle.Engine.MaxContextTokens - options.MaxNewTokens - 512);
    var documents = SotuData.LoadDocuments(dataDir, handle.Tokenizer, budget, options.MaxDocuments, out int corpusTokens);
    if (documents.Count == 0)
    {
        AnsiConsole.MarkupLine("[red]No documents fit the token budget.[/]");
        return 1;
    }
    AnsiConsole.MarkupLineInterpolated($"Corpus: {documents.Count} addresses ({documents[^1].Fields!["year"]}–{documents[0].Fields!["year"]}), ≈{corpusTokens:N0} tokens.");

    using var client = new JambaChatClient(handle, logger: loggerFactory.CreateLogger<JambaChatClient>());
    const string SystemPrompt = "You answer questions about the State of the Union addresses below. Cite the addresses you use.";
    var sessionOptions = new ChatOptions { Temperature = 0, MaxOutputTokens = options.MaxNewTokens }.WithCitations();
    var rows = new List<(string Kind, string Question, double Ttft, double Total, long Cached, long Input, long Output, long RssMb)>();

    // 2. Cold: one question with the whole prompt, nothing reused (what every question would cost without a snapshot).
    if (!options.SkipCold)
    {
        string q = options.Questions[0];
        AnsiConsole.MarkupLine("\n[bold]Cold[/] (the whole prompt, no snapshot) …");
        var cold = await Ask(client.GetStreamingResponseAsync([new ChatMessage(ChatRole.System, SystemPrompt), new ChatMessage(ChatRole.User, q)], sessionOptions.Clone().WithDocuments(documents)));
        rows.Add(("cold", q, cold.Ttft, cold.Total, cold.Cached, cold.Input, cold.Output, Rss.CurrentMb()));
        Print(options, documents, q, cold);
    }

    // 3. One prefill (or a snapshot saved by an earlier run), with a progress bar.
    DocumentSession? session = null;
    string? snapshotPath = options.SnapshotPath;
    if (snapshotPath is not null && File.Exists(snapshotPath))
    {
        var clock = Stopwatch.StartNew();
        try
        {
            session = await DocumentSession.LoadAsync(client, snapshotPath, documents, SystemPrompt, sessionOptions, loggerFactory.CreateLogger<DocumentSession>());
            AnsiConsole.MarkupLineInterpolated($"\nLoaded the snapshot [bold]{snapshotPath}[/] in {clock.Elapsed.TotalSeconds:F2} s ({session.PrefixTokenCount:N0} tokens, no prefill).");
        }
        catch (Exception ex) when (ex is InvalidDataException or Jamba.Inference.Caching.SnapshotFormatException)
        {
            AnsiConsole.MarkupLineInterpolated($"[yellow]The saved snapshot does not fit ({ex.Message}); prefilling again.[/]");
        }
    }
    double prefillSeconds = 0;
    if (session is null)
    {
        AnsiConsole.WriteLine();
        var clock = Stopwatch.StartNew();
        await AnsiConsole.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .StartAsync(async ctx =>
            {
                var task = ctx.AddTask("Prefilling the corpus", maxValue: 1);
                var progress = new InlineProgress(p =>
                {
                    task.MaxValue = p.TokensTotal;
                    task.Value = p.TokensDone;
                    task.Description = $"Prefilling {p.TokensDone:N0}/{p.TokensTotal:N0} tokens";
                });
                session = await client.CreateDocumentSessionAsync(documents, SystemPrompt, sessionOptions, progress);
                task.Value = task.MaxValue;
            });
        prefillSeconds = clock.Elapsed.TotalSeconds;
        AnsiConsole.MarkupLineInterpolated($"Prefilled {session!.PrefixTokenCount:N0} tokens once in {prefillSeconds:F1} s ({session.PrefixTokenCount / prefillSeconds:N0} tokens/s); snapshot {session.Snapshot.SizeInBytes / 1048576.0:N1} MiB; RSS {Rss.CurrentMb():N0} MiB (peak so far {Rss.PeakMb():N0} MiB).");
        if (snapshotPath is not null)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(snapshotPath))!);
            session.Save(snapshotPath);
            AnsiConsole.MarkupLineInterpolated($"Saved to [bold]{snapshotPath}[/] ({new FileInfo(snapshotPath).Length / 1048576.0:N1} MiB): the next run loads it instead of prefilling.");
        }
    }

    using (session)
    {
        // 4. Reused: every question from the snapshot.
        AnsiConsole.MarkupLine("\n[bold]Reused[/] (from the snapshot) …");
        foreach (var q in options.Questions)
        {
            var r = await Ask(session!.AskStreamingAsync(q));
            rows.Add(("reused", q, r.Ttft, r.Total, r.Cached, r.Input, r.Output, Rss.CurrentMb()));
            Print(options, documents, q, r);
        }

        // 5. The same questions at once (the engine batches them over one shared snapshot).
        var all = Stopwatch.StartNew();
        var answers = await Task.WhenAll(options.Questions.Select(q => session!.AskAsync(q)));
        AnsiConsole.MarkupLineInterpolated($"\nAll {answers.Length} questions concurrently: {all.Elapsed.TotalSeconds:F2} s in total.");
    }

    // 6. The figures.
    var table = new Table().Border(TableBorder.Rounded).Title("Time to first token").AddColumns("run", "Q", "TTFT", "total", "prompt", "reused", "answer", "RSS");
    foreach (var r in rows)
    {
        table.AddRow(r.Kind, "Q" + (options.Questions.IndexOf(r.Question) + 1).ToString(CultureInfo.InvariantCulture), $"{r.Ttft * 1000:N0} ms", $"{r.Total:F2} s",
            r.Input.ToString("N0", CultureInfo.InvariantCulture), r.Cached.ToString("N0", CultureInfo.InvariantCulture), r.Output.ToString(CultureInfo.InvariantCulture), $"{r.RssMb:N0} MiB");
    }
    AnsiConsole.Write(table);
    var reusedRows = rows.Where(r => r.Kind == "reused").ToList();
    var coldRow = rows.FirstOrDefault(r => r.Kind == "cold");
    if (coldRow.Kind is not null && reusedRows.Count > 0)
    {
        double reused = reusedRows.Average(r => r.Ttft);
        AnsiConsole.MarkupLineInterpolated($"Cold TTFT {coldRow.Ttft:F2} s vs reused {reused * 1000:N0} ms on average: {coldRow.Ttft / reused:N0}× faster per question.");
    }
    AnsiConsole.MarkupLineInterpolated($"Memory: RSS {Rss.CurrentMb():N0} MiB, peak {Rss.PeakMb():N0} MiB.");
    if (options.JsonOut is not null)
    {
        File.WriteAllText(options.JsonOut, JsonSerializer.Serialize(new
        {
            model = options.ModelPath,
            documents = documents.Count,
            corpus_tokens = corpusTokens,
            prefill_seconds = prefillSeconds,
            runs = rows.Select(r => new { kind = r.Kind, question = r.Question, ttft_seconds = r.Ttft, total_seconds = r.Total, prompt_tokens = r.Input, cached_tokens = r.Cached, output_tokens = r.Output, rss_mib = r.RssMb }),
            peak_rss_mib = Rss.PeakMb(),
        }, new JsonSerializerOptions { WriteIndented = true }));
    }
    return 0;
}

static async Task<AnswerStats> Ask(IAsyncEnumerable<ChatResponseUpdate> stream)
{
    var clock = Stopwatch.StartNew();
    var text = new System.Text.StringBuilder();
    UsageDetails? usage = null;
    IReadOnlyList<JambaCitation> citations = [];
    double decode = 0;
    await foreach (var u in stream)
    {
        text.Append(u.Text);
        if (u.Contents.OfType<UsageContent>().FirstOrDefault() is { } uc) usage = uc.Details;
        if (u.GetCitations() is { Count: > 0 } c) citations = c;
        if (u.AdditionalProperties?.TryGetValue("decode_seconds", out var d) == true && d is double ds) decode = ds;
    }
    double total = clock.Elapsed.TotalSeconds;
    // Time to the first generated token, measured from the call: the whole time less the engine's decode time (first to last
    // token). The first streamed text can come later, when the chat layer holds back whitespace or possible markup.
    double ttft = Math.Max(0, total - decode);
    return new AnswerStats(text.ToString(), citations, ttft, total, usage?.CachedInputTokenCount ?? 0, usage?.InputTokenCount ?? 0, usage?.OutputTokenCount ?? 0);
}

static void Print(RagOptions options, IReadOnlyList<JambaDocument> documents, string question, AnswerStats a)
{
    AnsiConsole.MarkupLineInterpolated($"[bold]Q{options.Questions.IndexOf(question) + 1}:[/] {question}");
    AnsiConsole.MarkupLineInterpolated($"[bold]A:[/] {(a.Text.Length > 300 ? a.Text[..300] + "…" : a.Text)}");
    if (a.Citations.Count > 0) AnsiConsole.MarkupLineInterpolated($"   cites: {string.Join(", ", a.Citations.Select(c => c.Title ?? c.DocumentIndex.ToString(CultureInfo.InvariantCulture)))}");
    if (Grounding.Check(a.Text, documents) is { } g)
    {
        if (g.Found) AnsiConsole.MarkupLineInterpolated($"   [green]quote found verbatim[/] in {g.Title} ({g.Quote.Length} characters)");
        else AnsiConsole.MarkupLineInterpolated($"   [yellow]quote not found in the documents[/] ({g.Quote.Length} characters)");
    }
    AnsiConsole.MarkupLineInterpolated($"   [grey]TTFT {a.Ttft * 1000:N0} ms · total {a.Total:F2} s · prompt {a.Input:N0} tokens ({a.Cached:N0} reused) · {a.Output} answer tokens · RSS {Rss.CurrentMb():N0} MiB (peak so far {Rss.PeakMb():N0} MiB)[/]");
}

namespace Jamba.Samples.Rag
{
    /// <summary>Whether an answer's quotation (the text between its first pair of double quotes, a trailing "…" dropped) occurs
    /// verbatim in one of the documents: what "grounded" means for an answer that quotes.</summary>
    internal static class Grounding
    {
        public static (bool Found, string Quote, string? Title)? Check(string answer, IReadOnlyList<JambaDocument> documents)
        {
            int open = answer.IndexOf('"', StringComparison.Ordinal);
            if (open < 0) return null;
            int close = answer.IndexOf('"', open + 1);
            string quote = (close < 0 ? answer[(open + 1)..] : answer[(open + 1)..close]).TrimEnd().TrimEnd('…').TrimEnd();
            if (quote.Length < 12) return null;
            for (int i = 0; i < documents.Count; i++)
                if (documents[i].Text.Contains(quote, StringComparison.Ordinal))
                    return (true, quote, documents[i].Title ?? $"document {i}");
            return (false, quote, null);
        }
    }

    internal sealed record AnswerStats(string Text, IReadOnlyList<JambaCitation> Citations, double Ttft, double Total, long Cached, long Input, long Output);

    /// <summary>Reports progress on the caller's thread (the engine reports from its scheduler thread).</summary>
    internal sealed class InlineProgress(Action<PrefillProgress> report) : IProgress<PrefillProgress>
    {
        public void Report(PrefillProgress value) => report(value);
    }

    /// <summary>Resident memory of this process, from /proc/self/status (Linux; 0 elsewhere).</summary>
    internal static class Rss
    {
        public static long CurrentMb() => Read("VmRSS:");
        public static long PeakMb() => Read("VmHWM:");

        private static long Read(string key)
        {
            try
            {
                foreach (var line in File.ReadLines("/proc/self/status"))
                    if (line.StartsWith(key, StringComparison.Ordinal))
                        return long.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1024;
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            return 0;
        }
    }
}
