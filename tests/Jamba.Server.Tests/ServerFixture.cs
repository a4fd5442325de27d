using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Jamba.Inference.Checkpoint;
using Jamba.Inference.Config;
using Jamba.Inference.Engine;
using Jamba.Inference.Modeling;
using Xunit;

namespace Jamba.Server.Tests;

/// <summary>
/// A tiny random-weight Jamba checkpoint (the real SentencePiece test tokenizer and the real Jamba Mini 1.7 chat template)
/// served by a <see cref="JambaServer"/> on a free loopback port, with an API key. The checkpoint builder is a copy of the
/// SemanticKernel tests' ChatModelFixture (it moves to the shared tests/Jamba.Testing project).
/// </summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public const string ApiKey = "test-key";
    public const string ModelName = "tiny-jamba";
    public const long MaxBody = 256 * 1024;

    public string Folder { get; } = Directory.CreateTempSubdirectory("jamba-serve-").FullName;
    public JambaServer Server { get; private set; } = null!;
    public HttpClient Http { get; private set; } = null!;
    public Uri BaseAddress => Server.BaseAddress;
    public Uri ApiRoot => new(Server.BaseAddress, "v1/");
    public JambaModelHandle Handle => Server.ModelHandle!;

    /// <summary>The engine options of the served model (prefix cache off: the live-tensor count then returns exactly to its baseline).</summary>
    public static EngineOptions Engine() => new() { MaxConcurrentSequences = 16, MaxQueuedRequests = 1024, PrefixCacheBytes = 0, QueueFull = QueueFullBehavior.Throw };

    public async Task InitializeAsync()
    {
        WriteCheckpoint(Folder);
        Server = await JambaServer.StartAsync(new JambaServerOptions
        {
            ModelPath = Folder,
            ServedModelName = ModelName,
            Host = "127.0.0.1",
            Port = 0,
            ApiKey = ApiKey,
            MaxRequestBodyBytes = MaxBody,
            Load = new ModelLoadOptions { Model = new ModelOptions { DType = ComputeDType.Float32 }, Engine = Engine() },
        });
        await Server.ModelReady;
        Http = NewHttp(ApiKey);
    }

    public HttpClient NewHttp(string? key) => NewHttp(Server.BaseAddress, key);

    public static HttpClient NewHttp(Uri baseAddress, string? key)
    {
        var http = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromMinutes(2) };
        if (key is not null) http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return http;
    }

    public static void WriteCheckpoint(string folder)
    {
        var config = JambaConfig.Parse("""
            {"model_type":"jamba","vocab_size":1500,"hidden_size":32,"intermediate_size":48,"num_hidden_layers":4,
             "num_attention_heads":4,"num_key_value_heads":2,"num_experts":4,"num_experts_per_tok":2,
             "attn_layer_period":2,"attn_layer_offset":1,"expert_layer_period":2,"expert_layer_offset":1,
             "mamba_d_state":8,"mamba_d_conv":4,"mamba_expand":2,"mamba_dt_rank":4,"eos_token_id":2,"pad_token_id":0,"bos_token_id":1,
             "max_position_embeddings":4096}
            """);
        using (var model = new JambaForCausalLM(config, new ModelOptions { DType = ComputeDType.Float32 }))
        {
            JambaInitializer.Initialize(model, seed: 11);
            // Sharper output distribution than the default init so that sampled text has some structure.
            using (TorchSharp.torch.no_grad()) model.lm_head!.weight.mul_(40);
            CheckpointWriter.Save(model, folder);
        }
        string data = Path.Combine(AppContext.BaseDirectory, "TestData");
        File.Copy(Path.Combine(data, "tokenizer.model"), Path.Combine(folder, "tokenizer.model"));
        File.Copy(Path.Combine(data, "tokenizer_config.json"), Path.Combine(folder, "tokenizer_config.json"));
        File.Copy(Path.Combine(TemplatesRoot, "jamba-mini-1.7", "template.jinja"), Path.Combine(folder, "chat_template.jinja"));
    }

    public static string TemplatesRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "Jamba.sln")))
                    return Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "fixtures", "chat-templates"));
            throw new InvalidOperationException($"Jamba.sln not found above {AppContext.BaseDirectory}.");
        }
    }

    public static long LiveTensors()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        return TorchSharp.torch.Tensor.TotalCount - ModelContext.ParametersCreated;
    }

    /// <summary>POSTs JSON and returns the status, the parsed body and the response.</summary>
    public static async Task<(int Status, JsonNode? Body, HttpResponseMessage Response)> PostAsync(HttpClient http, string path, string json)
    {
        var response = await http.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));
        string text = await response.Content.ReadAsStringAsync();
        JsonNode? body = null;
        try { body = JsonNode.Parse(text); } catch (System.Text.Json.JsonException) { }
        return ((int)response.StatusCode, body, response);
    }

    public static async Task WaitIdle(JambaEngine engine)
    {
        for (int i = 0; i < 500 && !(engine.Metrics.Idle && engine.RunningCount == 0); i++) await Task.Delay(10);
    }

    public async Task DisposeAsync()
    {
        Http?.Dispose();
        if (Server is not null) await Server.DisposeAsync();
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { }
    }
}

[CollectionDefinition(Name)]
public sealed class ServerCollection : ICollectionFixture<ServerFixture>
{
    public const string Name = "server";
}
