namespace Storage.Consensus;

/// <summary>
/// One replica of Multi-Paxos as a pure, deterministic state machine in the style of etcd-io/raft:
/// inputs are <see cref="Step"/>, <see cref="Tick"/>, <see cref="Propose"/> (and a few administrative
/// calls); outputs come out of <see cref="GetReady"/>, which the driver carries out and acknowledges with
/// <see cref="Advance"/>. There is no clock, thread, socket, file or random source inside, so every
/// interleaving of inputs can be scripted and replayed exactly.
/// </summary>
/// <remarks>
/// <para>Protocol: a candidate picks a ballot (round, id) above everything it has seen and runs phase 1
/// once for all slots from its commit index on; the winning leader re-proposes the highest-ballot value
/// of every open slot (no-ops fill gaps) and then runs phase 2 per slot, pipelining up to
/// <see cref="ConsensusOptions.MaxInflightSlots"/> slots and batching queued commands into each.
/// Heartbeats are empty accepts; a quorum of acknowledgements gives the leader a lease for local reads.</para>
/// <para>Thread safety: none. One driver thread calls everything, and never calls
/// <see cref="Step"/>, <see cref="Tick"/> or <see cref="Propose"/> between <see cref="GetReady"/> and
/// <see cref="Advance"/>.</para>
/// </remarks>
public sealed partial class PaxosCore
{
    private readonly ConsensusOptions _o;
    private readonly Member _self;

    // Acceptor state (durable through Ready.HardState / Ready.Records).
    private Ballot _promised;
    private readonly Dictionary<long, LogRecord> _log = [];
    private long _lastSlot;
    private long _commit;
    private Snapshot? _snapshot;
    private long _snapshotIndex;

    // Derived from the committed log.
    private Configuration _config;
    private readonly List<(long Slot, Configuration Config)> _configHistory = [];

    // Volatile.
    private Role _role = Role.Follower;
    private long _tick;
    private long _maxRound;
    private int _leaderId = -1;
    private int _electionElapsed;
    private int _electionTimeout;
    private ulong _electionDraws;
    private long _guardUntil;
    private int _guardLeader = -1;
    private long _catchupAllowedAt;
    private Ballot _ballot; // the ballot this replica campaigns or leads in
    private CandidateState? _candidate;
    private LeaderState? _leader;
    private readonly Queue<ReadOnlyMemory<byte>> _proposals = new();

    // Output bookkeeping.
    private long _applied;
    private HardState _persisted;
    private bool _promiseDirty;
    private List<LogRecord> _unstable = [];
    private Snapshot? _pendingSnapshot;
    private bool _pendingInstall;
    private List<Message> _outbox = [];
    private List<Message> _localPending = [];
    private bool _inReady;
    private List<Message>? _readyLocal;
    private long _readyApplied;

    /// <summary>Creates a replica from what it recovered from disk (<see cref="PersistentState.Empty"/> when new).</summary>
    /// <param name="options">Settings; validated.</param>
    /// <param name="state">The recovered state, or null for none.</param>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range (see <see cref="ConsensusOptions.Validate"/>).</exception>
    public PaxosCore(ConsensusOptions options, PersistentState? state = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _o = options;
        _self = new Member(options.Id, options.Incarnation);
        state ??= PersistentState.Empty;

        _promised = state.HardState.Promised;
        _maxRound = _promised.Round;
        _snapshot = state.Snapshot;
        _snapshotIndex = _snapshot?.Index ?? 0;
        _config = _snapshot?.Config ?? options.InitialConfig;
        _lastSlot = _snapshotIndex;
        foreach (var r in state.Records)
        {
            if (r.Slot <= _snapshotIndex)
                continue;
            _log[r.Slot] = r;
            _lastSlot = Math.Max(_lastSlot, r.Slot);
            _maxRound = Math.Max(_maxRound, r.Ballot.Round);
        }
        // The commit index is written after the records it covers, so they are all here; stop at a gap anyway.
        _commit = _snapshotIndex;
        while (_commit < state.HardState.Commit && _log.TryGetValue(_commit + 1, out var next))
        {
            _commit++;
            if (next.Value.Kind == ValueKind.Config)
            {
                _config = next.Value.Config!;
                _configHistory.Add((_commit, _config));
            }
        }
        _applied = _snapshotIndex;
        _persisted = new HardState(_promised, state.HardState.Commit);

        // A restarted acceptor may have acknowledged a leader's lease just before it crashed and forgotten
        // when: it refuses every prepare for one full guard period.
        _guardUntil = options.ElectionTicks;
        _electionTimeout = RandomizedTimeout();
    }

    /// <summary>This replica (id and incarnation).</summary>
    public Member Self => _self;

    /// <summary>Its current role.</summary>
    public Role Role => _role;

    /// <summary>Whether it is the leader.</summary>
    public bool IsLeader => _role == Role.Leader;

    /// <summary>The leader it believes in (itself when leader), or -1.</summary>
    public int LeaderId => _leaderId;

