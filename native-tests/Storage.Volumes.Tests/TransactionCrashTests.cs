using Storage.Devices;
using Storage.Metadata;
using Storage.Versioning;

namespace Storage.Volumes.Tests;

/// <summary>
/// Creating a volume across three pools is cut short at every step of the two-phase commit (the coordinator before
/// and after each log write and message, each pool before and after its PREPARED write and its commit), then
/// recovery runs. Whatever the step: all or nothing, no transaction left in doubt, no staged segment, the catalogue
/// and the pools agree, and every pool's space adds up. Real Paxos (three replicas in process), real pools.
/// </summary>
public sealed class TransactionCrashTests() : PoolsInPaxos(3, 64L << 20)
{
    private const long Segment = 4L << 20;

    /// <summary>Every step of a create, in the order they run.</summary>
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
    public async Task A_create_cut_short_at_any_step_is_all_or_nothing_after_recovery(string step)
    {
        bool decided = Array.IndexOf(Order, step) >= Array.IndexOf(Order, "after-decide");
        await CutShortAndRecoverAsync("data", step);
        await CheckAsync("data", expectCreated: decided);

        // The same name works afterwards (or exists), and the next volume goes through whole.
        var transactions = new VolumeTransactions(Cluster, Pools);
        if (!decided)
            await transactions.CreateVolumeAsync("data", 4 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin));
        await transactions.CreateVolumeAsync("more", 3 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin, 1));
        await CheckAsync("data", expectCreated: true);
        await CheckAsync("more", expectCreated: true);
    }

    [Theory]
    [MemberData(nameof(Steps))]
    public async Task A_delete_cut_short_at_any_step_is_all_or_nothing_after_recovery(string step)
    {
        var transactions = new VolumeTransactions(Cluster, Pools);
        await transactions.CreateVolumeAsync("data", 4 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin));
        await transactions.CreateVolumeAsync("keep", 2 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin), copies: 2);
        bool decided = Array.IndexOf(Order, step) >= Array.IndexOf(Order, "after-decide");
        Task Hook(string s) => s == step ? throw new CrashException(s) : Task.CompletedTask;
        transactions.Step = Hook;
        foreach (var pool in Pools)
            pool.Step = Hook;
        var crash = await Record.ExceptionAsync(() => transactions.DeleteVolumeAsync("data"));
        Assert.True(crash is CrashException, $"step {step} was never reached ({crash?.Message ?? "the delete finished"})");
        transactions.Step = null;
        foreach (var pool in Pools)
            pool.Step = null;
        await transactions.RecoverAsync();
        await CheckAsync("data", expectCreated: !decided);
        await CheckAsync("keep", expectCreated: true);
        if (!decided)
            await transactions.DeleteVolumeAsync("data");
        await CheckAsync("data", expectCreated: false);
        await Assert.ThrowsAsync<VolumeException>(() => transactions.DeleteVolumeAsync("data"));
    }

    public static TheoryData<string, long> Resizes => new(Order.Append("before-reconcile").SelectMany(s => new[] { (s, 6 * Segment + Segment / 4), (s, Segment + Segment / 2) }));

    [Theory]
    [MemberData(nameof(Resizes))]
    public async Task A_resize_cut_short_at_any_step_leaves_the_old_or_the_new_size_everywhere(string step, long size)
    {
        var transactions = new VolumeTransactions(Cluster, Pools);
        long before = 3 * Segment + Segment / 2;   // a short last segment
        await transactions.CreateVolumeAsync("data", before, Segment, new Placement(PlacementPolicy.RoundRobin));
        bool decided = Array.IndexOf(Order, step) < 0 || Array.IndexOf(Order, step) >= Array.IndexOf(Order, "after-decide");
        Task Hook(string s) => s == step ? throw new CrashException(s) : Task.CompletedTask;
        transactions.Step = Hook;
        foreach (var pool in Pools)
            pool.Step = Hook;
        var crash = await Record.ExceptionAsync(() => transactions.ResizeVolumeAsync("data", size, new Placement(PlacementPolicy.RoundRobin, 5)));
        transactions.Step = null;
        foreach (var pool in Pools)
            pool.Step = null;
        Assert.True(crash is CrashException, $"step {step} was never reached ({crash?.Message ?? "the resize finished"})");
        await transactions.RecoverAsync();
        await CheckAsync("data", expectCreated: true);   // every segment at the size the catalogue gives it
        var volume = SpannedVolume.Decode((await Cluster.ReadAsync(SpannedVolume.Key("data"))).Value.Span);
        Assert.Equal(decided ? size : before, volume.SizeBytes);
        Assert.Equal((int)((volume.SizeBytes + Segment - 1) / Segment), volume.Segments.Count);
        foreach (var pool in Pools)   // no segment past the end is left anywhere
            Assert.DoesNotContain(pool.Pool.ListVolumes(), v => v.Name.StartsWith("data.", StringComparison.Ordinal) && int.Parse(v.Name[5..], System.Globalization.CultureInfo.InvariantCulture) >= volume.Segments.Count);
    }

    [Fact]
    public async Task A_metadata_leader_lost_between_decision_and_notify_does_not_leave_the_transaction_in_doubt()
    {
        var transactions = new VolumeTransactions(Cluster, Pools);
        transactions.Step = async s =>
        {
            if (s != "after-decide")
                return;
            var leader = await Cluster.WaitForLeaderAsync(TimeSpan.FromSeconds(10));
            Cluster.StopReplica(leader.Status.Consensus.Self.Id);   // the leader that logged the decision is gone
            throw new CrashException(s);
        };
        await Assert.ThrowsAsync<CrashException>(() => transactions.CreateVolumeAsync("data", 4 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin)));
        transactions.Step = null;
        var resolved = await transactions.RecoverAsync();
        Assert.Equal([true], resolved.Select(r => r.Committed));
        await CheckAsync("data", expectCreated: true);
    }

    [Fact]
    public async Task A_pool_that_votes_no_aborts_the_whole_volume_even_when_cut_short_while_aborting()
    {
        await Pools[1].Pool.CreateVolumeAsync(SpannedVolume.SegmentName("data", 1), Segment);   // segment 1's name is taken there
        var transactions = new VolumeTransactions(Cluster, Pools);
        var refused = await Assert.ThrowsAsync<VolumeException>(() => transactions.CreateVolumeAsync("data", 4 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin)));
        Assert.Contains("pool 'pool1' refused", refused.Message, StringComparison.Ordinal);
        await CheckAsync("data", expectCreated: false, except: SpannedVolume.SegmentName("data", 1));

        transactions.Step = s => s == "before-forget-abort" ? throw new CrashException(s) : Task.CompletedTask;
        await Assert.ThrowsAsync<CrashException>(() => transactions.CreateVolumeAsync("data", 4 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin)));
        transactions.Step = null;
        Assert.Equal([false], (await transactions.RecoverAsync()).Select(r => r.Committed));
        await CheckAsync("data", expectCreated: false, except: SpannedVolume.SegmentName("data", 1));
    }

    [Fact]
    public async Task A_decided_transaction_stays_in_doubt_until_every_pool_it_touched_is_back()
    {
        var transactions = new VolumeTransactions(Cluster, Pools)
        {
            Step = s => s == "after-decide" ? throw new CrashException(s) : Task.CompletedTask,
        };
        Assert.IsType<CrashException>(await Record.ExceptionAsync(() => transactions.CreateVolumeAsync("data", 4 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin))));

        // A node that comes back with one pool missing resolves the pools it has, and keeps the record: forgetting it
        // would make the missing pool, attached later, presume an abort and drop its committed segments.
        await new VolumeTransactions(Cluster, [.. Pools.Skip(1)]).RecoverAsync();
        Assert.NotEmpty(await Cluster.ListAsync("tx/"));
        Assert.NotEmpty(Pools[0].Prepared());

        await new VolumeTransactions(Cluster, Pools).RecoverAsync();
        await CheckAsync("data", expectCreated: true);
    }

    /// <summary>
    /// With several coordinators, recovery leaves an undecided transaction alone until it may presume its coordinator
    /// dead; then it aborts it through the log, and the coordinator, alive after all, is refused its commit and aborts.
    /// </summary>
    [Fact]
    public async Task An_undecided_transaction_is_aborted_only_when_allowed_and_its_late_coordinator_then_aborts_too()
    {
        var other = new VolumeTransactions(Cluster, Pools);
        var coordinator = new VolumeTransactions(Cluster, Pools);
        IReadOnlyList<(string, bool)> early = [], late = [];
        coordinator.Step = async s =>
        {
            if (s != "after-prepare")
                return;
            early = await other.RecoverAsync(mayAbort: _ => false);   // another node looks while this one is at work
            Assert.NotEmpty(await Cluster.ListAsync("tx/"));
            late = await other.RecoverAsync(mayAbort: _ => true);     // it has waited long enough
        };
        var refused = await Assert.ThrowsAsync<VolumeException>(() => coordinator.CreateVolumeAsync("data", 4 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin)));
        Assert.Contains("nothing was changed", refused.Message, StringComparison.Ordinal);
        Assert.Empty(early);
        Assert.Equal([false], late.Select(r => r.Item2));
        await CheckAsync("data", expectCreated: false);
    }

    /// <summary>A participant whose node does not answer at commit is not a failure of the commit: the record stays until it is back.</summary>
    [Fact]
    public async Task A_participant_unreachable_at_commit_keeps_the_record_until_it_answers()
    {
        var away = new Unreachable(Pools[1]);
        var transactions = new VolumeTransactions(Cluster, [Pools[0], away, Pools[2]]);
        await transactions.CreateVolumeAsync("data", 4 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin));
        Assert.NotEmpty(await Cluster.ListAsync("tx/"));
        Assert.NotEmpty(Pools[1].Prepared());
        Assert.Empty(Pools[0].Prepared());

        away.Back = true;
        // Another node's resolver commits it everywhere, but forgets it only once its coordinator may be presumed gone
        // (a coordinator whose decision's reply was lost would read "unknown" as aborted).
        await transactions.RecoverAsync(mayAbort: _ => false);
        Assert.Empty(Pools[1].Prepared());
        Assert.NotEmpty(await Cluster.ListAsync("tx/"));
        await transactions.RecoverAsync(mayAbort: _ => true);
        await CheckAsync("data", expectCreated: true);
    }

    /// <summary>A pool whose node is down after it voted (until <see cref="Back"/>).</summary>
    private sealed class Unreachable(PoolParticipant pool) : ITransactionParticipant
    {
        public bool Back { get; set; }

        public string Name => pool.Name;

        public Task<long> FreeBytesAsync(CancellationToken cancellationToken = default) => pool.FreeBytesAsync(cancellationToken);

        public Task PrepareAsync(string transaction, SegmentWork work, Action? cut = null, CancellationToken cancellationToken = default)
            => pool.PrepareAsync(transaction, work, cut, cancellationToken);

        public Task CommitAsync(string transaction, CancellationToken cancellationToken = default)
            => Back ? pool.CommitAsync(transaction, cancellationToken) : throw new ParticipantUnavailableException("node down");

        public Task AbortAsync(string transaction, CancellationToken cancellationToken = default)
            => Back ? pool.AbortAsync(transaction, cancellationToken) : throw new ParticipantUnavailableException("node down");

        public Task<IReadOnlyList<string>> PreparedAsync(CancellationToken cancellationToken = default)
            => Back ? pool.PreparedAsync(cancellationToken) : throw new ParticipantUnavailableException("node down");

        public Task ReconcileAsync(SpannedVolume volume, CancellationToken cancellationToken = default) => pool.ReconcileAsync(volume, cancellationToken);
    }

    [Fact]
    public async Task A_pool_prepared_for_a_transaction_the_metadata_service_does_not_know_aborts_it()
    {
        await Pools[2].Pool.CreateVolumeAsync("tx-0123456789ab.c.ghost.000000", Segment);   // prepared, and the record is gone
        Assert.Equal(["0123456789ab"], Pools[2].Prepared());
        var resolved = await new VolumeTransactions(Cluster, Pools).RecoverAsync();
        Assert.Equal([("0123456789ab", false)], resolved);   // presumed abort
        Assert.Empty(Pools[2].Pool.ListVolumes());
    }

    private async Task CutShortAndRecoverAsync(string name, string step)
    {
        var transactions = new VolumeTransactions(Cluster, Pools);
        Task Hook(string s) => s == step ? throw new CrashException(s) : Task.CompletedTask;
        transactions.Step = Hook;
        foreach (var pool in Pools)
            pool.Step = Hook;
        var crash = await Record.ExceptionAsync(() => transactions.CreateVolumeAsync(name, 4 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin)));
        Assert.True(crash is CrashException, $"step {step} was never reached ({crash?.Message ?? "the create finished"})");
        transactions.Step = null;
        foreach (var pool in Pools)
            pool.Step = null;
        await transactions.RecoverAsync();
    }

    /// <summary>The catalogue and the pools agree on <paramref name="name"/>; nothing is in doubt or staged; space adds up.</summary>
    private async Task CheckAsync(string name, bool expectCreated, string? except = null)
    {
        Assert.Empty(await Cluster.ListAsync("tx/"));
        var read = await Cluster.ReadAsync(SpannedVolume.Key(name));
        Assert.Equal(expectCreated, read.IsOk);
        foreach (var pool in Pools)
        {
            Assert.Empty(pool.Prepared());
            Assert.Null(pool.Pool.CheckSpace());
        }
        if (!expectCreated)
        {
            foreach (var pool in Pools)
                Assert.DoesNotContain(pool.Pool.ListVolumes(), v => v.Name.StartsWith(name + ".", StringComparison.Ordinal) && v.Name != except);
            return;
        }
        var volume = SpannedVolume.Decode(read.Value.Span);
        for (int i = 0; i < volume.Segments.Count; i++)
        {
            foreach (string pool in volume.Segments[i])
            {
                var segment = Pools.Single(p => p.Name == pool).Pool.ListVolumes().SingleOrDefault(v => v.Name == SpannedVolume.SegmentName(name, i));
                Assert.True(segment is not null && segment.Size == volume.SegmentSize(i), $"segment {i} of {name} on {pool}");
            }
        }
    }
}
