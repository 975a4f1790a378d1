using Storage.Consensus;

namespace Storage.Consensus.Tests.Simulation;

/// <summary>A replica in the simulation: its disk survives crashes, everything else does not.</summary>
internal sealed class SimNode(int id)
{
    public readonly int Id = id;
    public readonly MemoryLogDirectory Dir = new();
    public DurableLog? Log;
    public PaxosCore? Core;
    public KvMachine Kv = new();
    public double Rate = 1.0;
    public double NextTick;
    public long Incarnation;
    public bool CrashAtNextSync;
    public long PausedUntil;
    public int MissedTicks;
    public bool Asleep; // paused and its Resume has not run yet (it has not caught up on its clock)
    public bool RestartScheduled;
    public readonly HashSet<(int Client, long Seq)> Pending = [];

    public bool Up => Core is not null;
}

/// <summary>Thrown when an invariant is violated; the simulation stops at the first one.</summary>
internal sealed class InvariantViolation(string message) : Exception(message);

/// <summary>
/// Deterministic simulation of a replica group: simulated network and disks, per-replica drifting clocks,
/// clients, and fault injection, all driven by one seeded <see cref="Random"/> and an event queue, so a
/// seed replays exactly. Invariants are checked after every event (see SimCluster.Invariants.cs).
/// </summary>
internal sealed partial class SimCluster
{
    private enum EvKind
    {
        Tick,
        Deliver,
        ClientDeliver,
        ClientReply,
        ClientTimeout,
        ClientNext,
        Fault,
        Restart,
        Heal,
        Resume,
    }

    private sealed class Ev
    {
        public EvKind Kind;
        public int Node;
        public Message? Msg;
        public KvCommand Cmd;
        public int Client;
        public long Seq;
        public int Attempt;
        public bool Ok;
        public long Result;
        public int Hint;
    }

    private readonly SimOptions _o;
    private readonly Random _rng;
    private readonly PriorityQueue<Ev, (long, long)> _events = new();
    private long _eventSeq;
    private long _now;
    private long _nextIncarnation = 1_000;
    private readonly HashSet<(int From, int To)> _cut = [];
    private double _dropRate, _dupRate, _longDelayRate;
    private bool _healing;
    private readonly Queue<string>? _trace;
    private readonly int _traceLimit;

    /// <summary>Counts of what happened, for the test log (so a quiet run cannot pass unnoticed).</summary>
    public readonly SortedDictionary<string, long> Stats = new(StringComparer.Ordinal);

    private void Count(string what, long by = 1) => Stats[what] = Stats.GetValueOrDefault(what) + by;

    public readonly SimNode[] Nodes;
    public readonly Configuration InitialConfig;

    /// <summary>Manual mode (scenario scripts): no clock, clients or faults; messages park in <see cref="Parked"/>.</summary>
    public readonly bool Manual;
    public readonly List<Message> Parked = [];

    public SimCluster(SimOptions options, bool manual = false, bool trace = false, int traceLimit = 400)
    {
        _traceLimit = traceLimit;
        _o = options;
        _rng = new Random(options.Seed);
        Manual = manual;
        _trace = trace ? new Queue<string>() : null;
        _dropRate = options.DropRate;
        _dupRate = options.DuplicateRate;
        _longDelayRate = options.LongDelayRate;
        InitialConfig = Configuration.Initial(options.Nodes);
        Nodes = new SimNode[options.Nodes + 1];
        for (int id = 1; id <= options.Nodes; id++)
        {
            var n = Nodes[id] = new SimNode(id);
            n.Rate = 1 + (_rng.NextDouble() * 2 - 1) * options.ClockDrift;
            n.NextTick = _rng.NextDouble() * options.TickMicros;
            Boot(n, bootstrap: true);
            if (!manual)
                Schedule((long)n.NextTick, new Ev { Kind = EvKind.Tick, Node = id });
        }
        if (!manual)
        {
            for (int c = 1; c <= options.Clients; c++)
                StartClient(c);
            if (options.FaultInterval > 0)
                Schedule(NextFaultDelay(), new Ev { Kind = EvKind.Fault });
        }
    }

    public long Now => _now;

    public IEnumerable<SimNode> All => Nodes.Skip(1);