    /// <summary>The highest ballot promised.</summary>
    public Ballot Promised => _promised;

    /// <summary>The commit index: every slot up to it is chosen.</summary>
    public long CommitIndex => _commit;

    /// <summary>The last slot handed out in a Ready and acknowledged by <see cref="Advance"/>.</summary>
    public long AppliedIndex => _applied;

    /// <summary>The snapshot index (the log holds slots after it only).</summary>
    public long SnapshotIndex => _snapshotIndex;

    /// <summary>The committed configuration.</summary>
    public Configuration Config => _config;

    /// <summary>The number of ticks seen since this core was created.</summary>
    public long Ticks => _tick;

    /// <summary>Commands queued at the leader but not yet given a slot.</summary>
    public int QueuedProposals => _proposals.Count;

    /// <summary>
    /// Queues an application command. Only the leader accepts commands; it puts queued commands into
    /// slots (batched, up to the pipeline depth) when <see cref="GetReady"/> is called. A command is
    /// chosen at most once per proposal, but a proposal in flight when leadership changes may or may not
    /// be chosen: clients retry with an id the application deduplicates.
    /// </summary>
    /// <param name="command">The command; not copied, must not change afterwards.</param>
    /// <returns>False when this replica is not the leader (see <see cref="LeaderId"/>).</returns>
    public bool Propose(ReadOnlyMemory<byte> command)
    {
        EnsureNotInReady();
        if (_role != Role.Leader || _leader!.Stepping)
            return false;
        _proposals.Enqueue(command);
        return true;
    }

    /// <summary>
    /// Asks the leader to change the configuration to <paramref name="next"/>, which must differ from
    /// the committed one by one member (see <see cref="Configuration.IsSingleChangeTo"/>). The leader
    /// drains its pipeline, proposes the change, and proposes nothing else until it is chosen.
    /// </summary>
    /// <returns>False when not the leader or another change is still pending.</returns>
    /// <exception cref="ArgumentException"><paramref name="next"/> is not a single change.</exception>
    public bool ProposeConfigChange(Configuration next)
    {
        ArgumentNullException.ThrowIfNull(next);
        EnsureNotInReady();
        if (!_config.IsSingleChangeTo(next))
            throw new ArgumentException($"{_config} -> {next} is not a single-member change.", nameof(next));
        if (_role != Role.Leader || _leader!.PendingConfigSlot != 0 || _leader.QueuedConfig is not null)
            return false;
        _leader.QueuedConfig = next;
        return true;
    }

    /// <summary>
    /// Whether this replica holds a valid read lease now: it leads, a quorum of every active
    /// configuration acknowledged a heartbeat sent less than <see cref="ConsensusOptions.LeaseTicks"/> ago,
    /// and every slot re-proposed when it took over is chosen. While it holds, no other replica can
    /// complete phase 1, so a read of the state after applying <see cref="CommitIndex"/> is linearizable.
    /// The driver must be ticking on time for this to mean anything.
    /// </summary>
    public bool HasLease => _leader is { } l && !l.Stepping && _o.LeaseTicks > 0
        && _commit >= l.StartSlot && _tick < LeaseStart() + _o.LeaseTicks;

    /// <summary>
    /// Lease read: when <see cref="HasLease"/>, the index the application must have applied before it
    /// answers a read locally.
    /// </summary>
    public bool TryLeaseRead(out long readIndex)
    {
        readIndex = _commit;
        return HasLease;
    }

    /// <summary>
    /// Starts phase 1 now with a new ballot (normally an election timeout does this).
    /// </summary>
    /// <returns>False when this replica may not campaign: not a voting member, or its promise guard
    /// (a recent leader's lease, or a recent restart) is still running.</returns>
    public bool Campaign()
    {
        EnsureNotInReady();
        if (!_config.Contains(_self) || GuardBlocks(_o.Id))
            return false;
        StartCampaign();
        return true;
    }

