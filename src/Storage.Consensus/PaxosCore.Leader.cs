namespace Storage.Consensus;

// Phase 2 at the leader: slot assignment, batching, pipelining, choosing, heartbeats, lease, membership.
public sealed partial class PaxosCore
{
    private sealed class LeaderState
    {
        public long NextSlot;
        public long StartSlot;
        public long ElectedAt;
        public long LastBroadcast = long.MinValue / 2;
        public long SelfLeaseTick = long.MinValue / 2;
        public readonly SortedDictionary<long, Value> Repropose = [];
        public readonly Dictionary<long, Inflight> Inflight = [];
        public long PendingConfigSlot;
        public Configuration? PendingConfig;
        public Configuration? QueuedConfig;
        public readonly Dictionary<int, PeerState> Peers = [];
        public readonly Dictionary<int, List<LogRecord>> Outgoing = [];
        public readonly List<long> SelfAccepted = [];
        public bool Stepping;
    }

    private sealed class Inflight(Configuration config, long proposedAt)
    {
        public readonly Configuration Config = config;
        public readonly long ProposedAt = proposedAt;
        public readonly List<Member> Votes = [];
        public readonly HashSet<int> AckedIds = [];
        public bool Chosen;
    }

    private sealed class PeerState
    {
        public long Incarnation = long.MinValue;
        public long Commit;
        public long LastHeard = long.MinValue;
        public long LeaseTick = long.MinValue / 2;
    }

    private IEnumerable<Configuration> ActiveConfigs()
    {
        yield return _config;
        if (_leader?.PendingConfig is { } pending)
            yield return pending;
    }

    private List<int> PeerIds()
    {
        var ids = new List<int>();
        foreach (var config in ActiveConfigs())
            foreach (var m in config.Members)
                if (m.Id != _o.Id && !ids.Contains(m.Id))
                    ids.Add(m.Id);
        ids.Sort();
        return ids;
    }

    private void ProposeWindow()
    {
        var l = _leader!;
        if (l.Stepping)
            return;
        // Re-proposals first, never past an unchosen configuration entry: the configuration of a slot must
        // be settled before anything is proposed in it.
        while (l.PendingConfigSlot == 0 && l.Repropose.Count > 0)
        {
            var (slot, value) = l.Repropose.First();
            l.Repropose.Remove(slot);
            if (slot > _commit)
                ProposeAt(slot, value);
        }
        if (l.Repropose.Count > 0 || l.PendingConfigSlot != 0)
            return;
        MaybeQueueReplacement();
        if (l.QueuedConfig is { } next)
        {
            // Drain the pipeline, then propose the change alone.
            if (_commit == l.NextSlot - 1)
            {
                l.QueuedConfig = null;
                if (_config.IsSingleChangeTo(next))
                    ProposeAt(l.NextSlot++, Value.FromConfig(next));
            }
            return;
        }
        while (_proposals.Count > 0 && l.NextSlot - 1 - _commit < _o.MaxInflightSlots)
        {
            var batch = new List<ReadOnlyMemory<byte>>();
            int bytes = 0;
            while (_proposals.Count > 0 && batch.Count < _o.MaxBatchCommands
                && (batch.Count == 0 || bytes + _proposals.Peek().Length <= _o.MaxBatchBytes))
            {
                var c = _proposals.Dequeue();
                bytes += c.Length;
                batch.Add(c);
            }
            ProposeAt(l.NextSlot++, Value.FromCommands(batch));
        }
    }

    private void ProposeAt(long slot, Value value)
    {
        var l = _leader!;
        var record = new LogRecord(slot, _ballot, value);
        Store(record);
        l.Inflight[slot] = new Inflight(_config, _tick);
        if (value.Kind == ValueKind.Config)
        {
            l.PendingConfigSlot = slot;
            l.PendingConfig = value.Config;
        }
        l.SelfAccepted.Add(slot);
        foreach (int peer in PeerIds())
            Outgoing(peer).Add(record);
    }

    private List<LogRecord> Outgoing(int peer)
    {
        var l = _leader!;
        if (!l.Outgoing.TryGetValue(peer, out var list))
            l.Outgoing[peer] = list = [];
        return list;
    }

    private PeerState Peer(int id)
    {
        var l = _leader!;
        if (!l.Peers.TryGetValue(id, out var p))
            l.Peers[id] = p = new PeerState();
        return p;
    }

    private void MaybeQueueReplacement()
    {
        var l = _leader!;
        if (l.QueuedConfig is not null)
            return;
        // A replica that came back with a new incarnation (it lost its disk) votes only once a configuration
        // names it, and the leader proposes that only after it has caught up.
        foreach (var (id, p) in l.Peers)
            if (_config.TryGet(id, out var member) && p.Incarnation > member.Incarnation
                && p.Commit + _o.MaxInflightSlots >= _commit && _tick - p.LastHeard <= _o.ElectionTicks)
            {
                l.QueuedConfig = new Configuration(_config.Members.Select(x => x.Id == id ? new Member(id, p.Incarnation) : x));
                return;
            }
    }