    private ConsensusOptions CoreOptions(int id, long incarnation) => new()
    {
        Id = id,
        Incarnation = incarnation,
        InitialConfig = InitialConfig,
        ElectionTicks = 10,
        HeartbeatTicks = 2,
        LeaseTicks = 7,
        MaxClockDrift = _o.ClockDrift,
        MaxInflightSlots = _o.MaxInflightSlots,
        MaxBatchCommands = _o.MaxBatchCommands,
        MaxCatchupEntries = 64,
        JitterSeed = (ulong)_o.Seed * 31 + (ulong)id,
    };

    private void Boot(SimNode n, bool bootstrap)
    {
        var log = DurableLog.Open(n.Dir, n.Id, bootstrap, ++_nextIncarnation);
        n.Log = log;
        n.Incarnation = log.Incarnation;
        NoteIncarnation(n.Id, log.Incarnation);
        var state = log.State;
        CheckRecovered(n, state);
        n.Core = new PaxosCore(CoreOptions(n.Id, log.Incarnation), state);
        n.Kv = state.Snapshot is { } snap ? KvMachine.Restore(snap.Data.Span, snap.Index) : new KvMachine();
        if (state.Snapshot is { } s)
            CheckHash(n, s.Index);
        n.Pending.Clear();
        Count(log.Outcome switch { RecoveryOutcome.New => "boot-new", RecoveryOutcome.Reset => "boot-reset", _ => "boot-recovered" });
        if (log.TornBytesCut > 0)
            Count("torn-tails-cut");
        Trace($"boot {n.Id} inc={log.Incarnation} {log.Outcome} {log.ResetReason} torn={log.TornBytesCut} promised={state.HardState.Promised} commit={state.HardState.Commit}");
        Drain(n);
    }

    private void Schedule(long at, Ev ev) => _events.Enqueue(ev, (at, _eventSeq++));

    private void Trace(string line)
    {
        if (_trace is null)
            return;
        _trace.Enqueue($"{_now,9} {line}");
        if (_trace.Count > _traceLimit)
            _trace.Dequeue();
    }

    public string TraceText => _trace is null ? "(run again with tracing)" : string.Join("\n", _trace);

    /// <summary>Runs the whole scenario: load with faults, then healing, convergence and the final checks.</summary>
    public void Run()
    {
        long chaosEnd = _o.ChaosMicros, deadline = _o.ChaosMicros + _o.HealMicros;
        long nextConvergenceCheck = chaosEnd;
        while (_events.TryDequeue(out var ev, out var key))
        {
            _now = key.Item1;
            if (!_healing && _now >= chaosEnd)
                StartHealing();
            if (_healing && _now >= nextConvergenceCheck)
            {
                nextConvergenceCheck = _now + 5_000;
                if (_o.Reconfigure)
                    Reconfigure(); // adds back any member a reconfiguration removed
                if (Converged())
                {
                    FinalChecks();
                    return;
                }
                if (_now >= deadline)
                    throw new InvariantViolation("no convergence after healing: " + Describe());
            }
            Handle(ev);
            CheckStep();
        }
        throw new InvariantViolation("event queue ran dry");
    }

