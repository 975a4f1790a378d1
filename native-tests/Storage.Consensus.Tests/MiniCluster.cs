using Storage.Consensus;

namespace Storage.Consensus.Tests;

/// <summary>What a replica has "on disk" in the unit-test harness: everything a Ready asked to persist.</summary>
internal sealed class MemStore
{
    public HardState Hard;
    public readonly Dictionary<long, LogRecord> Records = [];
    public Snapshot? Snapshot;

    public void Persist(Ready rd)
    {
        if (rd.Snapshot is { } snap)
        {
            Snapshot = snap;
            foreach (var s in Records.Keys.Where(s => s <= snap.Index).ToList())
                Records.Remove(s);
        }
        foreach (var r in rd.Records)
            Records[r.Slot] = r;
        if (rd.HardState is { } h)
            Hard = h;
    }

    public PersistentState Load() => new() { HardState = Hard, Records = [.. Records.Values], Snapshot = Snapshot };
}

/// <summary>
/// A small synchronous harness for unit tests of the core: FIFO delivery, optional cut links, in-memory
/// "disks" that persist every Ready. The randomized simulation lives in <c>Simulation/</c>.
/// </summary>
internal sealed class MiniCluster
{
    public readonly SortedDictionary<int, PaxosCore> Nodes = [];
    public readonly Dictionary<int, MemStore> Stores = [];
    public readonly Dictionary<int, List<CommittedEntry>> Applied = [];
    public readonly List<Message> InFlight = [];
    public readonly HashSet<(int From, int To)> Cut = [];
    public readonly HashSet<int> Down = [];
    public Configuration InitialConfig;
    private readonly Func<int, long, Configuration, ConsensusOptions> _options;

    public MiniCluster(int n, Func<int, long, Configuration, ConsensusOptions>? options = null)
    {
        InitialConfig = Configuration.Initial(n);
        _options = options ?? DefaultOptions;
        for (int id = 1; id <= n; id++)
            Start(id, 0, PersistentState.Empty);
    }

    public static ConsensusOptions DefaultOptions(int id, long incarnation, Configuration initial) => new()
    {
        Id = id,
        Incarnation = incarnation,
        InitialConfig = initial,
        ElectionTicks = 10,
        HeartbeatTicks = 2,
        LeaseTicks = 7,
        JitterSeed = (ulong)id * 7919,
    };

    public void Start(int id, long incarnation, PersistentState state)
    {
        Nodes[id] = new PaxosCore(_options(id, incarnation, InitialConfig), state);
        if (!Stores.ContainsKey(id) || state == PersistentState.Empty)
            Stores[id] = new MemStore();
        Applied[id] = [];
        Down.Remove(id);
    }

    public void Crash(int id)
    {
        Down.Add(id);
        InFlight.RemoveAll(m => m.To == id);
    }

    public void Restart(int id)
    {
        Start(id, Nodes[id].Self.Incarnation, Stores[id].Load());
        // Replay what the recovered commit index covers, as a real driver would after loading a snapshot.
        Process(id);
    }

    public PaxosCore Leader => Nodes.Values.Single(n => n.IsLeader && !Down.Contains(n.Self.Id));

    public void Process(int id)
    {
        var node = Nodes[id];
        while (node.HasReady())
        {
            var rd = node.GetReady();
            Stores[id].Persist(rd);
            InFlight.AddRange(rd.Messages);
            if (rd.InstallSnapshot)
                Applied[id] = [new CommittedEntry(rd.Snapshot!.Index, Value.NoOp)];
            Applied[id].AddRange(rd.Committed);
            node.Advance();
        }
    }

    public void DeliverAll(int maxMessages = 100_000)
    {
        foreach (int id in Nodes.Keys)
            if (!Down.Contains(id))
                Process(id);
        int delivered = 0;
        while (InFlight.Count > 0 && delivered++ < maxMessages)
        {
            var m = InFlight[0];
            InFlight.RemoveAt(0);
            if (Down.Contains(m.To) || Cut.Contains((m.From, m.To)) || !Nodes.ContainsKey(m.To))
                continue;
            Nodes[m.To].Step(m);
            Process(m.To);
        }
    }

    public void Tick(int times = 1)
    {
        for (int i = 0; i < times; i++)
        {
            foreach (var (id, node) in Nodes)
                if (!Down.Contains(id))
                {
                    node.Tick();
                    Process(id);
                }
            DeliverAll();
        }
    }

    public PaxosCore ElectLeader(int maxTicks = 200)
    {
        for (int i = 0; i < maxTicks; i++)
        {
            var leaders = Nodes.Values.Where(n => n.IsLeader && !Down.Contains(n.Self.Id)).ToList();
            if (leaders.Count == 1 && leaders[0].HasLease)
                return leaders[0];
            Tick();
        }
        throw new InvalidOperationException("no leader elected");
    }

    public void Partition(IEnumerable<int> side)
    {
        var a = side.ToHashSet();
        foreach (int x in Nodes.Keys)
            foreach (int y in Nodes.Keys)
                if (a.Contains(x) != a.Contains(y))
                    Cut.Add((x, y));
    }

    public void Heal() => Cut.Clear();

    public static ReadOnlyMemory<byte> Cmd(string s) => System.Text.Encoding.UTF8.GetBytes(s);

    public List<string> Commands(int id) =>
        [.. Applied[id].SelectMany(e => e.Value.Commands).Select(c => System.Text.Encoding.UTF8.GetString(c.Span))];
}
