using Storage.Consensus;

namespace Storage.Consensus.Tests.Simulation;

// Invariants, checked as the simulation runs and at the end.
internal sealed partial class SimCluster
{
    // Learned (committed) values and the state hash after each slot, over all replicas: index = slot - 1.
    private readonly List<Value> _learned = [];
    private readonly List<ulong> _hashAt = [];
    private readonly List<(long Slot, Configuration Config)> _learnedConfigs = [];
    private readonly Dictionary<int, HashSet<long>> _incarnations = [];
    private readonly Dictionary<(int, long), Ballot> _maxPromised = [];
    private readonly Dictionary<(int, long), Ballot> _durablePromised = [];
    private readonly Dictionary<(int, long), Dictionary<long, Ballot>> _durableRecords = [];
    private readonly Dictionary<(long Slot, Ballot Ballot), (Value Value, HashSet<Member> Acceptors)> _acceptances = [];
    private readonly HashSet<(int Client, long Seq)> _acknowledged = [];
    private Ballot _lastLeaderBallot;
    private readonly Dictionary<(int, long), Ballot> _sentPromise = [];
    private readonly Dictionary<(int, long), HashSet<long>> _sentAcks = [];

    /// <summary>What a replica told others binds it forever (for its incarnation), whatever its driver does.</summary>
    private void NoteSent(SimNode n, Message m)
    {
        if (m.Type is not (MessageType.Promise or MessageType.Accepted))
            return;
        var key = (n.Id, n.Incarnation);
        if (m.Ballot > _sentPromise.GetValueOrDefault(key))
            _sentPromise[key] = m.Ballot;
        if (m.Slots.Count == 0)
            return;
        if (!_sentAcks.TryGetValue(key, out var acks))
            _sentAcks[key] = acks = [];
        acks.UnionWith(m.Slots);
    }

    public IReadOnlyList<Value> Learned => _learned;

    public Configuration LearnedConfig => _learnedConfigs.Count > 0 ? _learnedConfigs[^1].Config : InitialConfig;

    private void NoteIncarnation(int id, long incarnation)
    {
        if (!_incarnations.TryGetValue(id, out var set))
            _incarnations[id] = set = [];
        set.Add(incarnation);
    }

    /// <summary>A restarted replica must remember every promise and acceptance it made durable.</summary>
    private void CheckRecovered(SimNode n, PersistentState state)
    {
        var key = (n.Id, n.Incarnation);
        if (_sentPromise.TryGetValue(key, out var sent) && state.HardState.Promised < sent)
            throw new InvariantViolation($"replica {n.Id} promised {sent} before its crash but recovered {state.HardState.Promised}");
        if (_sentAcks.TryGetValue(key, out var acked))
        {
            long covered = Math.Max(state.Snapshot?.Index ?? 0, state.HardState.Commit);
            var present = state.Records.Select(r => r.Slot).ToHashSet();
            foreach (long slot in acked)
                if (slot > covered && !present.Contains(slot))
                    throw new InvariantViolation($"replica {n.Id} acknowledged slot {slot} before its crash but recovered no record of it");
        }
        if (_durablePromised.TryGetValue(key, out var promised) && state.HardState.Promised < promised)
            throw new InvariantViolation($"replica {n.Id} recovered promise {state.HardState.Promised} below durable {promised}");
        if (_durableRecords.TryGetValue(key, out var records))
        {
            long snap = state.Snapshot?.Index ?? 0;
            var have = state.Records.Select(r => r.Slot).ToHashSet();
            foreach (long slot in records.Keys)
                if (slot > snap && !have.Contains(slot))
                    throw new InvariantViolation($"replica {n.Id} lost durable record of slot {slot}");
        }
        // Unsynced writes that happened to survive the crash are on disk now: they count from here on.
        if (state.HardState.Promised > promised)
            _durablePromised[key] = state.HardState.Promised;
        if (!_durableRecords.TryGetValue(key, out var recs))
            _durableRecords[key] = recs = [];
        foreach (var r in state.Records)
            recs[r.Slot] = r.Ballot;
    }

    private void OnPersisted(SimNode n, Ready rd)
    {
        if (!rd.MustSync)
            return;
        var key = (n.Id, n.Incarnation);
        if (rd.HardState is { } h && (!_durablePromised.TryGetValue(key, out var p) || h.Promised > p))
            _durablePromised[key] = h.Promised;
        if (rd.Records.Count == 0)
            return;
        if (!_durableRecords.TryGetValue(key, out var recs))
            _durableRecords[key] = recs = [];
        var me = new Member(n.Id, n.Incarnation);
        foreach (var r in rd.Records)
        {
            recs[r.Slot] = r.Ballot;
            if (_acceptances.TryGetValue((r.Slot, r.Ballot), out var a))
            {
                if (!a.Value.Equals(r.Value))
                    throw new InvariantViolation($"slot {r.Slot} ballot {r.Ballot} holds two values: {a.Value} and {r.Value}");
                a.Acceptors.Add(me);
            }
            else
                _acceptances[(r.Slot, r.Ballot)] = (r.Value, [me]);
        }
    }

    /// <summary>fsync before send: a Promise or Accepted may only leave once what it vouches for is durable.</summary>
    private void CheckOutgoing(SimNode n, Message m)
    {
        if (m.Type is not (MessageType.Promise or MessageType.Accepted))
            return;
        var key = (n.Id, n.Incarnation);
        var durable = _durablePromised.GetValueOrDefault(key);
        if (m.Ballot > durable)
            throw new InvariantViolation($"replica {n.Id} sent {m.Type} in {m.Ballot} with only {durable} durable");
        if (m.Type == MessageType.Accepted && m.Slots.Count > 0)
        {
            var recs = _durableRecords.GetValueOrDefault(key);
            foreach (long slot in m.Slots)
                if (slot > n.Core!.CommitIndex && (recs is null || !recs.TryGetValue(slot, out var b) || b != m.Ballot))
                    throw new InvariantViolation($"replica {n.Id} acknowledged slot {slot} in {m.Ballot} without a durable record");
        }
    }