    /// <summary>
    /// Takes a snapshot the application made after applying every slot up to <paramref name="index"/>,
    /// and drops the log up to it. The next Ready carries it for the driver to persist.
    /// </summary>
    /// <param name="index">The last slot the state includes; at most <see cref="AppliedIndex"/>.</param>
    /// <param name="data">The serialized application state; not copied, must not change.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="index"/> is not after the current
    /// snapshot or not yet applied.</exception>
    public void Compact(long index, ReadOnlyMemory<byte> data)
    {
        EnsureNotInReady();
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(index, _snapshotIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(index, _applied);
        var snap = new Snapshot(index, ConfigAt(index), data);
        SetSnapshot(snap);
        _pendingSnapshot = snap;
        _pendingInstall = false;
    }

    /// <summary>Advances logical time by one tick: heartbeats, election timeouts, quorum checks.</summary>
    public void Tick()
    {
        EnsureNotInReady();
        _tick++;
        if (_role == Role.Leader)
        {
            LeaderTick();
            return;
        }
        _electionElapsed++;
        if (_electionElapsed >= _electionTimeout && _config.Contains(_self) && !GuardBlocks(_o.Id))
            StartCampaign();
    }

    /// <summary>Feeds one message from the network. Messages for another replica are ignored.</summary>
    public void Step(Message message)
    {
        ArgumentNullException.ThrowIfNull(message);
        EnsureNotInReady();
        if (message.To != _o.Id || message.From == _o.Id && message.FromIncarnation == _self.Incarnation)
            return;
        StepInternal(message);
    }

    private void StepInternal(Message m)
    {
        if (m.Ballot.Round > _maxRound)
            _maxRound = m.Ballot.Round;
        switch (m.Type)
        {
            case MessageType.Prepare: OnPrepare(m); break;
            case MessageType.Promise: OnPromise(m); break;
            case MessageType.Accept: OnAccept(m); break;
            case MessageType.Accepted: OnAccepted(m); break;
            case MessageType.Nack: OnNack(m); break;
            case MessageType.CatchupRequest: OnCatchupRequest(m); break;
            case MessageType.CatchupResponse: OnCatchupResponse(m); break;
            case MessageType.Snapshot: OnSnapshot(m); break;
        }
    }

    /// <summary>A summary for monitoring.</summary>
    public ConsensusStatus Status()
    {
        var peers = new List<PeerStatus>();
        if (_leader is not null)
            foreach (var (id, p) in _leader.Peers.OrderBy(p => p.Key))
                peers.Add(new PeerStatus(id, p.Incarnation, p.Commit, p.LastHeard == long.MinValue ? long.MaxValue : _tick - p.LastHeard));
        return new ConsensusStatus
        {
            Self = _self,
            Role = _role,
            LeaderId = _leaderId,
            Promised = _promised,
            Commit = _commit,
            Applied = _applied,
            SnapshotIndex = _snapshotIndex,
            Config = _config,
            HasLease = HasLease,
            Peers = peers,
        };
    }

    private void EnsureNotInReady()
    {
        if (_inReady)
            throw new InvalidOperationException("Advance() must be called before the core takes more input.");
    }

    private bool GuardBlocks(int proposer) => _tick < _guardUntil && proposer != _guardLeader;

    private void ExtendGuard(int leader)
    {
        long until = _tick + _o.ElectionTicks;
        if (leader != _guardLeader || until > _guardUntil)
        {
            // A different leader's guard can only start after the previous one, so taking the later end is safe.
            _guardUntil = Math.Max(_guardUntil, until);
            _guardLeader = leader;
        }
    }

    private int RandomizedTimeout()
    {
        // SplitMix64 over (seed, id, incarnation, draw): deterministic jitter with no random source.
        ulong z = _o.JitterSeed ^ ((ulong)_o.Id * 0x9E3779B97F4A7C15UL) ^ (ulong)_self.Incarnation ^ (++_electionDraws * 0xBF58476D1CE4E5B9UL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return _o.ElectionTicks + (int)(z % (ulong)_o.ElectionTicks);
    }

    private Configuration ConfigAt(long slot)
    {
        var config = _snapshot?.Config ?? _o.InitialConfig;
        foreach (var (s, c) in _configHistory)
            if (s <= slot)
                config = c;
        return config;
    }

    private void Send(Message m) => _outbox.Add(m);

    private void SetPromised(Ballot b)
    {
        if (b > _promised)
        {
            _promised = b;
            _promiseDirty = true;
        }
    }

    private void Store(LogRecord r)
    {
        // One ballot proposes one value per slot, so an equal ballot means this record is already here.
        if (_log.TryGetValue(r.Slot, out var old) && old.Ballot == r.Ballot)
            return;
        _log[r.Slot] = r;
        _unstable.Add(r);
        if (r.Slot > _lastSlot)
            _lastSlot = r.Slot;
    }

    private void CommitNext()
    {
        long slot = _commit + 1;
        var value = _log[slot].Value;
        _commit = slot;
        if (value.Kind == ValueKind.Config)
        {
            _config = value.Config!;
            _configHistory.Add((slot, _config));
            // The commit index is normally persisted lazily, but forgetting that a configuration is chosen
            // would make this replica look for quorums in the old one, whose members may be gone for good.
            _promiseDirty = true;
            if (_leader is not null)
                OnLeaderConfigCommitted(slot);
        }
    }

    private void SetSnapshot(Snapshot snap)
    {
        _snapshot = snap;
        _snapshotIndex = snap.Index;
        foreach (var slot in _log.Keys.Where(s => s <= snap.Index).ToList())
            _log.Remove(slot);
        _configHistory.RemoveAll(c => c.Slot <= snap.Index);
        if (_lastSlot < snap.Index)
            _lastSlot = snap.Index;
    }

    private void BecomeFollower(int leaderId)
    {
        if (_role == Role.Leader)
            _proposals.Clear();
        _role = Role.Follower;
        _candidate = null;
        _leader = null;
        _leaderId = leaderId;
        _electionElapsed = 0;
        _electionTimeout = RandomizedTimeout();
    }
}
