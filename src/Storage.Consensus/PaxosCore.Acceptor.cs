namespace Storage.Consensus;

// Acceptor and learner: promises, accepts, commit learning, catch-up and snapshot installation.
public sealed partial class PaxosCore
{
    private void OnPrepare(Message m)
    {
        if (m.Ballot < _promised)
        {
            Reply(m, MessageType.Nack, _promised);
            return;
        }
        // The guard makes leases safe: while a leader we acknowledged may still hold one, we help no one
        // else (not even ourselves) through phase 1. Silence, not a Nack, so no one steps down for it.
        if (GuardBlocks(m.From))
            return;
        if (m.Ballot > _promised)
        {
            SetPromised(m.Ballot);
            if (_role != Role.Follower || _leaderId != -1)
                BecomeFollower(-1);
            _electionElapsed = 0; // give the candidate time to finish
        }
        Send(MakePromise(m.From, m.Ballot, m.Slot));
    }

    private Message MakePromise(int to, Ballot ballot, long fromSlot)
    {
        // A replica whose log no longer holds the candidate's slots (compacted) or holds many chosen ones
        // makes the candidate stop and catch up instead; Slot = -1 says the entries are left out.
        bool lagging = _snapshotIndex >= fromSlot || _commit >= fromSlot + _o.MaxCatchupEntries;
        var entries = new List<LogRecord>();
        if (!lagging)
            for (long s = fromSlot; s <= _lastSlot; s++)
                if (_log.TryGetValue(s, out var r))
                    entries.Add(r);
        return new Message
        {
            Type = MessageType.Promise,
            From = _o.Id,
            FromIncarnation = _self.Incarnation,
            To = to,
            Ballot = ballot,
            Slot = lagging ? -1 : fromSlot,
            Commit = _commit,
            SnapshotIndex = _snapshotIndex,
            Entries = entries,
        };
    }

    private void OnAccept(Message m)
    {
        if (m.Ballot < _promised)
        {
            Reply(m, MessageType.Nack, _promised);
            return;
        }
        SetPromised(m.Ballot);
        int leader = m.Ballot.ReplicaId;
        if (_role != Role.Follower)
            BecomeFollower(leader);
        _leaderId = leader;
        _electionElapsed = 0;
        ExtendGuard(leader);

        var slots = new List<long>(m.Entries.Count);
        foreach (var e in m.Entries)
        {
            if (e.Slot > _commit)
                Store(new LogRecord(e.Slot, m.Ballot, e.Value));
            slots.Add(e.Slot);
        }
        LearnCommit(m.Ballot, m.Commit, m.From);
        Send(new Message
        {
            Type = MessageType.Accepted,
            From = _o.Id,
            FromIncarnation = _self.Incarnation,
            To = m.From,
            Ballot = m.Ballot,
            Slots = slots,
            Commit = _commit,
            LeaseTick = m.LeaseTick,
        });
    }

    private void LearnCommit(Ballot ballot, long leaderCommit, int leader)
    {
        // A slot we accepted in the leader's own ballot holds the leader's value; if the leader says it is
        // chosen, ours is the chosen value. Anything else (a gap, an older ballot) needs catch-up.
        while (_commit < leaderCommit && _log.TryGetValue(_commit + 1, out var r) && r.Ballot == ballot)
            CommitNext();
        if (_commit < leaderCommit)
            RequestCatchup(leader, force: false);
    }

    private void RequestCatchup(int from, bool force)
    {
        if (!force && _tick < _catchupAllowedAt)
            return;
        _catchupAllowedAt = _tick + 2 * _o.HeartbeatTicks;
        Send(new Message
        {
            Type = MessageType.CatchupRequest,
            From = _o.Id,
            FromIncarnation = _self.Incarnation,
            To = from,
            Slot = _commit + 1,
            Commit = _commit,
        });
    }

    private void OnCatchupRequest(Message m)
    {
        if (m.Slot <= _snapshotIndex)
        {
            if (_snapshot is not null)
                Send(new Message
                {
                    Type = MessageType.Snapshot,
                    From = _o.Id,
                    FromIncarnation = _self.Incarnation,
                    To = m.From,
                    Commit = _commit,
                    Snapshot = _snapshot,
                });
            return;
        }
        if (m.Slot > _commit)
            return;
        long last = Math.Min(_commit, m.Slot + _o.MaxCatchupEntries - 1);
        var entries = new List<LogRecord>((int)(last - m.Slot + 1));
        for (long s = m.Slot; s <= last; s++)
            entries.Add(_log[s]);
        Send(new Message
        {
            Type = MessageType.CatchupResponse,
            From = _o.Id,
            FromIncarnation = _self.Incarnation,
            To = m.From,
            Commit = _commit,
            Entries = entries,
        });
    }

    private void OnCatchupResponse(Message m)
    {
        if (_role == Role.Leader)
            return; // a leader's log already holds every slot it leads; a stale response has nothing for it
        long before = _commit;
        foreach (var e in m.Entries)
        {
            if (e.Slot != _commit + 1)
                continue;
            // Chosen values: keeping them under the sender's ballot is safe, since every ballot at or
            // above the one that chose a value proposes that same value.
            Store(e);
            CommitNext();
        }
        if (_commit > before && _commit < m.Commit)
            RequestCatchup(m.From, force: true);
        AfterCommitAdvance();
    }

    private void OnSnapshot(Message m)
    {
        var snap = m.Snapshot;
        if (_role == Role.Leader || snap is null || snap.Index <= _commit)
            return;
        SetSnapshot(snap);
        _commit = snap.Index;
        _config = snap.Config;
        _pendingSnapshot = snap;
        _pendingInstall = true;
        if (_commit < m.Commit)
            RequestCatchup(m.From, force: true);
        AfterCommitAdvance();
    }

    private void Reply(Message m, MessageType type, Ballot ballot) => Send(new Message
    {
        Type = type,
        From = _o.Id,
        FromIncarnation = _self.Incarnation,
        To = m.From,
        Ballot = ballot,
        Commit = _commit,
    });
}
