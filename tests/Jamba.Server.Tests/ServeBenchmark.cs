using System.Diagnostics;
using System.Text;
using Jamba.Inference.Engine;
using Jamba.Inference.Generation;
using Jamba.Inference.Modeling;
using Xunit;
using Xunit.Abstractions;

namespace Jamba.Server.Tests;

/// <summary>
/// Throughput and latency of the server against the in-process engine, on a checkpoint named by <c>JAMBA_SERVE_BENCH</c>
/// (e.g. <c>jamba init --preset bench --out DIR --tokenizer-from models/jamba-moby-tiny</c>); does nothing without it.
/// <c>JAMBA_SERVE_BENCH_STREAMS</c> (default <c>1,16,64</c>), <c>JAMBA_SERVE_BENCH_TOKENS</c> (default 64).
/// Both sides ask for log-probabilities, so that every token is an event of the stream and the engine does the same work.
/// Run: <c>JAMBA_SERVE_BENCH=DIR dotnet test tests/Jamba.Server.Tests --filter ServeBenchmark --logger "console;verbosity=detailed"</c>.
/// </summary>
public sealed class ServeBenchmark(ITestOutputHelper output)
{
    private static double Median(List<double> values) => values.Order().ElementAt(values.Count / 2);

    [Fact]
    public async Task ServerVersusInProcess()
    {
        if (Environment.GetEnvironmentVariable("JAMBA_SERVE_BENCH") is not { Length: > 0 } folder)
        {
            output.WriteLine("JAMBA_SERVE_BENCH is not set: nothing measured.");
            return;
        }
        var streams = (Environment.GetEnvironmentVariable("JAMBA_SERVE_BENCH_STREAMS") ?? "1,16,64").Split(',').Select(int.Parse).ToArray();
        int tokens = int.TryParse(Environment.GetEnvironmentVariable("JAMBA_SERVE_BENCH_TOKENS"), out var t) ? t : 64;
        long rssStart = Process.GetCurrentProcess().WorkingSet64;
        await using var server = await JambaServer.StartAsync(new JambaServerOptions
        {
            ModelPath = folder,
            Port = 0,
            Load = new ModelLoadOptions { Engine = new EngineOptions { MaxConcurrentSequences = streams.Max(), PrefixCacheBytes = 0 } },
        });
        await server.ModelReady;
        var engine = server.ModelHandle!.Engine;
        using var http = ServerFixture.NewHttp(server.BaseAddress, null);
        long rssLoaded = Process.GetCurrentProcess().WorkingSet64;
        output.WriteLine($"model {folder}: {server.ModelHandle.DType}, {tokens} tokens per stream, RSS {rssStart >> 20} MiB before load, {rssLoaded >> 20} MiB loaded");
        string Prompt(int i) => $"Request {i}: Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse";

        async Task<(double Ttft, int Tokens)> InProcess(int i)
        {
            var clock = Stopwatch.StartNew();
            double ttft = 0;
            int n = 0;
            var request = new GenerationRequest(server.ModelHandle.Encode(Prompt(i)), new GenerationOptions { Temperature = 0, MaxNewTokens = tokens, IgnoreEos = true, IncludeSpecialTokensInText = false, LogProbs = true });
            await foreach (var u in engine.GenerateAsync(request))
                if (u.TokenId is not null && n++ == 0) ttft = clock.Elapsed.TotalSeconds;
            return (ttft, n);
        }

        async Task<(double Ttft, int Tokens)> OverHttp(int i)
        {
            var clock = Stopwatch.StartNew();
            double ttft = 0;
            int n = 0;
            var message = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            {
                Content = new StringContent($$"""{"prompt":"{{Prompt(i)}}","max_tokens":{{tokens}},"temperature":0,"ignore_eos":true,"logprobs":0,"stream":true}""", Encoding.UTF8, "application/json"),
            };
            using var response = await http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            string? line;
            while ((line = await reader.ReadLineAsync()) is not null)
            {
                // One event per token: logprobs are asked for on both sides (a random checkpoint's tokens often decode to no text).
                if (!line.StartsWith("data: {", StringComparison.Ordinal) || !line.Contains("\"tokens\":[\"", StringComparison.Ordinal)) continue;
                if (n++ == 0) ttft = clock.Elapsed.TotalSeconds;
            }
            return (ttft, n);
        }

        await InProcess(0); // warm-up
        await OverHttp(0);
        // Added latency of one request: the time to first token, alone, in-process and over HTTP (alternating, 8 each).
        var alone = new Dictionary<string, List<double>> { ["in-process"] = [], ["server"] = [] };
        for (int i = 0; i < 8; i++)
        {
            await ServerFixture.WaitIdle(engine);
            alone["in-process"].Add((await InProcess(100 + i)).Ttft);
            await ServerFixture.WaitIdle(engine);
            alone["server"].Add((await OverHttp(100 + i)).Ttft);
        }
        output.WriteLine($"TTFT alone (8 requests each, median): in-process {Median(alone["in-process"]) * 1000:F1} ms, server {Median(alone["server"]) * 1000:F1} ms, " +
                         $"added {(Median(alone["server"]) - Median(alone["in-process"])) * 1000:F1} ms");
        foreach (int c in streams)
        {
            foreach (var (name, run) in new (string, Func<int, Task<(double, int)>>)[] { ("in-process", InProcess), ("server", OverHttp) })
            {
                await ServerFixture.WaitIdle(engine);
                var clock = Stopwatch.StartNew();
                var results = await Task.WhenAll(Enumerable.Range(0, c).Select(i => Task.Run(() => run(i))));
                double seconds = clock.Elapsed.TotalSeconds;
                int total = results.Sum(r => r.Item2);
                var ttfts = results.Select(r => r.Item1).Order().ToArray();
                output.WriteLine($"{name,-10} streams {c,3}: {total / seconds,7:F1} tok/s aggregate ({total} tokens in {seconds:F2} s), " +
                                 $"TTFT mean {ttfts.Average() * 1000:F0} ms, p50 {ttfts[ttfts.Length / 2] * 1000:F0} ms, max {ttfts[^1] * 1000:F0} ms; " +
                                 $"RSS {Process.GetCurrentProcess().WorkingSet64 >> 20} MiB, peak {Process.GetCurrentProcess().PeakWorkingSet64 >> 20} MiB");
            }
        }
    }
}