    private void Handle(Ev ev)
    {
        switch (ev.Kind)
        {
            case EvKind.Tick:
                var n = Nodes[ev.Node];
                n.NextTick += _o.TickMicros / n.Rate;
                Schedule((long)n.NextTick, ev);
                if (n.Up && n.Asleep)
                    n.MissedTicks++;
                else if (n.Up)
                {
                    n.Core!.Tick();
                    Drain(n);
                }
                break;
            case EvKind.Deliver when Nodes[ev.Msg!.To].Asleep:
            case EvKind.ClientDeliver when Nodes[ev.Node].Asleep:
                // A paused process reads its sockets when it wakes up.
                Schedule(Nodes[ev.Kind == EvKind.Deliver ? ev.Msg!.To : ev.Node].PausedUntil, ev);
                break;
            case EvKind.Deliver:
                Deliver(ev.Msg!);
                break;
            case EvKind.ClientDeliver:
                OnClientRequest(Nodes[ev.Node], ev.Cmd);
                break;
            case EvKind.Resume when _now < Nodes[ev.Node].PausedUntil:
                break; // paused again meanwhile; a later Resume wakes it
            case EvKind.Resume:
                var p = Nodes[ev.Node];
                if (p.Up)
                {
                    // Its timer fires for every tick it slept through before it handles any message.
                    for (; p.MissedTicks > 0; p.MissedTicks--)
                        p.Core!.Tick();
                    Drain(p);
                }
                p.MissedTicks = 0;
                p.Asleep = false;
                Trace($"resume {p.Id}");
                break;
            case EvKind.ClientReply:
                OnClientReply(ev);
                break;
            case EvKind.ClientTimeout:
                OnClientTimeout(ev.Client, ev.Seq, ev.Attempt);
                break;
            case EvKind.ClientNext:
                NextOp(ev.Client);
                break;
            case EvKind.Fault:
                if (!_healing)
                {
                    InjectFault();
                    Schedule(_now + NextFaultDelay(), ev);
                }
                break;
            case EvKind.Restart:
                var r = Nodes[ev.Node];
                r.RestartScheduled = false;
                if (!r.Up)
                    Boot(r, bootstrap: false);
                break;
            case EvKind.Heal:
                _cut.Clear();
                Trace("heal");
                break;
        }
    }

    // ---- Network ----

    private long Delay()
    {
        long d = _o.MinDelay + (long)(_rng.NextDouble() * (_o.MaxDelay - _o.MinDelay));
        if (_longDelayRate > 0 && _rng.NextDouble() < _longDelayRate)
            d += _rng.Next(5_000, 30_000);
        return d;
    }

    public void Send(Message m)
    {
        if (_cut.Contains((m.From, m.To)))
            return;
        if (Manual)
        {
            Parked.Add(m);
            return;
        }
        if (_dropRate > 0 && _rng.NextDouble() < _dropRate)
            return;
        Schedule(_now + Delay(), new Ev { Kind = EvKind.Deliver, Msg = m });
        if (_dupRate > 0 && _rng.NextDouble() < _dupRate)
            Schedule(_now + Delay(), new Ev { Kind = EvKind.Deliver, Msg = m });
    }

    public void Deliver(Message m)
    {
        var n = Nodes[m.To];
        if (!n.Up || _cut.Contains((m.From, m.To)))
            return;
        Trace("recv " + m);
        n.Core!.Step(m);
        Drain(n);
    }

    public void CutLink(int from, int to) => _cut.Add((from, to));

    public void HealAll() => _cut.Clear();

    // ---- The driver: the same order a real host follows ----

    public void Drain(SimNode n)
    {
        while (n.Up && n.Core!.HasReady())
        {
            var core = n.Core;
            var rd = core.GetReady();
            n.Log!.Append(rd);
            if (_o.BugSendBeforeSync)
                foreach (var m in rd.Messages)
                {
                    NoteSent(n, m);
                    Send(m);
                }
            if (rd.MustSync && n.CrashAtNextSync)
            {
                n.CrashAtNextSync = false;
                Trace($"crash {n.Id} before fsync ({n.Dir.UnsyncedBytes} unsynced bytes)");
                Crash(n);
                return;
            }
            if (rd.MustSync)
                n.Log.Sync();
            OnPersisted(n, rd);
            if (!_o.BugSendBeforeSync)
                foreach (var m in rd.Messages)
                {
                    CheckOutgoing(n, m);
                    NoteSent(n, m);
                    Trace("send " + m);
                    Send(m);
                }
            if (rd.Snapshot is not null)
                Count(rd.InstallSnapshot ? "snapshots-installed" : "snapshots-taken");
            if (rd.InstallSnapshot)
            {
                n.Kv = KvMachine.Restore(rd.Snapshot!.Data.Span, rd.Snapshot.Index);
                CheckHash(n, rd.Snapshot.Index);
                Trace($"install {n.Id} snapshot {rd.Snapshot.Index}");
            }
            foreach (var e in rd.Committed)
                Apply(n, e);
            core.Advance();
            if (n.Kv.Applied - core.SnapshotIndex >= _o.SnapshotEvery && n.Kv.Applied == core.AppliedIndex)
                core.Compact(n.Kv.Applied, n.Kv.Serialize());
        }
    }

