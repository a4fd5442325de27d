using System.Collections.Concurrent;
using Jamba.Inference.Engine;
using Jamba.Inference.Modeling;
using Jamba.Inference.Chat;
using Jamba.Remote;

namespace Jamba.MLNet.Internal;

/// <summary>A model bound for ML.NET pipelines: a lease on the shared handle plus its chat setup (made once per loaded model),
/// or the clients of a served model.</summary>
internal sealed class ModelBinding
{
    private readonly JambaModelHandle? _handle;
    private readonly Lazy<ChatSetup>? _chat;

    public ModelBinding(JambaModelHandle handle)
    {
        _handle = handle;
        _chat = new(() => ChatSetup.For(handle));
    }

    public ModelBinding(RemoteBinding remote) => Remote = remote;

    public JambaModelHandle Handle => _handle ?? throw new InvalidOperationException("The model is served remotely (Endpoint); it has no local handle.");

    /// <summary>The model's chat setup (template, BOS/EOS texts, end-of-turn markers), for rows that use the chat template.</summary>
    public ChatSetup Chat => _chat?.Value ?? throw new InvalidOperationException("The model is served remotely (Endpoint); its chat template is applied by the server.");

    /// <summary>The clients of a served model, or null for a local one.</summary>
    public RemoteBinding? Remote { get; }

    public void Release()
    {
        _handle?.Dispose();
        Remote?.Dispose();
    }
}

/// <summary>The clients of a model served over the OpenAI protocol: raw completions and chat (with Jamba's parsing).</summary>
internal sealed class RemoteBinding(RemoteCompletionClient completions, RemoteJambaChatClient chat) : IDisposable
{
    public RemoteCompletionClient Completions { get; } = completions;
    public RemoteJambaChatClient Chat { get; } = chat;

    public void Dispose()
    {
        Completions.Dispose();
        Chat.Dispose();
    }
}

/// <summary>
/// Models bound by ML.NET pipelines, one lease per (full path, device, dtype), kept for the process (or until
/// <see cref="ReleaseAll"/>): ML.NET transformers have no dispose contract a pipeline can rely on (prediction engines
/// dispose the transformers they are given), so a binding outlives any one transformer. Weights are shared with every
/// other user of <see cref="JambaModelRegistry.Shared"/>.
/// </summary>
internal static class ModelBindings
{
    private static readonly ConcurrentDictionary<(string Path, string Device, ComputeDType DType), Lazy<Task<ModelBinding>>> Bindings = new();

    public static int Count => Bindings.Count(kv => kv.Value.IsValueCreated && kv.Value.Value.IsCompletedSuccessfully);

    public static ModelBinding Get(JambaTextGenerationOptions options, CancellationToken cancellationToken = default) =>
        GetAsync(options, cancellationToken).GetAwaiter().GetResult();

    public static async Task<ModelBinding> GetAsync(JambaTextGenerationOptions options, CancellationToken cancellationToken = default)
    {
        Lazy<Task<ModelBinding>> lazy;
        (string, string, ComputeDType) key;
        if (options.Endpoint is { } endpoint)
        {
            string apiKey = options.ApiKey ?? Environment.GetEnvironmentVariable("JAMBA_API_KEY") ?? "";
            string root = RemoteEndpoint.ApiRoot(endpoint).ToString();
            key = (root + "#" + options.ModelId + "#" + Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(apiKey))), "remote", ComputeDType.Auto);
            string modelId = options.ModelId!;
            lazy = Bindings.GetOrAdd(key, _ => new Lazy<Task<ModelBinding>>(() => Task.FromResult(new ModelBinding(new RemoteBinding(
                new RemoteCompletionClient(new Uri(root), apiKey.Length > 0 ? apiKey : null, modelId),
                RemoteJambaChatClient.Create(new Uri(root), apiKey.Length > 0 ? apiKey : null, modelId))))));
        }
        else
        {
            string path = Path.GetFullPath(options.ModelPath).TrimEnd(Path.DirectorySeparatorChar);
            key = (path, new ModelOptions { Device = options.Device }.Device, options.DType);
            lazy = Bindings.GetOrAdd(key, k => new Lazy<Task<ModelBinding>>(() => LoadAsync(k.Item1, k.Item2, k.Item3, options.BatchSize)));
        }
        try
        {
            return await lazy.Value.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch when (lazy.Value.IsFaulted || lazy.Value.IsCanceled)
        {
            // A failed load is not kept: the next use tries again (e.g. after the checkpoint was copied in place).
            Bindings.TryRemove(new KeyValuePair<(string, string, ComputeDType), Lazy<Task<ModelBinding>>>(key, lazy));
            throw;
        }
    }

    private static async Task<ModelBinding> LoadAsync(string path, string device, ComputeDType dtype, int batchSize)
    {
        if (!File.Exists(Path.Combine(path, "config.json")))
            throw new FileNotFoundException(
                $"The Jamba model '{path}' was not found (no config.json in that folder). A pipeline refers to its model by path; " +
                "put the checkpoint there, or rebuild the pipeline with JambaTextGenerationOptions.ModelPath set to where it is.",
                Path.Combine(path, "config.json"));
        var model = new ModelOptions { Device = device, DType = dtype };
        JambaModelHandle handle;
        try
        {
            handle = await JambaModelHandle.LoadAsync(path, new ModelLoadOptions
            {
                Model = model,
                Engine = new EngineOptions { MaxConcurrentSequences = Math.Max(16, batchSize) },
            }).ConfigureAwait(false);
        }
        catch (EngineOptionsConflictException)
        {
            // Already loaded by another caller with its own engine: rows share that engine (the batch size is then only
            // the number of rows in flight, not the engine's limit).
            handle = await JambaModelHandle.LoadAsync(path, new ModelLoadOptions { Model = model }).ConfigureAwait(false);
        }
        if (handle.Tokenizer is null)
        {
            handle.Dispose();
            throw new InvalidOperationException(
                $"The Jamba model '{path}' has no tokenizer files (tokenizer.json or tokenizer.model); text generation in ML.NET pipelines needs one.");
        }
        return new ModelBinding(handle);
    }

    /// <summary>Releases every binding; pipelines that run again bind afresh.</summary>
    public static int ReleaseAll()
    {
        int released = 0;
        foreach (var kv in Bindings)
        {
            if (!Bindings.TryRemove(kv)) continue;
            if (kv.Value.IsValueCreated && kv.Value.Value.IsCompletedSuccessfully)
            {
                kv.Value.Value.Result.Release();
                released++;
            }
        }
        return released;
    }
}
