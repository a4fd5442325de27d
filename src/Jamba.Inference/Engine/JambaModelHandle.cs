using System.Collections.Concurrent;
using Jamba.Inference.Config;
using Jamba.Inference.Generation;
using Jamba.Inference.Modeling;
using Jamba.Inference.Tokenization;
using TorchSharp;

namespace Jamba.Inference.Engine;

/// <summary>How to load a model and run its engine.</summary>
public sealed class ModelLoadOptions
{
    /// <summary>Device and compute dtype (part of the registry key).</summary>
    public ModelOptions Model { get; set; } = new();
    /// <summary>Engine limits. The first load of a given (path, device, dtype) creates the engine with them; a later load
    /// shares it when it asks for the same options or for the defaults (no preference), and fails with
    /// <see cref="EngineOptionsConflictException"/> when it asks for different ones.</summary>
    public EngineOptions Engine { get; set; } = new();
}

/// <summary>
/// A lease on a loaded model: weights, config, tokenizer and the engine that runs generations on them.
/// Every <see cref="LoadAsync"/> of the same (canonical path, device, dtype) shares one loaded copy through
/// <see cref="JambaModelRegistry"/>; the weights are freed when the last lease is disposed. Thread-safe.
/// </summary>
public sealed class JambaModelHandle : IDisposable, IAsyncDisposable
{
    private readonly JambaModelRegistry.Entry _entry;
    private int _disposed;

    internal JambaModelHandle(JambaModelRegistry.Entry entry) => _entry = entry;

    /// <summary>Loads (or shares) the checkpoint in <paramref name="path"/> through <see cref="JambaModelRegistry.Shared"/>.</summary>
    /// <exception cref="JambaConfigException">Invalid <c>config.json</c>.</exception>
    /// <exception cref="JambaCheckpointException">Malformed or mismatched weights.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; what was allocated is freed.</exception>
    public static Task<JambaModelHandle> LoadAsync(string path, ModelLoadOptions? options = null, IProgress<LoadProgress>? progress = null, CancellationToken cancellationToken = default) =>
        JambaModelRegistry.Shared.LoadAsync(path, options, progress, cancellationToken);

    /// <summary>The checkpoint folder (canonical path).</summary>
    public string Path => _entry.Key.Path;
    /// <summary>The architecture.</summary>
    public JambaConfig Config => Model.Config;
    /// <summary>The model (shared: do not dispose).</summary>
    public JambaForCausalLM Model { get { ThrowIfDisposed(); return _entry.Model; } }
    /// <summary>The tokenizer, or null when the checkpoint has no tokenizer files.</summary>
    public JambaTokenizer? Tokenizer => _entry.Tokenizer;
    /// <summary>The engine that schedules this model's generations.</summary>
    public JambaEngine Engine { get { ThrowIfDisposed(); return _entry.Engine; } }
    /// <summary>The device.</summary>
    public string Device => _entry.Key.Device;
    /// <summary>The compute dtype.</summary>
    public torch.ScalarType DType => _entry.Model.DType;
    /// <summary>Total parameters.</summary>
    public long ParameterCount => _entry.Model.ParameterCount;
    /// <summary>Parameters used per token (unchosen experts excluded).</summary>
    public long ActiveParameterCount => _entry.Model.ActiveParameterCount;
    /// <summary>A short model id for connectors (the folder name).</summary>
    public string ModelId => System.IO.Path.GetFileName(Path.TrimEnd(System.IO.Path.DirectorySeparatorChar));

    /// <summary>Encodes <paramref name="text"/> (with the tokenizer's BOS when it adds one).</summary>
    /// <exception cref="InvalidOperationException">The checkpoint has no tokenizer.</exception>
    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = true) =>
        (Tokenizer ?? throw new InvalidOperationException($"The checkpoint '{Path}' has no tokenizer files (tokenizer.json or tokenizer.model); pass token ids.")).Encode(text, addSpecialTokens);

    /// <summary>Streams a generation (see <see cref="JambaEngine.GenerateAsync"/>).</summary>
    public IAsyncEnumerable<GenerationUpdate> GenerateAsync(GenerationRequest request, CancellationToken cancellationToken = default) =>
        Engine.GenerateAsync(request, cancellationToken);

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

    /// <summary>Releases this lease; the last one frees the model.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) _entry.Release();
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>
/// Shares loaded models: one copy of the weights per (canonical path, device, dtype), reference counted.
/// A second load of the same key costs neither load time nor memory.
/// </summary>
public sealed class JambaModelRegistry
{
    private readonly ConcurrentDictionary<Key, Lazy<Task<Entry>>> _entries = new();
    private long _loads;

