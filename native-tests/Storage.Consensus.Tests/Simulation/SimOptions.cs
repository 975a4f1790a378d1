namespace Storage.Consensus.Tests.Simulation;

/// <summary>The fault profile and shape of one simulated run, all drawn from the seed.</summary>
internal sealed record SimOptions
{
    public int Seed { get; init; }
    public int Nodes { get; init; } = 3;
    public int Clients { get; init; } = 3;
    public int Keys { get; init; } = 3;
    /// <summary>Simulated microseconds of client load with faults, before healing.</summary>
    public long ChaosMicros { get; init; } = 600_000;
    /// <summary>Simulated microseconds allowed for convergence after healing.</summary>
    public long HealMicros { get; init; } = 1_500_000;
    public long TickMicros { get; init; } = 1_000;
    public double DropRate { get; init; }
    public double DuplicateRate { get; init; }
    public long MinDelay { get; init; } = 50;
    public long MaxDelay { get; init; } = 1_000;
    public double LongDelayRate { get; init; }
    /// <summary>Mean simulated microseconds between fault events (0: no faults).</summary>
    public long FaultInterval { get; init; }
    public bool Wipes { get; init; }
    public bool Corruption { get; init; }
    /// <summary>Leaders remove and re-add members at random (membership changes under faults).</summary>
    public bool Reconfigure { get; init; }
    public double ClockDrift { get; init; } = 0.01;
    public int MaxInflightSlots { get; init; } = 8;
    public int MaxBatchCommands { get; init; } = 16;
    public int SnapshotEvery { get; init; } = 40;
    /// <summary>Test-only driver bug: send messages before fsync (the simulation must catch it).</summary>
    public bool BugSendBeforeSync { get; init; }

    /// <summary>A profile drawn from the seed: some runs calm, most with several kinds of fault.</summary>
    public static SimOptions FromSeed(int seed)
    {
        var r = new Random(seed);
        double[] drops = [0, 0.01, 0.05, 0.15];
        double[] dups = [0, 0.01, 0.05];
        long[] faults = [0, 40_000, 15_000, 6_000];
        bool wipes = r.Next(3) == 0, corruption = r.Next(3) == 0;
        return new SimOptions
        {
            Seed = seed,
            Nodes = r.Next(4) == 0 ? 5 : 3,
            Clients = r.Next(2, 6),
            DropRate = drops[r.Next(drops.Length)],
            DuplicateRate = dups[r.Next(dups.Length)],
            MaxDelay = r.Next(2) == 0 ? 1_000 : 4_000,
            LongDelayRate = r.Next(2) == 0 ? 0.02 : 0,
            FaultInterval = faults[r.Next(faults.Length)],
            Wipes = wipes,
            Corruption = corruption,
            // Removing a member lowers how many disk losses the group survives (3 -> 2 members: none), so
            // random removals and disk losses are not mixed; replacing lost disks reconfigures anyway.
            Reconfigure = !wipes && !corruption && r.Next(2) == 0,
            MaxInflightSlots = r.Next(2) == 0 ? 1 : 8,
            MaxBatchCommands = r.Next(2) == 0 ? 1 : 16,
            SnapshotEvery = r.Next(2) == 0 ? 25 : 200,
        };
    }
}
