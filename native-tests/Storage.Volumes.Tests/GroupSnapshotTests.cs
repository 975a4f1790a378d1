using System.Buffers.Binary;
using Storage.Devices;
using Storage.Metadata;
using Storage.Versioning;

namespace Storage.Volumes.Tests;

/// <summary>Consistency-group snapshots: one cut across volumes and pools, as a two-phase commit.</summary>
public sealed class GroupSnapshotTests(ITestOutputHelper output) : PoolsInPaxos(3, 64L << 20, 4096)
{
    private const long Segment = 1L << 20;

    private async Task<(VolumeTransactions Transactions, SpannedVolumeDevice A, SpannedVolumeDevice B)> TwoVolumesAsync()
    {
        var transactions = new VolumeTransactions(Cluster, Pools);
        var a = await transactions.CreateVolumeAsync("a", 2 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin, 0));
        var b = await transactions.CreateVolumeAsync("b", 2 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin, 1), copies: 2);
        return (transactions, new SpannedVolumeDevice(a, ByName), new SpannedVolumeDevice(b, ByName));
    }

    /// <summary>The counter stored at the start of segment 0 of <paramref name="volume"/>'s snapshot.</summary>
    private async Task<long> CounterAsync(SpannedVolume volume, string snapshot)
    {
        using var device = ByName[volume.Segments[0][0]].OpenSnapshot(SpannedVolume.SegmentName(volume.Name, 0), snapshot);
        var block = new byte[4096];
        await device.ReadAsync(0, block);
        return BinaryPrimitives.ReadInt64LittleEndian(block);
    }

    [Fact]
    public async Task A_group_snapshot_is_one_cut_across_volumes_andPools_under_dependent_writes()
    {
        var (transactions, a, b) = await TwoVolumesAsync();
        using var stop = new CancellationTokenSource();
        // Write k to a, then (once that is acknowledged) k to b: any cut has b <= a <= b + 1.
        var writer = Task.Run(async () =>
        {
            var block = new byte[4096];
            for (long k = 1; !stop.IsCancellationRequested; k++)
            {
                BinaryPrimitives.WriteInt64LittleEndian(block, k);
                await a.WriteAsync(0, block);
                await b.WriteAsync(0, block);
            }
        });
        var pauses = new List<double>();
        const int Warm = 20, Snapshots = 120;
        for (int i = 0; i < Snapshots; i++)
        {
            await Task.Delay(2);
            var held = await transactions.SnapshotGroupAsync($"s{i}", ["a", "b"], [a, b]);
            if (i >= Warm)   // the first ones run before the JIT has optimised the path
                pauses.Add(held.TotalMilliseconds);
        }
        await stop.CancelAsync();
        await writer;
        for (int i = 0; i < Snapshots; i++)
        {
            long inA = await CounterAsync(a.Volume, $"s{i}"), inB = await CounterAsync(b.Volume, $"s{i}");
            Assert.True(inB <= inA && inA <= inB + 1, $"snapshot s{i}: a holds {inA}, b holds {inB}");
            var record = SpannedSnapshot.Decode((await Cluster.ReadAsync(SpannedSnapshot.Key("b", $"s{i}"))).Value.Span);
            Assert.Equal(["a", "b"], record.Group);
        }
        pauses.Sort();
        output.WriteLine($"writes held per group snapshot, {pauses.Count} after {Warm} warm-up ones (3 pools on memory disks; volume a: 2 segments, b: 2 mirrored segments): " +
            $"median {pauses[pauses.Count / 2]:F2} ms, p99 {pauses[(int)(pauses.Count * 0.99)]:F2} ms, max {pauses[^1]:F2} ms");
        await Assert.ThrowsAsync<VolumeException>(() => transactions.SnapshotGroupAsync("s0", ["a", "b"], [a, b]));   // taken already
        a.Dispose();
        b.Dispose();
    }

    [Fact]
    public async Task Writes_wait_while_the_group_is_paused_and_go_on_after()
    {
        var (_, a, b) = await TwoVolumesAsync();
        await a.PauseWritesAsync();
        var held = a.WriteAsync(0, new byte[4096]).AsTask();
        await Task.Delay(100);
        Assert.False(held.IsCompleted, "a write went through while writes were held");
        await b.WriteAsync(0, new byte[4096]);   // another volume is not held
        await Assert.ThrowsAsync<InvalidOperationException>(() => a.PauseWritesAsync());
        a.ResumeWrites();
        await held.WaitAsync(TimeSpan.FromSeconds(5));
        a.Dispose();
        b.Dispose();
    }

    private static readonly string[] Order =
    [
        "before-begin", "after-begin",
        "pool0:before-prepare", "pool0:after-prepare", "pool1:before-prepare", "pool1:after-prepare", "pool2:before-prepare", "pool2:after-prepare",
        "after-prepare", "after-decide",
        "pool0:before-commit", "pool0:after-commit", "pool1:before-commit", "pool1:after-commit", "pool2:before-commit", "pool2:after-commit",
        "before-forget",
    ];

    public static TheoryData<string> Steps => new(Order);

    [Theory]
    [MemberData(nameof(Steps))]
    public async Task A_group_snapshot_cut_short_at_any_step_is_all_or_nothing_and_never_leaves_writes_held(string step)
    {
        var (transactions, a, b) = await TwoVolumesAsync();
        bool decided = Array.IndexOf(Order, step) >= Array.IndexOf(Order, "after-decide");
        Task Hook(string s) => s == step ? throw new CrashException(s) : Task.CompletedTask;
        transactions.Step = Hook;
        foreach (var pool in Pools)
            pool.Step = Hook;
        var crash = await Record.ExceptionAsync(() => transactions.SnapshotGroupAsync("cut", ["a", "b"], [a, b]));
        Assert.True(crash is CrashException, $"step {step} was never reached ({crash?.Message ?? "the snapshot finished"})");
        await a.WriteAsync(0, new byte[4096]).AsTask().WaitAsync(TimeSpan.FromSeconds(5));   // not left paused
        transactions.Step = null;
        foreach (var pool in Pools)
            pool.Step = null;
        await transactions.RecoverAsync();

        Assert.Empty(await Cluster.ListAsync("tx/"));
        foreach (var volume in new[] { a.Volume, b.Volume })
        {
            Assert.Equal(decided, (await Cluster.ReadAsync(SpannedSnapshot.Key(volume.Name, "cut"))).IsOk);
            for (int i = 0; i < volume.Segments.Count; i++)
            {
                foreach (string pool in volume.Segments[i])
                {
                    var names = ByName[pool].ListSnapshots(SpannedVolume.SegmentName(volume.Name, i), countSpace: false).Select(s => s.Name).ToList();
                    Assert.Equal(decided ? ["cut"] : [], names);
                }
            }
        }
        foreach (var pool in Pools)
        {
            Assert.Empty(pool.Prepared());
            Assert.Null(pool.Pool.CheckSpace());
        }
        if (!decided)
            await transactions.SnapshotGroupAsync("cut", ["a", "b"], [a, b]);   // the name is free again
        a.Dispose();
        b.Dispose();
    }
}