    /// <summary>The process-wide registry.</summary>
    public static JambaModelRegistry Shared { get; } = new();

    /// <summary>Checkpoints actually read from disk by this registry so far.</summary>
    public long LoadCount => Interlocked.Read(ref _loads);

    /// <summary>Models currently loaded.</summary>
    public int LoadedCount => _entries.Count;

    /// <summary>Loads the checkpoint in <paramref name="path"/>, or shares it if already loaded with the same device and dtype.</summary>
    public async Task<JambaModelHandle> LoadAsync(string path, ModelLoadOptions? options = null, IProgress<LoadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        options ??= new ModelLoadOptions();
        (options.Engine ?? new EngineOptions()).Validate();
        string canonical = System.IO.Path.GetFullPath(path).TrimEnd(System.IO.Path.DirectorySeparatorChar);
        if (Directory.Exists(canonical)) canonical = new DirectoryInfo(canonical).ResolveLinkTarget(true)?.FullName ?? canonical;
        var key = new Key(canonical, options.Model.Device, options.Model.ResolveScalarType(), options.Model.CpuKernels, options.Model.Quantization);
        while (true)
        {
            var lazy = _entries.GetOrAdd(key, k => new Lazy<Task<Entry>>(() => StartLoad(k, options, progress, cancellationToken)));
            Entry entry;
            try
            {
                entry = await lazy.Value.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                if (lazy.Value.IsFaulted || lazy.Value.IsCanceled) _entries.TryRemove(new KeyValuePair<Key, Lazy<Task<Entry>>>(key, lazy));
                throw;
            }
            if (entry.TryAcquire())
            {
                var asked = options.Engine ?? new EngineOptions();
                if (!asked.IsDefault && entry.Engine.Options.DifferencesFrom(asked) is { Count: > 0 } differences)
                {
                    entry.Release();
                    throw new EngineOptionsConflictException(key.Path, differences);
                }
                return new JambaModelHandle(entry);
            }
            _entries.TryRemove(new KeyValuePair<Key, Lazy<Task<Entry>>>(key, lazy)); // being freed: load afresh
        }
    }

    private Task<Entry> StartLoad(Key key, ModelLoadOptions options, IProgress<LoadProgress>? progress, CancellationToken cancellationToken)
    {
        var task = Task.Run(() => Load(key, options, progress, cancellationToken), cancellationToken);
        // A failed or cancelled load must not stay registered: the next caller loads afresh.
        task.ContinueWith(t =>
        {
            foreach (var kv in _entries)
                if (kv.Key == key && kv.Value.IsValueCreated && ReferenceEquals(kv.Value.Value, t))
                    _entries.TryRemove(kv);
        }, CancellationToken.None, TaskContinuationOptions.NotOnRanToCompletion | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return task;
    }

    private Entry Load(Key key, ModelLoadOptions options, IProgress<LoadProgress>? progress, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _loads);
        var modelOptions = new ModelOptions { Device = key.Device, DType = options.Model.DType, CpuKernels = key.CpuKernels, Quantization = key.Quantization, Trainable = false };
        var model = JambaForCausalLM.FromPretrained(key.Path, modelOptions, progress, cancellationToken);
        try
        {
            JambaTokenizer.TryLoad(key.Path, out var tokenizer);
            var engine = new JambaEngine(model, tokenizer, options.Engine) { Name = System.IO.Path.GetFileName(key.Path) };
            return new Entry(this, key, model, tokenizer, engine);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    internal readonly record struct Key(string Path, string Device, torch.ScalarType DType, bool? CpuKernels, WeightQuantization Quantization);

    internal sealed class Entry(JambaModelRegistry owner, Key key, JambaForCausalLM model, JambaTokenizer? tokenizer, JambaEngine engine)
    {
        private int _refs;
        private bool _freed;

        public Key Key { get; } = key;
        public JambaForCausalLM Model { get; } = model;
        public JambaTokenizer? Tokenizer { get; } = tokenizer;
        public JambaEngine Engine { get; } = engine;

        public bool TryAcquire()
        {
            lock (this)
            {
                if (_freed) return false;
                _refs++;
                return true;
            }
        }

        public void Release()
        {
            lock (this)
            {
                if (--_refs > 0 || _freed) return;
                _freed = true;
            }
            if (owner._entries.TryGetValue(Key, out var lazy) && lazy.IsValueCreated && lazy.Value.IsCompletedSuccessfully && ReferenceEquals(lazy.Value.Result, this))
                owner._entries.TryRemove(new KeyValuePair<Key, Lazy<Task<Entry>>>(Key, lazy));
            Engine.Dispose();
            Model.Dispose();
        }
    }
}
