using Storage.Consensus;
using static Storage.Consensus.Tests.MiniCluster;

namespace Storage.Consensus.Tests;

public class CoreTests
{
    [Fact]
    public void Elects_one_leader_and_every_replica_applies_the_same_commands_in_order()
    {
        var c = new MiniCluster(3);
        var leader = c.ElectLeader();
        for (int i = 0; i < 10; i++)
            Assert.True(leader.Propose(Cmd($"c{i}")));
        c.Tick(5);
        var expected = Enumerable.Range(0, 10).Select(i => $"c{i}").ToList();
        foreach (int id in c.Nodes.Keys)
            Assert.Equal(expected, c.Commands(id));
        Assert.All(c.Nodes.Values.Where(n => !n.IsLeader), n => Assert.False(n.Propose(Cmd("x"))));
    }

    [Fact]
    public void Queued_commands_share_slots_when_batching_is_on_and_take_one_each_when_off()
    {
        int SlotsUsed(int maxBatch)
        {
            var c = new MiniCluster(3, (id, inc, cfg) => new ConsensusOptions
            {
                Id = id, Incarnation = inc, InitialConfig = cfg, MaxBatchCommands = maxBatch, MaxInflightSlots = 2, JitterSeed = (ulong)id,
            });
            var leader = c.ElectLeader();
            long before = leader.CommitIndex;
            for (int i = 0; i < 40; i++)
                leader.Propose(Cmd($"c{i}"));
            c.Tick(5);
            Assert.Equal(40, c.Commands(leader.Self.Id).Count);
            return (int)(leader.CommitIndex - before);
        }
        Assert.Equal(40, SlotsUsed(1));
        Assert.True(SlotsUsed(64) <= 3, "40 commands queued at once fit in a couple of batches");
    }

    [Fact]
    public void Leader_pipelines_up_to_the_inflight_limit_before_any_slot_is_chosen()
    {
        var c = new MiniCluster(3, (id, inc, cfg) => new ConsensusOptions
        {
            Id = id, Incarnation = inc, InitialConfig = cfg, MaxBatchCommands = 1, MaxInflightSlots = 4, JitterSeed = (ulong)id,
        });
        var leader = c.ElectLeader();
        for (int i = 0; i < 10; i++)
            leader.Propose(Cmd($"c{i}"));
        Assert.True(leader.HasReady());
        var rd = leader.GetReady();
        Assert.Equal(4, rd.Records.Count);
        Assert.All(rd.Messages.Where(m => m.Type == MessageType.Accept), m => Assert.Equal(4, m.Entries.Count));
        Assert.Equal(6, leader.QueuedProposals);
        leader.Advance();
        c.InFlight.AddRange(rd.Messages);
        c.Tick(5);
        Assert.Equal(10, c.Commands(leader.Self.Id).Count);
    }

    [Fact]
    public void Input_between_GetReady_and_Advance_is_refused()
    {
        var c = new MiniCluster(3);
        var leader = c.ElectLeader();
        leader.Propose(Cmd("x"));
        leader.GetReady();
        Assert.Throws<InvalidOperationException>(() => leader.Tick());
        Assert.False(leader.HasReady());
        leader.Advance();
        Assert.Throws<InvalidOperationException>(() => leader.Advance());
    }

    [Fact]
    public void New_leader_fills_gaps_with_noops_and_keeps_accepted_values()
    {
        // Replica 2 accepted "late" in slot 3 under an old ballot; slots 1 and 2 were never accepted anywhere.
        var old = new Ballot(1, 3);
        var c = new MiniCluster(3);
        c.Stores[2].Records[3] = new LogRecord(3, old, Value.FromCommands([Cmd("late")]));
        c.Stores[2].Hard = new HardState(old, 0);
        c.Start(2, 0, c.Stores[2].Load());
        c.Crash(3); // the old proposer is gone
        var leader = c.ElectLeader();
        c.Tick(5);
        var applied = c.Applied[leader.Self.Id];
        Assert.Equal(ValueKind.NoOp, applied[0].Value.Kind);
        Assert.Equal(ValueKind.NoOp, applied[1].Value.Kind);
        Assert.Equal("late", System.Text.Encoding.UTF8.GetString(applied[2].Value.Commands[0].Span));
        Assert.True(leader.Promised > old);
    }

