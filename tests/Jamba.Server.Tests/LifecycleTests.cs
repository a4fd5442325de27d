using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Jamba.Inference.Engine;
using Jamba.Inference.Modeling;
using Xunit;
using Xunit.Abstractions;

namespace Jamba.Server.Tests;

/// <summary>Loading, a full queue, disconnects and many concurrent streams.</summary>
[Collection(ServerCollection.Name)]
public sealed class LifecycleTests(ServerFixture fx, ITestOutputHelper output)
{
    private static HttpRequestMessage Stream(string path, string json) => new(HttpMethod.Post, path)
    {
        Content = new StringContent(json, Encoding.UTF8, "application/json"),
    };

    [Fact]
    public async Task AnswersServiceUnavailableWhileTheModelLoads()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await JambaServer.StartAsync(new JambaServerOptions
        {
            ModelPath = fx.Folder,
            Port = 0,
            ModelLoader = async ct =>
            {
                await release.Task.WaitAsync(ct);
                return await JambaModelRegistry.Shared.LoadAsync(fx.Folder, new ModelLoadOptions { Model = new ModelOptions { DType = ComputeDType.Float32 } }, null, ct);
            },
        });
        using var http = ServerFixture.NewHttp(server.BaseAddress, null);
        var health = await http.GetAsync("/health");
        Assert.Equal(503, (int)health.StatusCode);
        Assert.Equal("loading", (string?)JsonNode.Parse(await health.Content.ReadAsStringAsync())!["status"]);
        var (status, body, response) = await ServerFixture.PostAsync(http, "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}]}""");
        Assert.Equal(503, status);
        Assert.Equal("model_loading", (string?)body!["error"]!["code"]);
        Assert.NotNull(response.Headers.RetryAfter);
        release.SetResult();
        await server.ModelReady;
        Assert.Equal(200, (int)(await http.GetAsync("/health")).StatusCode);
        (status, _, _) = await ServerFixture.PostAsync(http, "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}""");
        Assert.Equal(200, status);
    }

    [Fact]
    public async Task AFullQueueAnswersTooManyRequestsWithRetryAfter()
    {
        // Its own registry: an engine of one slot and no queue.
        await using var server = await JambaServer.StartAsync(new JambaServerOptions
        {
            ModelPath = fx.Folder,
            Port = 0,
            Registry = new JambaModelRegistry(),
            RetryAfterSeconds = 2,
            Load = new ModelLoadOptions { Model = new ModelOptions { DType = ComputeDType.Float32 }, Engine = new EngineOptions { MaxConcurrentSequences = 1, MaxQueuedRequests = 0, PrefixCacheBytes = 0 } },
        });
        await server.ModelReady;
        using var http = ServerFixture.NewHttp(server.BaseAddress, null);
        using var busy = await http.SendAsync(Stream("/v1/completions", """{"prompt":"Call me","max_tokens":100000,"ignore_eos":true,"stream":true}"""), HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)busy.StatusCode);
        var (status, body, response) = await ServerFixture.PostAsync(http, "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}""");
        Assert.Equal(429, status);
        Assert.Equal("engine_busy", (string?)body!["error"]!["code"]);
        Assert.Equal(TimeSpan.FromSeconds(2), response.Headers.RetryAfter!.Delta);
        (status, _, _) = await ServerFixture.PostAsync(http, "/v1/completions", """{"prompt":"hi","max_tokens":2}""");
        Assert.Equal(429, status);
        busy.Dispose(); // the client leaves: its sequence is cancelled and the slot frees
        var engine = server.ModelHandle!.Engine;
        await ServerFixture.WaitIdle(engine);
        Assert.Equal(0, engine.RunningCount);
        (status, _, _) = await ServerFixture.PostAsync(http, "/v1/completions", """{"prompt":"hi","max_tokens":2}""");
        Assert.Equal(200, status);
    }

    [Fact]
    public async Task ADisconnectedClientCancelsItsSequence()
    {
        var engine = fx.Handle.Engine;
        await ServerFixture.WaitIdle(engine);
        long cancelled = engine.Metrics.RequestsCancelled;
        var response = await fx.Http.SendAsync(Stream("/v1/completions", """{"prompt":"Call me","max_tokens":4000,"ignore_eos":true,"stream":true}"""), HttpCompletionOption.ResponseHeadersRead);
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        for (int events = 0; events < 3;) if ((await reader.ReadLineAsync())?.StartsWith("data: ", StringComparison.Ordinal) == true) events++;
        Assert.Equal(1, engine.RunningCount);
        response.Dispose();
        var clock = Stopwatch.StartNew();
        while (engine.RunningCount > 0 && clock.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(5);
        Assert.Equal(0, engine.RunningCount);
        Assert.True(engine.Metrics.RequestsCancelled > cancelled);
        output.WriteLine($"sequence freed {clock.Elapsed.TotalMilliseconds:F0} ms after the disconnect");
    }

    [Fact]
    public async Task SixtyFourConcurrentStreamsWithAQuarterLeavingEarly()
    {
        var engine = fx.Handle.Engine;
        await ServerFixture.WaitIdle(engine);
        long baseline = ServerFixture.LiveTensors();
        const int Clients = 64;
        var clock = Stopwatch.StartNew();
        var jobs = Enumerable.Range(0, Clients).Select(i => Task.Run<(bool Leave, bool Done, int Status)>(async () =>
        {
            bool leave = i % 4 == 0;
            string json = i % 2 == 0
                ? $$"""{"messages":[{"role":"user","content":"Story {{i}}: call me"}],"max_tokens":24,"temperature":0.7,"seed":{{i}},"stream":true}"""
                : $$"""{"prompt":"Story {{i}}: call me","max_tokens":24,"ignore_eos":true,"stream":true}""";
            using var response = await fx.Http.SendAsync(Stream(i % 2 == 0 ? "/v1/chat/completions" : "/v1/completions", json), HttpCompletionOption.ResponseHeadersRead);
            if ((int)response.StatusCode != 200) return (leave, false, (int)response.StatusCode);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            int events = 0;
            string? line;
            while ((line = await reader.ReadLineAsync()) is not null)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                if (line == "data: [DONE]") return (leave, true, 200);
                Assert.DoesNotContain("\"error\"", line);
                if (leave && ++events == 2) return (leave, false, 200); // disconnect mid-stream
            }
            return (leave, false, 200);
        })).ToList();
        var results = await Task.WhenAll(jobs).WaitAsync(TimeSpan.FromSeconds(120));
        output.WriteLine($"{Clients} streams in {clock.Elapsed.TotalSeconds:F1} s; max batch {engine.Metrics.MaxBatch}");
        Assert.All(results, r => Assert.Equal(200, r.Status));
        Assert.All(results.Where(r => !r.Leave), r => Assert.True(r.Done, "a stream that stayed did not end with [DONE]"));
        Assert.True(engine.Metrics.MaxBatch > 1, "the streams should have been batched");

        await ServerFixture.WaitIdle(engine);
        Assert.Equal(0, engine.RunningCount);
        Assert.Equal(0, engine.QueuedCount);
        using var open = fx.NewHttp(null);
        Assert.Equal(200, (int)(await open.GetAsync("/health")).StatusCode);
        string metrics = await open.GetStringAsync("/metrics");
        ProtocolTests.AssertPrometheus(metrics);
        Assert.Contains("jamba_requests_finished_total{", metrics);
        Assert.Contains("finish_reason=\"cancelled\"", metrics);
        Assert.Contains("jamba_time_per_output_token_seconds_count", metrics);
        Assert.Equal(baseline, ServerFixture.LiveTensors());
    }
}
