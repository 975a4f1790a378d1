using System.Collections.Concurrent;
using System.Globalization;
using Storage.Consensus.Tests.Simulation;

namespace Storage.Consensus.Tests;

public class SimulationTests(ITestOutputHelper output)
{
    /// <summary>Seeds per run: PAXOS_SEEDS overrides (a soak), PAXOS_SEED_BASE shifts the range.</summary>
    private static int SeedCount => int.TryParse(Environment.GetEnvironmentVariable("PAXOS_SEEDS"), out int n) ? n : 5000;

    private static int SeedBase => int.TryParse(Environment.GetEnvironmentVariable("PAXOS_SEED_BASE"), out int b) ? b : 0;

    /// <summary>Runs one seed; null when every invariant held, else the violation.</summary>
    internal static string? RunSeed(SimOptions options, bool trace, out SimCluster cluster, int traceLimit = 400)
    {
        cluster = new SimCluster(options, trace: trace, traceLimit: traceLimit);
        try
        {
            cluster.Run();
            return null;
        }
        catch (InvariantViolation e)
        {
            return e.Message;
        }
    }

    [Fact]
    public void Thousands_of_seeded_runs_with_faults_keep_every_invariant()
    {
        var failures = new ConcurrentBag<(int Seed, string Error)>();
        long ops = 0, slots = 0;
        var stats = new ConcurrentDictionary<string, long>();
        var started = DateTime.UtcNow;
        Parallel.For(SeedBase, SeedBase + SeedCount, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, seed =>
        {
            string? error = RunSeed(SimOptions.FromSeed(seed), trace: false, out var cluster);
            if (error is not null)
                failures.Add((seed, error));
            Interlocked.Add(ref ops, cluster.History.Count);
            Interlocked.Add(ref slots, cluster.Learned.Count);
            foreach (var (k, v) in cluster.Stats)
                stats.AddOrUpdate(k, v, (_, old) => old + v);
        });
        output.WriteLine($"{SeedCount} seeds from {SeedBase}: {ops} client operations, {slots} slots chosen, {(DateTime.UtcNow - started).TotalSeconds:F1} s");
        output.WriteLine(string.Join(", ", stats.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {p.Value}")));
        if (!failures.IsEmpty)
        {
            var (seed, error) = failures.OrderBy(f => f.Seed).First();
            RunSeed(SimOptions.FromSeed(seed), trace: true, out var replay);
            Assert.Fail($"{failures.Count} seed(s) failed: {string.Join(", ", failures.Select(f => f.Seed).Order())}.\n"
                + $"First: seed {seed}: {error}\nReplay with PAXOS_SEED={seed}.\nLast events:\n{replay.TraceText}");
        }
    }

    [Fact]
    public void Seed_from_the_environment_replays_exactly()
    {
        string? text = Environment.GetEnvironmentVariable("PAXOS_SEED");
        int seed = int.TryParse(text, CultureInfo.InvariantCulture, out int s) ? s : 12345;
        string? first = RunSeed(SimOptions.FromSeed(seed), trace: true, out var a, traceLimit: 100_000);
        string? second = RunSeed(SimOptions.FromSeed(seed), trace: true, out var b, traceLimit: 100_000);
        Assert.Equal(first, second);
        Assert.Equal(a.TraceText, b.TraceText);
        Assert.Equal(a.History.Count, b.History.Count);
        if (text is not null)
        {
            output.WriteLine(string.Join(", ", a.Stats.Select(p => $"{p.Key} {p.Value}")));
            output.WriteLine(a.TraceText);
        }
        Assert.True(first is null, $"seed {seed}: {first}\n{a.TraceText}");
    }

    [Fact]
    public void A_driver_that_sends_before_fsync_is_caught()
    {
        int caught = 0;
        for (int seed = 0; seed < 50 && caught == 0; seed++)
        {
            var options = SimOptions.FromSeed(seed) with { BugSendBeforeSync = true, FaultInterval = 5_000 };
            if (RunSeed(options, trace: false, out _) is not null)
                caught++;
        }
        Assert.True(caught > 0, "losing unsynced promises after sending them must break an invariant");
    }
}