    [Fact]
    public void Lease_is_held_only_by_a_leader_in_touch_with_a_quorum_and_lapses_before_anyone_else_can_lead()
    {
        var c = new MiniCluster(3);
        var leader = c.ElectLeader();
        int id = leader.Self.Id;
        Assert.True(leader.HasLease);
        Assert.True(leader.TryLeaseRead(out long index));
        Assert.Equal(leader.CommitIndex, index);
        c.Partition([id]);
        int ticks = 0;
        while (leader.HasLease)
        {
            c.Tick();
            ticks++;
            Assert.DoesNotContain(c.Nodes.Values, n => n.IsLeader && n.Self.Id != id);
        }
        Assert.InRange(ticks, 1, 7);
        var next = c.ElectLeader();
        Assert.NotEqual(id, next.Self.Id);
        Assert.False(leader.IsLeader && leader.HasLease);
    }

    [Fact]
    public void Lease_longer_than_the_guard_allows_is_rejected()
    {
        var options = new ConsensusOptions { Id = 1, InitialConfig = Configuration.Initial(3), ElectionTicks = 10, LeaseTicks = 9, MaxClockDrift = 0.01 };
        Assert.Equal(8, options.MaxLeaseTicks);
        Assert.Throws<ArgumentOutOfRangeException>(() => new PaxosCore(options));
    }

    [Fact]
    public void Acceptor_that_heard_a_leader_recently_ignores_other_prepares_and_a_restarted_one_ignores_all()
    {
        var c = new MiniCluster(3);
        var leader = c.ElectLeader();
        var follower = c.Nodes.Values.First(n => !n.IsLeader);
        var prepare = new Message { Type = MessageType.Prepare, From = 99, To = follower.Self.Id, Ballot = new Ballot(1000, 99), Slot = 1 };
        follower.Step(prepare);
        Assert.NotEqual(prepare.Ballot, follower.Promised);
        Assert.False(follower.Campaign());
        Assert.True(leader.IsLeader);

        var fresh = new PaxosCore(DefaultOptions(1, 0, Configuration.Initial(3)));
        fresh.Step(new Message { Type = MessageType.Prepare, From = 99, To = 1, Ballot = new Ballot(1000, 99), Slot = 1 });
        Assert.Equal(Ballot.Zero, fresh.Promised);
        Assert.False(fresh.HasReady());
        for (int i = 0; i < 10; i++)
            fresh.Tick();
        fresh.Step(new Message { Type = MessageType.Prepare, From = 99, To = 1, Ballot = new Ballot(1000, 99), Slot = 1 });
        Assert.Equal(new Ballot(1000, 99), fresh.Promised);
        var rd = fresh.GetReady();
        Assert.True(rd.MustSync);
        Assert.Equal(new Ballot(1000, 99), rd.HardState!.Value.Promised);
        Assert.Contains(rd.Messages, m => m.Type == MessageType.Promise && m.To == 99);
    }

    [Fact]
    public void Lagging_replica_catches_up_after_a_partition_heals()
    {
        var c = new MiniCluster(3);
        var leader = c.ElectLeader();
        int lagger = c.Nodes.Keys.First(k => k != leader.Self.Id);
        c.Partition([lagger]);
        for (int i = 0; i < 300; i++)
            leader.Propose(Cmd($"c{i}"));
        c.Tick(10);
        Assert.Equal(300, c.Commands(leader.Self.Id).Count);
        Assert.Empty(c.Commands(lagger));
        c.Heal();
        c.Tick(20);
        Assert.Equal(c.Commands(leader.Self.Id), c.Commands(lagger));
    }

    [Fact]
    public void Compacted_leader_sends_a_snapshot_to_a_replica_behind_its_log()
    {
        var c = new MiniCluster(3);
        var leader = c.ElectLeader();
        int id = leader.Self.Id;
        int lagger = c.Nodes.Keys.First(k => k != id);
        c.Partition([lagger]);
        for (int i = 0; i < 20; i++)
            leader.Propose(Cmd($"c{i}"));
        c.Tick(5);
        leader.Compact(leader.AppliedIndex, new byte[] { 42 });
        c.Process(id);
        Assert.Equal(leader.AppliedIndex, c.Stores[id].Snapshot!.Index);
        Assert.DoesNotContain(c.Stores[id].Records.Keys, s => s <= leader.SnapshotIndex);
        leader.Propose(Cmd("after"));
        c.Heal();
        c.Tick(20);
        var node = c.Nodes[lagger];
        Assert.Equal(leader.CommitIndex, node.CommitIndex);
        Assert.Equal(leader.SnapshotIndex, node.SnapshotIndex);
        Assert.Equal(42, c.Stores[lagger].Snapshot!.Data.Span[0]);
        Assert.Equal(["after"], c.Commands(lagger));
    }

