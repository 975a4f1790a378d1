namespace Storage.Consensus.Tests.Simulation;

// Clients: one operation outstanding each, retried with the same (client, seq) until answered or given up.
internal sealed partial class SimCluster
{
    private const long ClientTimeout = 25_000;
    private const int MaxAttempts = 8;

    private sealed class SimClient
    {
        public int Id;
        public long Seq;
        public KvCommand? Current;
        public long InvokedAt;
        public int Attempt;
        public int Target = 1;
        public long LastSeen;
    }

    private readonly Dictionary<int, SimClient> _clients = [];
    private readonly List<HistoryOp> _history = [];
    private readonly HashSet<KvCommand> _proposed = [];

    public IReadOnlyList<HistoryOp> History => _history;

    private void StartClient(int id)
    {
        _clients[id] = new SimClient { Id = id, Target = _rng.Next(1, _o.Nodes + 1) };
        Schedule(_now + _rng.Next(0, 3_000), new Ev { Kind = EvKind.ClientNext, Client = id });
    }

    private void NextOp(int id)
    {
        var c = _clients[id];
        if (_healing || c.Current is not null)
            return;
        c.Seq++;
        int key = _rng.Next(_o.Keys);
        long fresh = id * 1_000_000L + c.Seq;
        int pick = _rng.Next(10);
        var op = pick < 5 ? KvOp.Put : pick < 8 ? KvOp.Get : KvOp.Cas;
        long expect = _rng.Next(2) == 0 ? c.LastSeen : 0;
        c.Current = new KvCommand(id, c.Seq, op, key, op == KvOp.Cas ? expect : fresh, op == KvOp.Cas ? fresh : 0);
        c.InvokedAt = _now;
        c.Attempt = 0;
        SendRequest(c);
    }

    private void SendRequest(SimClient c)
    {
        var cmd = c.Current!.Value;
        if (!(_dropRate > 0 && _rng.NextDouble() < _dropRate))
            Schedule(_now + Delay(), new Ev { Kind = EvKind.ClientDeliver, Node = c.Target, Cmd = cmd });
        Schedule(_now + ClientTimeout, new Ev { Kind = EvKind.ClientTimeout, Client = c.Id, Seq = cmd.Seq, Attempt = c.Attempt });
    }

    private void OnClientRequest(SimNode n, KvCommand cmd)
    {
        if (!n.Up)
            return;
        var core = n.Core!;
        if (n.Kv.TryCached(cmd.Client, cmd.Seq, out long cached))
        {
            ReplyToClient(n, cmd, ok: true, cached);
            return;
        }
        if (n.Kv.LastSeq(cmd.Client) > cmd.Seq)
            return;
        if (!core.IsLeader)
        {
            ReplyToClient(n, cmd, ok: false, 0, core.LeaderId);
            return;
        }
        if (cmd.Op == KvOp.Get && core.TryLeaseRead(out long readIndex) && n.Kv.Applied >= readIndex)
        {
            Count("lease-reads");
            Trace($"lease read {n.Id} k{cmd.Key}={n.Kv.Get(cmd.Key)} at {readIndex}");
            ReplyToClient(n, cmd, ok: true, n.Kv.Get(cmd.Key));
            return;
        }
        if (!n.Pending.Add((cmd.Client, cmd.Seq)))
            return;
        _proposed.Add(cmd);
        core.Propose(cmd.Encode());
        Drain(n);
    }

    private void ReplyToClient(SimNode n, KvCommand cmd, bool ok, long result, int hint = -1)
    {
        if (Manual)
            return;
        if (_dropRate > 0 && _rng.NextDouble() < _dropRate)
            return;
        Schedule(_now + Delay(), new Ev { Kind = EvKind.ClientReply, Client = cmd.Client, Seq = cmd.Seq, Ok = ok, Result = result, Hint = hint, Node = n.Id });
    }

    private void OnClientReply(Ev ev)
    {
        var c = _clients[ev.Client];
        if (c.Current is not { } cmd || cmd.Seq != ev.Seq)
            return;
        if (!ev.Ok)
        {
            c.Target = ev.Hint > 0 ? ev.Hint : c.Target % _o.Nodes + 1;
            return; // the timeout resends
        }
        Complete(c, cmd, _now, ev.Result);
    }

    private void OnClientTimeout(int id, long seq, int attempt)
    {
        var c = _clients[id];
        if (c.Current is not { } cmd || cmd.Seq != seq || c.Attempt != attempt)
            return;
        if (++c.Attempt >= MaxAttempts)
        {
            Count("ops-given-up");
            // Outcome unknown: a write may still take effect at any later time; a read says nothing.
            if (cmd.Op != KvOp.Get)
                _history.Add(new HistoryOp(id, cmd.Key, cmd.Op, cmd.A, cmd.B, c.InvokedAt, long.MaxValue, 0));
            c.Current = null;
            Schedule(_now + _rng.Next(0, 2_000), new Ev { Kind = EvKind.ClientNext, Client = id });
            return;
        }
        if (_rng.Next(3) == 0)
            c.Target = c.Target % _o.Nodes + 1;
        SendRequest(c);
    }

    private void Complete(SimClient c, KvCommand cmd, long at, long result)
    {
        _history.Add(new HistoryOp(c.Id, cmd.Key, cmd.Op, cmd.A, cmd.B, c.InvokedAt, at, result));
        Count("ops-completed");
        if (cmd.Op == KvOp.Get)
            c.LastSeen = result;
        if (cmd.Op != KvOp.Get)
            _acknowledged.Add((c.Id, cmd.Seq));
        c.Current = null;
        Schedule(at + _rng.Next(0, 2_000), new Ev { Kind = EvKind.ClientNext, Client = c.Id });
    }
}
