namespace Storage.Consensus;

// Phase 1: campaigning for a ballot over every slot from the commit index on.
public sealed partial class PaxosCore
{
    private sealed class CandidateState
    {
        public long FromSlot;
        public readonly Dictionary<int, Message> Promises = [];
        public readonly HashSet<int> Prepared = [];
    }

    private void StartCampaign()
    {
        _leader = null;
        _role = Role.Candidate;
        _leaderId = -1;
        _electionElapsed = 0;
        _electionTimeout = RandomizedTimeout();
        _ballot = new Ballot(Math.Max(_maxRound, _promised.Round) + 1, _o.Id);
        _maxRound = _ballot.Round;
        SetPromised(_ballot);
        _candidate = new CandidateState { FromSlot = _commit + 1 };
        // Our own promise counts only once the promised ballot is on disk: it is delivered at Advance().
        _localPending.Add(MakePromise(_o.Id, _ballot, _candidate.FromSlot));
        SendPrepares(_config);
    }

    private void SendPrepares(Configuration config)
    {
        var c = _candidate!;
        foreach (var member in config.Members)
            if (member.Id != _o.Id && c.Prepared.Add(member.Id))
                Send(new Message
                {
                    Type = MessageType.Prepare,
                    From = _o.Id,
                    FromIncarnation = _self.Incarnation,
                    To = member.Id,
                    Ballot = _ballot,
                    Slot = c.FromSlot,
                });
    }

    private void OnPromise(Message m)
    {
        if (_role != Role.Candidate || m.Ballot != _ballot)
            return;
        var c = _candidate!;
        if (m.Slot != c.FromSlot)
        {
            // The promiser compacted slots we need or is far ahead: catch up first, campaign later.
            BecomeFollower(-1);
            RequestCatchup(m.From, force: true);
            return;
        }
        c.Promises[m.From] = m;

        // Every configuration that may govern an open slot needs promises meeting each of its majorities: the
        // committed one, and every configuration value any promiser accepted. Each chosen configuration
        // change is reported by some promiser (it met the majority that chose it), so this covers the true
        // configuration of every slot.
        var required = new List<Configuration> { _config };
        foreach (var p in c.Promises.Values)
            foreach (var e in p.Entries)
                if (e.Value.Kind == ValueKind.Config && !required.Contains(e.Value.Config!))
                    required.Add(e.Value.Config!);
        bool all = true;
        foreach (var config in required)
        {
            SendPrepares(config);
            int votes = 0;
            foreach (var p in c.Promises.Values)
                if (config.Contains(new Member(p.From, p.FromIncarnation)))
                    votes++;
            if (votes < config.PromiseQuorum)
                all = false;
        }
        if (all)
            BecomeLeader();
    }

    private void BecomeLeader()
    {
        var c = _candidate!;
        // For every open slot: the value accepted in the highest ballot by any promiser, else a no-op.
        var best = new Dictionary<long, LogRecord>();
        long maxSlot = c.FromSlot - 1;
        foreach (var p in c.Promises.Values)
            foreach (var e in p.Entries)
            {
                if (!best.TryGetValue(e.Slot, out var b) || e.Ballot > b.Ballot)
                    best[e.Slot] = e;
                maxSlot = Math.Max(maxSlot, e.Slot);
            }
        _candidate = null;
        _role = Role.Leader;
        _leaderId = _o.Id;
        _leader = new LeaderState { NextSlot = maxSlot + 1, StartSlot = maxSlot, ElectedAt = _tick };
        // Slots chosen meanwhile (catch-up while campaigning) need no re-proposal.
        for (long s = Math.Max(c.FromSlot, _commit + 1); s <= maxSlot; s++)
            _leader.Repropose.Add(s, best.TryGetValue(s, out var r) ? r.Value : Value.NoOp);
        ProposeWindow();
        Broadcast();
    }
}