    /// <summary>At most one value per slot, and only values someone proposed (or no-ops, or legal reconfigurations).</summary>
    private void CheckLearned(SimNode n, CommittedEntry e)
    {
        if (e.Slot <= _learned.Count)
        {
            if (!_learned[(int)e.Slot - 1].Equals(e.Value))
                throw new InvariantViolation($"slot {e.Slot}: replica {n.Id} applied {e.Value}, another applied {_learned[(int)e.Slot - 1]}");
            return;
        }
        if (e.Slot != _learned.Count + 1)
            throw new InvariantViolation($"replica {n.Id} applied slot {e.Slot} but slot {_learned.Count + 1} was never applied anywhere");
        switch (e.Value.Kind)
        {
            case ValueKind.Commands:
                foreach (var raw in e.Value.Commands)
                {
                    var c = KvCommand.Decode(raw.Span);
                    if (!_proposed.Contains(c))
                        throw new InvariantViolation($"slot {e.Slot} chose a command nobody proposed: {c}");
                }
                break;
            case ValueKind.Config:
                var next = e.Value.Config!;
                if (!LearnedConfig.IsSingleChangeTo(next))
                    throw new InvariantViolation($"slot {e.Slot}: {LearnedConfig} -> {next} is not a single change");
                foreach (var m in next.Members)
                    if (!_incarnations.TryGetValue(m.Id, out var incs) || !incs.Contains(m.Incarnation))
                        throw new InvariantViolation($"slot {e.Slot}: configuration names {m}, which never existed");
                _learnedConfigs.Add((e.Slot, next));
                break;
        }
        _learned.Add(e.Value);
    }

    /// <summary>Replicas that applied the same prefix have the same state.</summary>
    private void CheckHash(SimNode n, long slot)
    {
        if (slot <= 0)
            return;
        if (slot <= _hashAt.Count)
        {
            if (_hashAt[(int)slot - 1] != n.Kv.Hash)
                throw new InvariantViolation($"replica {n.Id}: state hash after slot {slot} differs from another replica's");
        }
        else if (slot == _hashAt.Count + 1)
            _hashAt.Add(n.Kv.Hash);
    }

    /// <summary>After every event: promises never go back; at most one lease holder.</summary>
    public void CheckStep()
    {
        int holders = 0;
        foreach (var n in All)
        {
            if (!n.Up)
                continue;
            var core = n.Core!;
            var key = (n.Id, n.Incarnation);
            if (_maxPromised.TryGetValue(key, out var p) && core.Promised < p)
                throw new InvariantViolation($"replica {n.Id} promise went back from {p} to {core.Promised}");
            _maxPromised[key] = core.Promised;
            // A paused process cannot act on its lease; it re-checks against its clock when it wakes.
            if (core.HasLease && !n.Asleep)
                holders++;
            if (core.IsLeader && core.Promised != _lastLeaderBallot)
            {
                _lastLeaderBallot = core.Promised;
                Count("leaderships");
            }
        }
        if (holders > 1)
            throw new InvariantViolation($"{holders} replicas hold a lease at once: " + Describe());
    }

    private bool Converged()
    {
        if (All.Any(n => !n.Up) || _clients.Values.Any(c => c.Current is not null))
            return false;
        var leaders = All.Where(n => n.Core!.IsLeader).ToList();
        if (leaders.Count != 1)
            return false;
        var leader = leaders[0].Core!;
        if (leader.QueuedProposals > 0 || All.Any(n => n.Kv.Applied != leader.CommitIndex || !n.Core!.Config.Equals(leader.Config)))
            return false;
        return All.All(n => leader.Config.Contains(new Member(n.Id, n.Incarnation))) && All.All(n => n.Kv.Hash == leaders[0].Kv.Hash);
    }

    private void FinalChecks()
    {
        var kv = All.First().Kv;
        foreach (var (client, seq) in _acknowledged)
            if (kv.LastSeq(client) < seq)
                throw new InvariantViolation($"acknowledged write c{client}#{seq} is missing after healing");
        for (int key = 0; key < _o.Keys; key++)
            _history.Add(new HistoryOp(0, key, KvOp.Get, 0, 0, _now, _now + 1, kv.Get(key)));
        if (!Linearizability.Check(_history, out string? failure))
            throw new InvariantViolation("history is not linearizable: " + failure);
        CheckChosenByQuorum();
    }

    /// <summary>
    /// The definition of chosen: a quorum of the slot's configuration durably accepted one ballot's value.
    /// Every such value must be the one replicas learned.
    /// </summary>
    public void CheckChosenByQuorum()
    {
        foreach (var ((slot, ballot), (value, acceptors)) in _acceptances)
        {
            if (slot > _learned.Count)
                continue;
            var config = InitialConfig;
            foreach (var (s, c) in _learnedConfigs)
                if (s < slot)
                    config = c;
            if (acceptors.Count(config.Contains) >= config.Quorum && !_learned[(int)slot - 1].Equals(value))
                throw new InvariantViolation($"slot {slot}: {value} was chosen in {ballot} but replicas learned {_learned[(int)slot - 1]}");
        }
    }
}
