namespace Storage.Consensus;

// The Ready/Advance handshake with the driver.
public sealed partial class PaxosCore
{
    private HardState _readyHardState;

    /// <summary>Whether <see cref="GetReady"/> has work for the driver.</summary>
    public bool HasReady()
    {
        if (_inReady)
            return false;
        if (_leader is { } l)
        {
            ProposeWindow();
            if (l.Outgoing.Count > 0 || l.SelfAccepted.Count > 0)
                return true;
        }
        return _unstable.Count > 0 || _pendingSnapshot is not null || _outbox.Count > 0 || _localPending.Count > 0
            || _promiseDirty || _commit > _applied || _commit != _persisted.Commit;
    }

    /// <summary>
    /// Collects the work accumulated since the last <see cref="Advance"/>. The driver must carry it out in
    /// the order <see cref="Ready"/> documents, then call <see cref="Advance"/> before any other input.
    /// </summary>
    /// <exception cref="InvalidOperationException">The previous Ready was not advanced.</exception>
    public Ready GetReady()
    {
        EnsureNotInReady();
        if (_leader is { } l)
        {
            ProposeWindow();
            FlushOutgoing();
            if (l.SelfAccepted.Count > 0)
            {
                // Our own acceptance counts only once the records are on disk: delivered at Advance().
                _localPending.Add(new Message
                {
                    Type = MessageType.Accepted,
                    From = _o.Id,
                    FromIncarnation = _self.Incarnation,
                    To = _o.Id,
                    Ballot = _ballot,
                    Slots = [.. l.SelfAccepted],
                    Commit = _commit,
                });
                l.SelfAccepted.Clear();
            }
        }
        long from = (_pendingInstall ? _pendingSnapshot!.Index : _applied) + 1;
        var committed = new List<CommittedEntry>((int)Math.Max(0, _commit - from + 1));
        for (long s = from; s <= _commit; s++)
            committed.Add(new CommittedEntry(s, _log[s].Value));
        var hard = new HardState(_promised, _commit);
        var ready = new Ready
        {
            HardState = hard != _persisted ? hard : null,
            Records = _unstable,
            Snapshot = _pendingSnapshot,
            InstallSnapshot = _pendingInstall,
            Messages = _outbox,
            Committed = committed,
            MustSync = _unstable.Count > 0 || _pendingSnapshot is not null || _promiseDirty,
        };
        _readyHardState = hard;
        _readyApplied = Math.Max(_applied, _commit);
        _readyLocal = _localPending;
        _localPending = [];
        _unstable = [];
        _outbox = [];
        _pendingSnapshot = null;
        _pendingInstall = false;
        _promiseDirty = false;
        _inReady = true;
        return ready;
    }

    /// <summary>
    /// Acknowledges that the last Ready was carried out: its state is durable, its messages sent, its
    /// entries applied. Then delivers this replica's own promises and acceptances, which count only now.
    /// </summary>
    /// <exception cref="InvalidOperationException">There is no Ready to advance.</exception>
    public void Advance()
    {
        if (!_inReady)
            throw new InvalidOperationException("Advance() without a Ready.");
        _inReady = false;
        _persisted = _readyHardState;
        _applied = _readyApplied;
        var local = _readyLocal!;
        _readyLocal = null;
        foreach (var m in local)
            StepInternal(m);
    }
}