    [Fact]
    public void Membership_changes_one_member_at_a_time_through_the_log()
    {
        var c = new MiniCluster(3);
        var leader = c.ElectLeader();
        var four = new Configuration([.. c.InitialConfig.Members, new Member(4, 0)]);
        Assert.Throws<ArgumentException>(() => leader.ProposeConfigChange(new Configuration([new Member(1, 0)])));
        Assert.True(leader.ProposeConfigChange(four));
        Assert.False(leader.ProposeConfigChange(four));
        c.Start(4, 0, PersistentState.Empty);
        c.Tick(10);
        Assert.All(c.Nodes.Values, n => Assert.Equal(four, n.Config));
        leader.Propose(Cmd("with4"));
        c.Tick(5);
        Assert.Equal(["with4"], c.Commands(4));

        // Remove the leader itself: it steps down once the change is chosen and the others carry on.
        var without = new Configuration(four.Members.Where(m => m.Id != leader.Self.Id));
        Assert.True(leader.ProposeConfigChange(without));
        c.Tick(5);
        Assert.False(leader.IsLeader);
        c.Crash(leader.Self.Id);
        var next = c.ElectLeader();
        next.Propose(Cmd("after"));
        c.Tick(5);
        Assert.Contains("after", c.Commands(next.Self.Id));
        Assert.Equal(without, next.Config);
    }

    [Fact]
    public void Restarted_replica_recovers_its_promise_log_and_commit_from_what_it_persisted()
    {
        var c = new MiniCluster(3);
        var leader = c.ElectLeader();
        for (int i = 0; i < 5; i++)
            leader.Propose(Cmd($"c{i}"));
        c.Tick(3);
        var follower = c.Nodes.Values.First(n => !n.IsLeader);
        int fid = follower.Self.Id;
        var promised = follower.Promised;
        long commit = follower.CommitIndex;
        c.Crash(fid);
        c.Restart(fid);
        Assert.Equal(promised, c.Nodes[fid].Promised);
        Assert.Equal(commit, c.Nodes[fid].CommitIndex);
        Assert.Equal(5, c.Commands(fid).Count);
    }

    [Fact]
    public void Wiped_replica_votes_only_after_the_leader_admits_its_new_incarnation()
    {
        var c = new MiniCluster(3);
        var leader = c.ElectLeader();
        int lid = leader.Self.Id;
        var others = c.Nodes.Keys.Where(k => k != lid).ToList();
        int wiped = others[0], other = others[1];
        for (int i = 0; i < 5; i++)
            leader.Propose(Cmd($"c{i}"));
        c.Tick(3);
        c.Crash(wiped);
        c.Stores.Remove(wiped);
        c.Start(wiped, 77, PersistentState.Empty);
        c.Crash(other);
        // Leader + the wiped replica are two of three ids, but the wiped one is a different acceptor now.
        leader.Propose(Cmd("blocked"));
        c.Tick(5);
        Assert.DoesNotContain("blocked", c.Commands(lid));
        c.Restart(other);
        c.Tick(30);
        var now = c.Leader;
        Assert.Contains(new Member(wiped, 77), now.Config.Members);
        Assert.Contains("blocked", c.Commands(wiped));
        c.Crash(other);
        now.Propose(Cmd("with-new-incarnation"));
        c.Tick(5);
        Assert.Contains("with-new-incarnation", c.Commands(now.Self.Id));
    }

    [Fact]
    public void Ballots_order_by_round_then_replica()
    {
        Assert.True(new Ballot(2, 1) > new Ballot(1, 9));
        Assert.True(new Ballot(2, 1) < new Ballot(2, 2));
        Assert.True(Ballot.Zero < new Ballot(1, 1));
        Assert.Equal("3.2", new Ballot(3, 2).ToString());
    }
}
