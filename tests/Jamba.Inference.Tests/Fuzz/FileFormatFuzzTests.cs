using System.Diagnostics;
using Jamba.Inference.Tests.Fixtures;
using Xunit;
using Xunit.Abstractions;

namespace Jamba.Inference.Tests.Fuzz;

/// <summary>
/// Deterministic, seeded fuzzing of every untrusted file format (config.json, safetensors, shard index, tokenizer.json,
/// tokenizer_config.json with chat templates, generation_config.json, tokenizer.model). Every case must end as a
/// success or as one of the library's specific exceptions, within a time limit, without leaking tensors.
/// <c>JAMBA_FUZZ_CASES</c> (cases per target, default below) and <c>JAMBA_FUZZ_SEED</c> run a longer or different
/// campaign in-process; tests/Jamba.Fuzz runs one in child processes, which also catches native crashes.
/// </summary>
public sealed class FileFormatFuzzTests(ITestOutputHelper output)
{
    private static readonly Dictionary<FuzzTarget, int> DefaultCases = new()
    {
        [FuzzTarget.Config] = 600,
        [FuzzTarget.Safetensors] = 1000,
        [FuzzTarget.Index] = 400,
        [FuzzTarget.TokenizerJson] = 800,
        [FuzzTarget.TokenizerConfig] = 500,
        [FuzzTarget.GenerationConfig] = 300,
        [FuzzTarget.SentencePiece] = 500,
    };

    private static readonly TimeSpan PerCaseLimit = TimeSpan.FromSeconds(20);

    [Fact]
    public void EveryMutatedFileEndsInSuccessOrASpecificException()
    {
        int seed = int.TryParse(Environment.GetEnvironmentVariable("JAMBA_FUZZ_SEED"), out int s) ? s : 20240615;
        int? perTarget = int.TryParse(Environment.GetEnvironmentVariable("JAMBA_FUZZ_CASES"), out int n) ? n : null;
        using var corpus = new FuzzCorpus();
        var counts = new SortedDictionary<string, SortedDictionary<string, int>>(StringComparer.Ordinal);
        var failures = new List<string>();
        string? current = null;
        var caseClock = new Stopwatch();
        var total = Stopwatch.StartNew();
        int done = 0;

        // Cases run on a worker thread; this thread watches the clock. Leaks are counted with the project's measure
        // (live tensors after a full GC, corrected for TorchSharp's Parameter accounting), compared case after case.
        long live = EngineTests.LiveTensors();
        var worker = new Thread(() =>
        {
            foreach (var (target, defaultCount) in DefaultCases)
            {
                string work = Path.Combine(corpus.Root, "work-" + target);
                var byOutcome = counts[target.ToString()] = new SortedDictionary<string, int>(StringComparer.Ordinal);
                for (int i = 0; i < (perTarget ?? defaultCount); i++)
                {
                    Volatile.Write(ref current, FileFormatFuzzer.Describe(target, seed, i));
                    lock (caseClock) caseClock.Restart();
                    string outcome;
                    string mutation = "";
                    try
                    {
                        (outcome, mutation) = FileFormatFuzzer.Run(corpus, target, seed, i, work);
                    }
                    catch (Exception e)
                    {
                        outcome = "BUG " + e.GetType().Name;
                        lock (failures) failures.Add($"{FileFormatFuzzer.Describe(target, seed, i)}: {e}");
                    }
                    var elapsed = caseClock.Elapsed;
                    if (elapsed > PerCaseLimit)
                        lock (failures) failures.Add($"{FileFormatFuzzer.Describe(target, seed, i)}: took {elapsed} ({mutation})");
                    long after = EngineTests.LiveTensors();
                    if (after != live)
                        lock (failures) failures.Add($"{FileFormatFuzzer.Describe(target, seed, i)}: {after - live} tensors leaked ({outcome}; {mutation})");
                    live = after;
                    byOutcome[outcome] = byOutcome.GetValueOrDefault(outcome) + 1;
                    Interlocked.Increment(ref done);
                }
            }
        }, 16 * 1024 * 1024) { IsBackground = true, Name = "fuzz" };
        worker.Start();
        while (!worker.Join(500))
        {
            TimeSpan running;
            lock (caseClock) running = caseClock.Elapsed;
            if (running > PerCaseLimit + TimeSpan.FromSeconds(10))
                Assert.Fail($"{Volatile.Read(ref current)} hangs: running for {running}.");
        }

        output.WriteLine($"seed {seed}: {done} cases in {total.Elapsed.TotalSeconds:F1} s");
        foreach (var (target, byOutcome) in counts)
            output.WriteLine($"{target,-17} {byOutcome.Values.Sum(),5}: {string.Join(", ", byOutcome.Select(kv => $"{kv.Key} {kv.Value}"))}");
        foreach (var f in failures.Take(20)) output.WriteLine("FAIL " + f);
        Assert.True(failures.Count == 0, $"{failures.Count} fuzz cases failed; first: {failures.FirstOrDefault()}");
        // Sanity: the mutations reach both ends (some cases load, most are rejected) for every target.
        foreach (var (target, byOutcome) in counts)
            Assert.True(byOutcome.Count >= 2, $"{target}: only {string.Join(", ", byOutcome.Keys)}");
    }
}