    private void OnAccepted(Message m)
    {
        if (_leader is not { } l || m.Ballot != _ballot)
            return;
        var member = new Member(m.From, m.FromIncarnation);
        if (m.From != _o.Id)
        {
            var peer = Peer(m.From);
            if (m.FromIncarnation < peer.Incarnation)
                return; // a delayed message from a life the replica no longer lives
            if (m.FromIncarnation > peer.Incarnation)
            {
                peer.Incarnation = m.FromIncarnation;
                peer.Commit = 0;
                peer.LeaseTick = long.MinValue / 2;
            }
            peer.Commit = Math.Max(peer.Commit, m.Commit);
            peer.LastHeard = _tick;
            peer.LeaseTick = Math.Max(peer.LeaseTick, m.LeaseTick);
        }
        foreach (long slot in m.Slots)
        {
            if (!l.Inflight.TryGetValue(slot, out var f))
                continue;
            f.AckedIds.Add(m.From);
            if (!f.Chosen && f.Config.Contains(member) && !f.Votes.Contains(member))
            {
                f.Votes.Add(member);
                f.Chosen = f.Votes.Count >= f.Config.Quorum;
            }
        }
        while (l.Inflight.TryGetValue(_commit + 1, out var next) && next.Chosen)
        {
            l.Inflight.Remove(_commit + 1);
            CommitNext();
        }
        AfterCommitAdvance();
    }

    private void OnLeaderConfigCommitted(long slot)
    {
        var l = _leader!;
        if (l.PendingConfigSlot == slot)
        {
            l.PendingConfigSlot = 0;
            l.PendingConfig = null;
        }
        if (!_config.Contains(_self))
            l.Stepping = true;
    }

    private void AfterCommitAdvance()
    {
        if (_leader is not { } l)
            return;
        if (l.Stepping)
        {
            // Removed from the configuration: let the remaining members elect a leader.
            foreach (int peer in PeerIds())
                Outgoing(peer);
            FlushOutgoing();
            BecomeFollower(-1);
            return;
        }
        ProposeWindow();
    }

    private void OnNack(Message m)
    {
        if (_role != Role.Follower && m.Ballot > _ballot)
            BecomeFollower(-1);
    }

    private void LeaderTick()
    {
        var l = _leader!;
        if (_tick - l.LastBroadcast >= _o.HeartbeatTicks)
            Broadcast();
        // Check quorum: a leader that has not heard from a quorum for an election timeout steps down, so
        // clients of a partitioned leader go looking for the real one.
        if (_tick - l.ElectedAt < _o.ElectionTicks)
            return;
        foreach (var config in ActiveConfigs())
        {
            int live = 0;
            foreach (var member in config.Members)
                if (member == _self
                    || l.Peers.TryGetValue(member.Id, out var p) && p.Incarnation == member.Incarnation && _tick - p.LastHeard < _o.ElectionTicks)
                    live++;
            if (live < config.Quorum)
            {
                BecomeFollower(-1);
                return;
            }
        }
    }

    private void Broadcast()
    {
        var l = _leader!;
        l.LastBroadcast = _tick;
        foreach (int peer in PeerIds())
        {
            var list = Outgoing(peer);
            for (long s = _commit + 1; s < l.NextSlot && list.Count < _o.MaxCatchupEntries; s++)
                if (l.Inflight.TryGetValue(s, out var f) && !f.AckedIds.Contains(peer)
                    && _tick - f.ProposedAt >= _o.HeartbeatTicks && !list.Exists(r => r.Slot == s))
                    list.Add(_log[s]);
        }
    }

    private void FlushOutgoing()
    {
        var l = _leader!;
        if (l.Outgoing.Count == 0)
            return;
        // Every accept doubles as a lease round: it carries our tick, and we count ourselves as having
        // acknowledged it now, which our own promise guard backs.
        l.SelfLeaseTick = _tick;
        ExtendGuard(_o.Id);
        foreach (var (peer, entries) in l.Outgoing.OrderBy(p => p.Key))
            Send(new Message
            {
                Type = MessageType.Accept,
                From = _o.Id,
                FromIncarnation = _self.Incarnation,
                To = peer,
                Ballot = _ballot,
                Entries = entries,
                Commit = _commit,
                LeaseTick = _tick,
            });
        l.Outgoing.Clear();
    }

    private long LeaseStart()
    {
        var l = _leader!;
        long start = long.MaxValue;
        var ticks = new List<long>();
        foreach (var config in ActiveConfigs())
        {
            ticks.Clear();
            foreach (var member in config.Members)
                if (member == _self)
                    ticks.Add(l.SelfLeaseTick);
                else if (l.Peers.TryGetValue(member.Id, out var p) && p.Incarnation == member.Incarnation)
                    ticks.Add(p.LeaseTick);
            if (ticks.Count < config.Quorum)
                return long.MinValue / 2;
            ticks.Sort();
            start = Math.Min(start, ticks[^config.Quorum]);
        }
        return start;
    }
}
