using System.Diagnostics;
using System.Globalization;
using Jamba.Inference.Tests.Fuzz;

// Parent: runs every target's cases in batches, each batch in a child process (this program with --child), so that a
// native crash or a hang ends only that child: the case it was running is reported with the command that reproduces it.
// Child: runs cases [from, from+count) of one target and prints "START i" / "END i outcome" for each.

var options = Options.Parse(args);
return options.Child ? RunChild(options) : RunParent(options);

static int RunChild(Options o)
{
    using var corpus = new FuzzCorpus();
    string work = Path.Combine(corpus.Root, "work");
    for (int i = o.From; i < o.From + o.Count; i++)
    {
        Console.WriteLine($"START {i}");
        string outcome;
        try
        {
            (outcome, _) = FileFormatFuzzer.Run(corpus, o.Target, o.Seed, i, work);
        }
        catch (Exception e)
        {
            outcome = "BUG:" + e.GetType().Name;
            Console.WriteLine($"DETAIL {i} {e.ToString().ReplaceLineEndings(" | ")}");
        }
        Console.WriteLine($"END {i} {outcome}");
    }
    return 0;
}

static int RunParent(Options o)
{
    var targets = o.Targets ?? Enum.GetValues<FuzzTarget>();
    var problems = new List<string>();
    var total = Stopwatch.StartNew();
    foreach (var target in targets)
    {
        var counts = new SortedDictionary<string, int>(StringComparer.Ordinal);
        int next = 0;
        while (next < o.Cases)
        {
            int count = Math.Min(o.Batch, o.Cases - next);
            var (done, crashed) = RunBatch(o, target, next, count, counts, problems);
            next = done;
            if (crashed) next++; // skip the case that crashed or hung
        }
        Console.WriteLine($"{target,-17} {counts.Values.Sum(),7}: {string.Join(", ", counts.Select(kv => $"{kv.Key} {kv.Value}"))}");
    }
    Console.WriteLine($"{total.Elapsed.TotalSeconds:F0} s; {problems.Count} problem(s)");
    foreach (var p in problems) Console.WriteLine("PROBLEM " + p);
    return problems.Count == 0 ? 0 : 1;
}

// Runs cases [from, from+count) in one child; returns the first case not finished and whether the child died on it.
static (int Next, bool Crashed) RunBatch(Options o, FuzzTarget target, int from, int count, SortedDictionary<string, int> counts, List<string> problems)
{
    string self = Environment.ProcessPath!;
    var psi = new ProcessStartInfo(self) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
    if (Path.GetFileNameWithoutExtension(self) == "dotnet") psi.ArgumentList.Add(typeof(Options).Assembly.Location);
    foreach (var a in new[] { "--child", "--target", target.ToString(), "--seed", o.Seed.ToString(CultureInfo.InvariantCulture),
                 "--from", from.ToString(CultureInfo.InvariantCulture), "--count", count.ToString(CultureInfo.InvariantCulture) })
        psi.ArgumentList.Add(a);
    using var child = Process.Start(psi)!;
    var stderr = new System.Text.StringBuilder();
    child.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
    child.BeginErrorReadLine();
    int running = -1, next = from;
    var clock = Stopwatch.StartNew();
    var lines = new System.Collections.Concurrent.BlockingCollection<string?>();
    var reader = new Thread(() => { string? l; while ((l = child.StandardOutput.ReadLine()) is not null) lines.Add(l); lines.Add(null); }) { IsBackground = true };
    reader.Start();
    string Repro(int i) => $"dotnet run -c Release --project tests/Jamba.Fuzz -- --child --target {target} --seed {o.Seed} --from {i} --count 1";
    while (true)
    {
        if (!lines.TryTake(out var line, TimeSpan.FromSeconds(1)))
        {
            if (running >= 0 && clock.Elapsed > TimeSpan.FromSeconds(o.TimeoutSeconds))
            {
                child.Kill(entireProcessTree: true);
                problems.Add($"{target} case {running}: HANG (> {o.TimeoutSeconds} s); repro: {Repro(running)}");
                counts["HANG"] = counts.GetValueOrDefault("HANG") + 1;
                return (running, true);
            }
            continue;
        }
        if (line is null) break;
        var parts = line.Split(' ', 3);
        if (parts[0] == "START") { running = int.Parse(parts[1], CultureInfo.InvariantCulture); clock.Restart(); }
        else if (parts[0] == "END")
        {
            string outcome = parts[2];
            counts[outcome] = counts.GetValueOrDefault(outcome) + 1;
            if (outcome.StartsWith("BUG", StringComparison.Ordinal)) problems.Add($"{target} case {parts[1]}: {outcome}; repro: {Repro(int.Parse(parts[1], CultureInfo.InvariantCulture))}");
            next = int.Parse(parts[1], CultureInfo.InvariantCulture) + 1;
            running = -1;
        }
        else if (parts[0] == "DETAIL") problems.Add($"{target} case {parts[1]} detail: {parts[2]}");
    }
    child.WaitForExit();
    if (next < from + count)
    {
        // The child died while running a case (a native crash, a stack overflow, an abort).
        int at = running >= 0 ? running : next;
        string tail;
        lock (stderr) tail = stderr.ToString().Trim().Split('\n').LastOrDefault() ?? "";
        problems.Add($"{target} case {at}: CRASH (exit code {child.ExitCode}) {tail}; repro: {Repro(at)}");
        counts["CRASH"] = counts.GetValueOrDefault("CRASH") + 1;
        return (at, true);
    }
    return (next, false);
}

sealed class Options
{
    public bool Child { get; private set; }
    public FuzzTarget Target { get; private set; }
    public FuzzTarget[]? Targets { get; private set; }
    public int Seed { get; private set; } = 1;
    public int Cases { get; private set; } = 2000;
    public int From { get; private set; }
    public int Count { get; private set; } = 1;
    public int Batch { get; private set; } = 500;
    public int TimeoutSeconds { get; private set; } = 20;

    public static Options Parse(string[] args)
    {
        var o = new Options();
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int Int() => int.Parse(Next(), CultureInfo.InvariantCulture);
            switch (args[i])
            {
                case "--child": o.Child = true; break;
                case "--target": o.Target = Enum.Parse<FuzzTarget>(Next(), ignoreCase: true); break;
                case "--targets": o.Targets = Next().Split(',').Select(t => Enum.Parse<FuzzTarget>(t, ignoreCase: true)).ToArray(); break;
                case "--seed": o.Seed = Int(); break;
                case "--cases": o.Cases = Int(); break;
                case "--from": o.From = Int(); break;
                case "--count": o.Count = Int(); break;
                case "--batch": o.Batch = Int(); break;
                case "--timeout": o.TimeoutSeconds = Int(); break;
                default: throw new ArgumentException($"unknown option {args[i]} (see tests/Jamba.Fuzz/README.md)");
            }
        }
        return o;
    }
}