    private void Apply(SimNode n, CommittedEntry e)
    {
        if (e.Slot != n.Kv.Applied + 1)
            throw new InvariantViolation($"replica {n.Id} applied slot {e.Slot} after {n.Kv.Applied}");
        CheckLearned(n, e);
        if (e.Value.Kind == ValueKind.Commands)
            foreach (var raw in e.Value.Commands)
            {
                var c = KvCommand.Decode(raw.Span);
                var (_, result) = n.Kv.Apply(c);
                if (n.Pending.Remove((c.Client, c.Seq)))
                    ReplyToClient(n, c, ok: true, result);
            }
        n.Kv.Applied = e.Slot;
        CheckHash(n, e.Slot);
    }

    // ---- Crashes ----

    /// <summary>Freezes a process (a long GC pause, a stalled VM): it misses ticks and messages until it wakes.</summary>
    public void Pause(SimNode n, long micros)
    {
        n.PausedUntil = _now + micros;
        n.MissedTicks = 0;
        n.Asleep = true;
        Schedule(n.PausedUntil, new Ev { Kind = EvKind.Resume, Node = n.Id });
        Count("pauses");
        Trace($"pause {n.Id} for {micros}");
    }

    public void Crash(SimNode n)
    {
        if (!n.Up)
            return;
        n.PausedUntil = 0;
        n.Asleep = false;
        n.Log!.Dispose();
        n.Log = null;
        n.Core = null;
        n.Pending.Clear();
        int lost = n.Dir.Crash(_rng);
        Count("crashes");
        Count("unsynced-bytes-lost", lost);
        Trace($"crash {n.Id} lost {lost} unsynced bytes");
    }

    public void Restart(SimNode n)
    {
        if (!n.Up)
            Boot(n, bootstrap: false);
    }

    public void Wipe(SimNode n)
    {
        Crash(n);
        n.Dir.Wipe();
        Count("wipes");
        Trace($"wipe {n.Id}");
    }

    /// <summary>
    /// Flips a bit inside a synced log record that has synced records after it. (A damaged final record
    /// looks exactly like a torn write and is cut; the durable log documents that it cannot tell them apart.)
    /// </summary>
    public bool Corrupt(SimNode n)
    {
        var bytes = n.Dir.ReadDurable(DurableLog.LogFileName);
        if (bytes is null)
            return false;
        var frames = DurableLog.Scan(bytes).Frames;
        if (frames.Count < 3)
            return false;
        var (offset, length) = frames[1 + _rng.Next(frames.Count - 2)];
        Trace($"corrupt {n.Id} frame at {offset} learned config {LearnedConfig} incarnations {string.Join(",", All.Select(x => x.Incarnation))}");
        return n.Dir.FlipBit(DurableLog.LogFileName, offset, offset + 8 + length, _rng);
    }

    private string Describe() => string.Join("; ", All.Select(n => n.Up
        ? $"{n.Id}#{n.Incarnation}: {n.Core!.Role} leader={n.Core.LeaderId} promised={n.Core.Promised} commit={n.Core.CommitIndex} applied={n.Kv.Applied} config={n.Core.Config}"
        : $"{n.Id}: down"));
}

// Manual control, for scenario scripts.
internal sealed partial class SimCluster
{
    private long _scenarioSeq;

    public void TickNode(SimNode n)
    {
        if (!n.Up)
            return;
        n.Core!.Tick();
        Drain(n);
    }

    /// <summary>Proposes Put(key 0, <paramref name="value"/>) at <paramref name="n"/>; false when it is not the leader.</summary>
    public bool ProposeValue(SimNode n, long value)
    {
        var cmd = new KvCommand(99, ++_scenarioSeq, KvOp.Put, 0, value, 0);
        _proposed.Add(cmd);
        if (!n.Up || !n.Core!.Propose(cmd.Encode()))
            return false;
        Drain(n);
        return true;
    }

    /// <summary>Delivers, in order, the parked messages matching <paramref name="match"/> that were parked when called.</summary>
    public int DeliverParked(Func<Message, bool> match)
    {
        var batch = Parked.Where(match).ToList();
        foreach (var m in batch)
        {
            Parked.Remove(m);
            Deliver(m);
            CheckStep();
        }
        return batch.Count;
    }

    public int DropParked(Func<Message, bool> match) => Parked.RemoveAll(m => match(m));
}
