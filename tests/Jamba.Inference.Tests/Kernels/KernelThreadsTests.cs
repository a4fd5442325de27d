using Jamba.Inference.Modeling;
using Xunit;

namespace Jamba.Inference.Tests;

/// <summary>The kernel worker threads: every part runs exactly once per call, failures surface, concurrent and nested
/// callers are served, and sleeping workers wake up.</summary>
public sealed class KernelThreadsTests
{
    [Fact]
    public void Every_part_runs_exactly_once()
    {
        for (int round = 0; round < 2000; round++)
        {
            int parts = 1 + round % 5;
            var hits = new int[parts];
            KernelThreads.Run(parts, p => Interlocked.Increment(ref hits[p]));
            Assert.All(hits, h => Assert.Equal(1, h));
        }
    }

    [Fact]
    public void A_failing_part_is_rethrown_and_the_workers_stay_usable()
    {
        var ex = Assert.Throws<AggregateException>(() => KernelThreads.Run(2, p => { if (p == 1) throw new InvalidOperationException("part 1"); }));
        Assert.Equal("part 1", ex.InnerException!.Message);
        var hits = new int[2];
        KernelThreads.Run(2, p => Interlocked.Increment(ref hits[p]));
        Assert.Equal([1, 1], hits);
    }

    [Fact]
    public async Task Concurrent_and_nested_callers_all_complete()
    {
        var tasks = Enumerable.Range(0, 4).Select(t => Task.Run(() =>
        {
            for (int round = 0; round < 500; round++)
            {
                var hits = new int[3];
                KernelThreads.Run(3, p =>
                {
                    Interlocked.Increment(ref hits[p]);
                    if (p == 0 && round % 50 == 0)
                    {
                        var inner = new int[2];
                        KernelThreads.Run(2, q => Interlocked.Increment(ref inner[q])); // nested: runs serially
                        Assert.Equal([1, 1], inner);
                    }
                });
                Assert.Equal([1, 1, 1], hits);
            }
        })).ToArray();
        await Task.WhenAll(tasks);
    }

    [Fact]
    public async Task Workers_that_went_to_sleep_are_woken()
    {
        for (int i = 0; i < 5; i++)
        {
            await Task.Delay(20); // far beyond the spin time: the workers block
            var hits = new int[2];
            KernelThreads.Run(2, p => Interlocked.Increment(ref hits[p]));
            Assert.Equal([1, 1], hits);
        }
    }

    /// <summary>Calls spaced around the workers' spin time, where a worker is deciding to sleep as work arrives (the
    /// window of a lost wake-up); must finish, not hang.</summary>
    [Fact]
    public void No_wake_up_is_lost_when_work_arrives_as_a_worker_goes_to_sleep()
    {
        var done = new ManualResetEventSlim();
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                var random = new Random(1);
                for (int i = 0; i < 3000; i++)
                {
                    long wait = System.Diagnostics.Stopwatch.GetTimestamp() + random.Next(0, 400) * System.Diagnostics.Stopwatch.Frequency / 1_000_000;
                    while (System.Diagnostics.Stopwatch.GetTimestamp() < wait) Thread.SpinWait(10);
                    var hits = new int[2];
                    KernelThreads.Run(2, p => Interlocked.Increment(ref hits[p]));
                    if (hits[0] != 1 || hits[1] != 1) throw new InvalidOperationException($"call {i}: parts ran {hits[0]}, {hits[1]} times");
                }
            }
            catch (Exception ex)
            {
                failure = ex;
            }
            done.Set();
        }) { IsBackground = true };
        thread.Start();
        Assert.True(done.Wait(TimeSpan.FromSeconds(90)), "a kernel call never finished: a worker missed its wake-up");
        Assert.Null(failure);
    }
}
