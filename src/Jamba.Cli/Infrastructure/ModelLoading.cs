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

/// <summary>Loads checkpoints for the commands: device checks, thread count, a progress bar on a terminal.</summary>
internal static class ModelLoading
{
    /// <summary>Fails with a one-line message when the device cannot be used by this build.</summary>
    public static void CheckDevice(string device)
    {
        if (device.StartsWith("cuda", StringComparison.Ordinal) && !torch.cuda.is_available())
            throw new CliException($"device '{device}' is not available: this build of jamba uses the CPU runtime (TorchSharp-cpu) or no CUDA device is visible; use --device cpu.");
    }

    /// <summary>Applies <c>--threads</c> to this process.</summary>
    public static void ApplyThreads(int? threads)
    {
        if (threads is { } n) torch.set_num_threads(n);
    }

    /// <summary>Loads (or shares) the checkpoint with a progress bar when interactive.</summary>
    public static async Task<(JambaModelHandle Handle, double Seconds)> LoadAsync(CliIO io, ModelSettings settings, string path, EngineOptions? engine, CancellationToken cancellationToken)
    {
        var modelOptions = settings.ModelOptions();
        CheckDevice(modelOptions.Device);
        ApplyThreads(settings.Threads);
        engine ??= new EngineOptions();
        engine.IntraOpThreads ??= settings.Threads;
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
