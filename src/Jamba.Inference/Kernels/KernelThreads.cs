namespace Jamba.Inference.Kernels;

/// <summary>
/// Runs the parts of one CPU kernel call on the calling thread plus a few dedicated worker threads that spin briefly
/// between calls. A decode step makes ~70 short kernel calls (0.05–2 ms each) with a few microseconds of other work
/// between them; handing each to the .NET thread pool costs a wake-up of a parked thread every time (5–100 µs in a VM),
/// while a worker that is still spinning picks the next part up within a microsecond. Workers sleep after
/// <see cref="SpinMilliseconds"/> without work (an idle engine costs a wake-up every few milliseconds, nothing more). One call runs at a time; a call made while
/// another is running (from another thread, or nested inside a part) runs its parts serially on its own thread.
/// </summary>
internal static class KernelThreads
{
    /// <summary>How long an idle worker spins before it blocks.</summary>
    private const double SpinMilliseconds = 0.2;

    /// <summary>How often a sleeping worker re-checks for work on its own.</summary>
    private const int SleepCheckMilliseconds = 5;

    private static int _busy;
    private static Worker[] _workers = [];
    private static Action<int>? _body;
    private static int _parts;
    private static int _remaining;
    private static long _generation;
    private static Exception? _failure;

    /// <summary>How many parts a kernel call is split into: the intra-op thread count the user set for libtorch, at most
    /// the processor count.</summary>
    public static int Count => Math.Max(1, Math.Min(TorchSharp.torch.get_num_threads(), Environment.ProcessorCount));

    /// <summary>Runs <c>body(0)</c> … <c>body(parts − 1)</c>, part 0 on the calling thread; returns when all have finished
    /// and rethrows the first exception of any part.</summary>
    public static void Run(int parts, Action<int> body)
    {
        if (parts <= 1)
        {
            if (parts == 1) body(0);
            return;
        }
        if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            // Another call (or this one, nested) holds the workers.
            for (int p = 0; p < parts; p++) body(p);
            return;
        }
        try
        {
            EnsureWorkers(parts - 1);
            _body = body;
            _parts = parts;
            _failure = null;
            Volatile.Write(ref _remaining, parts - 1);
            Interlocked.Increment(ref _generation);
            for (int w = 0; w < parts - 1; w++) _workers[w].WakeIfSleeping();
            try
            {
                body(0);
            }
            finally
            {
                var spin = new SpinWait();
                while (Volatile.Read(ref _remaining) > 0) spin.SpinOnce(-1);
                _body = null;
            }
            if (_failure is { } failure) throw new AggregateException(failure);
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    private static void EnsureWorkers(int count)
    {
        if (_workers.Length >= count) return;
        var grown = new Worker[count];
        Array.Copy(_workers, grown, _workers.Length);
        // A new worker starts from the current generation, which the caller advances only after this returns.
        for (int i = _workers.Length; i < count; i++) grown[i] = new Worker(i + 1, Volatile.Read(ref _generation));
        _workers = grown;
    }

    private sealed class Worker
    {
        private readonly int _part;
        private readonly long _startGeneration;
        private readonly SemaphoreSlim _wake = new(0);
        private int _sleeping;

        public Worker(int part, long startGeneration)
        {
            _part = part;
            _startGeneration = startGeneration;
            new Thread(Loop) { IsBackground = true, Name = $"jamba-kernel-{part}" }.Start();
        }

        public void WakeIfSleeping()
        {
            // An extra release (the worker woke by itself meanwhile) only makes one later wait return early.
            if (Volatile.Read(ref _sleeping) == 1 && _wake.CurrentCount == 0) _wake.Release();
        }

        private void Loop()
        {
            long seen = _startGeneration;
            long spinTicks = (long)(SpinMilliseconds * System.Diagnostics.Stopwatch.Frequency / 1000);
            while (true)
            {
                long start = System.Diagnostics.Stopwatch.GetTimestamp();
                long generation;
                while ((generation = Volatile.Read(ref _generation)) == seen)
                {
                    if (System.Diagnostics.Stopwatch.GetTimestamp() - start > spinTicks)
                    {
                        // Sleep until the next call. The flag is set with a full fence (a plain release store could be
                        // reordered after the generation check, letting both sides miss each other), and the wait has a
                        // timeout as a safety net: a missed wake-up can only cost a few milliseconds, never a hang.
                        Interlocked.Exchange(ref _sleeping, 1);
                        while (Volatile.Read(ref _generation) == seen) _wake.Wait(SleepCheckMilliseconds);
                        Interlocked.Exchange(ref _sleeping, 0);
                        start = System.Diagnostics.Stopwatch.GetTimestamp();
                    }
                    else
                    {
                        Thread.SpinWait(20);
                    }
                }
                seen = generation;
                var body = _body;
                if (body is not null && _part < _parts)
                {
                    try
                    {
                        body(_part);
                    }
                    catch (Exception ex)
                    {
                        Interlocked.CompareExchange(ref _failure, ex, null);
                    }
                    Interlocked.Decrement(ref _remaining);
                }
            }
        }
    }
}
