using System.Diagnostics;
using System.Globalization;

namespace Storage.EtcdLoad;

/// <summary>What one measured window gave.</summary>
internal sealed record LoadResult(long Ops, TimeSpan Elapsed, double P50Ms, double P99Ms, double ServerCpuUsPerOp, double ClientCpuUsPerOp)
{
    public double OpsPerSecond => Ops / Elapsed.TotalSeconds;
}

/// <summary>
/// A closed loop: <c>inflight</c> workers each issue one request, wait for its answer, and issue the next.
/// After a warm-up the window opens; an operation counts (and its latency is kept) when it completes inside
/// the window. CPU time of this process and of the given server processes is sampled at the window's edges.
/// </summary>
internal static class ClosedLoop
{
    private const int Warmup = 0, Measuring = 1, Stopped = 2;

    public static async Task PrefillAsync(ILoadTarget target, int keys, int inflight, CancellationToken cancellationToken)
    {
        int next = -1;
        async Task Worker()
        {
            int key;
            while ((key = Interlocked.Increment(ref next)) < keys)
                await target.PutAsync(key, cancellationToken).ConfigureAwait(false);
        }
        await Task.WhenAll(Enumerable.Range(0, inflight).Select(_ => Task.Run(Worker, cancellationToken))).ConfigureAwait(false);
    }

    public static async Task<LoadResult> RunAsync(Func<int, CancellationToken, Task> op, int inflight, int keys,
        TimeSpan warmup, TimeSpan duration, int[] serverPids, CancellationToken cancellationToken)
    {
        int phase = Warmup;
        long next = -1;
        var latencies = new List<long>[inflight];
        async Task Worker(List<long> mine)
        {
            while (Volatile.Read(ref phase) != Stopped)
            {
                int key = (int)(Interlocked.Increment(ref next) % keys);
                long start = Stopwatch.GetTimestamp();
                await op(key, cancellationToken).ConfigureAwait(false);
                long end = Stopwatch.GetTimestamp();
                if (Volatile.Read(ref phase) == Measuring)
                    mine.Add(end - start);
            }
        }
        var workers = new Task[inflight];
        for (int i = 0; i < inflight; i++)
        {
            var mine = latencies[i] = new List<long>(1 << 14);
            workers[i] = Task.Run(() => Worker(mine), cancellationToken);
        }

        await Task.WhenAny(Task.Delay(warmup, cancellationToken), Task.WhenAll(workers)).ConfigureAwait(false);
        ThrowIfFaulted(workers);
        var me = Process.GetCurrentProcess();
        var clientCpu0 = me.TotalProcessorTime;
        double serverCpu0 = ServerCpuSeconds(serverPids);
        var clock = Stopwatch.StartNew();
        Volatile.Write(ref phase, Measuring);

        await Task.WhenAny(Task.Delay(duration, cancellationToken), Task.WhenAll(workers)).ConfigureAwait(false);
        Volatile.Write(ref phase, Stopped);
        var elapsed = clock.Elapsed;
        double serverCpu = ServerCpuSeconds(serverPids) - serverCpu0;
        me.Refresh();
        var clientCpu = me.TotalProcessorTime - clientCpu0;
        await Task.WhenAll(workers).ConfigureAwait(false);

        long[] all = [.. latencies.SelectMany(l => l)];
        if (all.Length == 0)
            throw new LoadRequestException("no operation completed in the measured window");
        Array.Sort(all);
        double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
        return new LoadResult(all.Length, elapsed, Ms(all[all.Length / 2]), Ms(all[(int)(all.Length * 0.99)]),
            serverCpu * 1e6 / all.Length, clientCpu.TotalMicroseconds / all.Length);
    }

    private static void ThrowIfFaulted(Task[] workers)
    {
        foreach (var w in workers)
            if (w.IsFaulted)
                w.GetAwaiter().GetResult();
    }

    /// <summary>utime + stime of each process (all its threads), in seconds.</summary>
    private static double ServerCpuSeconds(int[] pids)
    {
        // USER_HZ is 100 on every Linux ABI .NET runs on.
        const double ticksPerSecond = 100;
        long ticks = 0;
        foreach (int pid in pids)
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            // Fields after the command name, which is in parentheses and may hold spaces: state is field 3,
            // utime field 14, stime field 15.
            string[] f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            ticks += long.Parse(f[11], CultureInfo.InvariantCulture) + long.Parse(f[12], CultureInfo.InvariantCulture);
        }
        return ticks / ticksPerSecond;
    }
}
