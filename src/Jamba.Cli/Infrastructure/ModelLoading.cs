using Jamba.Inference;
using System.Diagnostics;
using Jamba.Inference.Engine;
using Jamba.Inference.Modeling;
using Spectre.Console;
using TorchSharp;

namespace Jamba.Cli.Infrastructure;

/// <summary>An <see cref="IProgress{T}"/> that reports on the caller's thread (no synchronisation context hop).</summary>
internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}

/// <summary>Who applies <c>--threads</c> (see <see cref="ModelLoading.LoadAsync(CliIO, ModelSettings, string, EngineOptions?, ThreadsOwner, CancellationToken)"/>).</summary>
internal enum ThreadsOwner
{
    /// <summary>The engine, on its scheduler thread (<see cref="EngineOptions.IntraOpThreads"/>): commands whose forwards all run in the engine.</summary>
    Engine,
    /// <summary>The CLI, process-wide before loading: commands that also run forwards outside the engine (bench).</summary>
    Process,
}

/// <summary>Loads checkpoints for the commands: device checks, thread count, a progress bar on a terminal.</summary>
internal static class ModelLoading
{
    /// <summary>Fails with a one-line message when the device cannot be used by this build.</summary>
    public static void CheckDevice(string device)
    {
        if (device.StartsWith("cuda", StringComparison.Ordinal) && !torch.cuda.is_available())
            throw new CliException($"device '{device}' is not available: this build of jamba uses the CPU runtime (TorchSharp-cpu) or no CUDA device is visible; use --device cpu.");
    }

    /// <summary>
    /// Loads (or shares) the checkpoint with a progress bar when interactive, for a command whose forwards all run in the
    /// engine: <c>--threads</c> goes to <see cref="EngineOptions.IntraOpThreads"/> (see <see cref="ThreadsOwner"/>).
    /// </summary>
    public static Task<(JambaModelHandle Handle, double Seconds)> LoadAsync(CliIO io, ModelSettings settings, string path, EngineOptions? engine, CancellationToken cancellationToken) =>
        LoadAsync(io, settings, path, engine, ThreadsOwner.Engine, cancellationToken);

    /// <summary>Loads (or shares) the checkpoint with a progress bar when interactive; <paramref name="threads"/> says who applies <c>--threads</c>.</summary>
    public static async Task<(JambaModelHandle Handle, double Seconds)> LoadAsync(CliIO io, ModelSettings settings, string path, EngineOptions? engine,
        ThreadsOwner threads, CancellationToken cancellationToken)
    {
        var modelOptions = settings.ModelOptions();
        CheckDevice(modelOptions.Device);
        engine ??= new EngineOptions();
        // --threads is applied exactly once (libtorch's intra-op thread count is one process-wide setting; every thread takes
        // the global count on its first parallel op, and the thread that sets it takes it at once):
        // - Engine: only as EngineOptions.IntraOpThreads. The engine sets it on its scheduler thread before its first step,
        //   and every forward of generate and chat runs on that thread; the CLI does not set it as well.
        // - Process: set here, before loading, for a command that also runs the model outside an engine (bench's context
        //   prefill, decode profile and bandwidth probe run on pool threads). The engine is then given no count, so it does
        //   not set it a second time; its scheduler thread, started by the load, takes the global count like any other.
        // (train passes its --threads as TrainingOptions.Threads; the trainer sets it, once.)
        if (threads == ThreadsOwner.Engine)
        {
            engine.IntraOpThreads = settings.Threads;
        }
        else
        {
            engine.IntraOpThreads = null;
            if (settings.Threads is { } n) torch.set_num_threads(n);
        }
        var options = new ModelLoadOptions { Model = modelOptions, Engine = engine };
        var clock = Stopwatch.StartNew();
        JambaModelHandle handle;
        if (!io.Interactive)
        {
            handle = await JambaModelHandle.LoadAsync(path, options, null, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            handle = await io.Console.Progress()
                .AutoClear(true)
                .HideCompleted(true)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .StartAsync(async ctx =>
                {
                    var task = ctx.AddTask($"Loading {Markup.Escape(Path.GetFileName(Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar)))}", maxValue: 1);
                    var progress = new SyncProgress<LoadProgress>(p => task.Value = p.Fraction);
                    var h = await JambaModelHandle.LoadAsync(path, options, progress, cancellationToken).ConfigureAwait(false);
                    task.Value = 1;
                    return h;
                }).ConfigureAwait(false);
        }
        return (handle, clock.Elapsed.TotalSeconds);
    }

    /// <summary>Runs <paramref name="work"/> under a progress bar (terminal) or plainly, reporting fractions 0..1.</summary>
    public static async Task<T> WithProgressAsync<T>(CliIO io, string description, Func<IProgress<double>, Task<T>> work)
    {
        if (!io.Interactive) return await work(new SyncProgress<double>(_ => { })).ConfigureAwait(false);
        return await io.Console.Progress()
            .AutoClear(true)
            .HideCompleted(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .StartAsync(async ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(description), maxValue: 1);
                var result = await work(new SyncProgress<double>(f => task.Value = Math.Clamp(f, 0, 1))).ConfigureAwait(false);
                task.Value = 1;
                return result;
            }).ConfigureAwait(false);
    }
}
