using System.Globalization;
using Storage.Consensus.Tests.Simulation;

namespace Storage.Consensus.Tests;

/// <summary>
/// Runs a scenario script from testdata/: one command per line, one handler per command, invariants
/// checked after every command. Replicas run on the simulation's durable logs and manual network.
/// </summary>
internal sealed class ScenarioRunner
{
    private readonly Dictionary<string, Action<string[]>> _handlers;
    private SimCluster? _cluster;
    private readonly List<string> _log = [];

    public ScenarioRunner()
    {
        _handlers = new(StringComparer.Ordinal)
        {
            ["cluster"] = a => _cluster = new SimCluster(new SimOptions { Seed = 1, Nodes = Int(a[0]), Clients = 0 }, manual: true),
            ["tick"] = Tick,
            ["deliver"] = a => Cluster.DeliverParked(Matcher(a)),
            ["drop"] = a => Cluster.DropParked(Matcher(a)),
            ["settle"] = a => Settle(a.Length > 0 ? Int(a[0]) : 30),
            ["campaign"] = a => Require(Cluster.Nodes[Int(a[0])].Core!.Campaign(), $"replica {a[0]} may not campaign", () => Cluster.Drain(Cluster.Nodes[Int(a[0])])),
            ["propose"] = Propose,
            ["partition"] = Partition,
            ["heal"] = _ => Cluster.HealAll(),
            ["crash"] = a => Cluster.Crash(Node(a[0])),
            ["crash-before-sync"] = a => Node(a[0]).CrashAtNextSync = true,
            ["restart"] = a => Cluster.Restart(Node(a[0])),
            ["wipe"] = a => Cluster.Wipe(Node(a[0])),
            ["corrupt"] = a => Require(Cluster.Corrupt(Node(a[0])), "nothing to corrupt", () => Cluster.Crash(Node(a[0]))),
            ["expect-leader"] = ExpectLeader,
            ["expect-role"] = a => Require(a.Skip(1).Contains(Node(a[0]).Core?.Role.ToString() ?? "Down"), $"role of {a[0]}: expected {string.Join(" or ", a.Skip(1))}, got {Node(a[0]).Core?.Role.ToString() ?? "Down"}"),
            ["expect-chosen"] = ExpectChosen,
            ["expect-commit"] = a => Expect(Node(a[0]).Core!.CommitIndex.ToString(CultureInfo.InvariantCulture), a[1], $"commit index of {a[0]}"),
            ["expect-value"] = a => Expect(Node(a[0]).Kv.Get(0).ToString(CultureInfo.InvariantCulture), a[1], $"value at {a[0]}"),
            ["expect-lease"] = a => Expect((Node(a[0]).Core?.HasLease ?? false) ? "true" : "false", a[1], $"lease of {a[0]}"),
            ["expect-member"] = a => Require(Cluster.LearnedConfig.Contains(new Member(Int(a[0]), Node(a[0]).Incarnation)), $"{a[0]} (incarnation {Node(a[0]).Incarnation}) is not in {Cluster.LearnedConfig}"),
            ["expect-not-member"] = a => Require(!Cluster.LearnedConfig.Contains(new Member(Int(a[0]), Node(a[0]).Incarnation)), $"{a[0]} is in {Cluster.LearnedConfig}"),
        };
    }

    private SimCluster Cluster => _cluster ?? throw new InvalidOperationException("the script must start with 'cluster N'");

    private SimNode Node(string id) => id == "leader" ? Leader() : Cluster.Nodes[Int(id)];

    private static int Int(string s) => int.Parse(s, CultureInfo.InvariantCulture);

    public void Run(string path)
    {
        int lineNo = 0;
        foreach (string raw in File.ReadLines(path))
        {
            lineNo++;
            string line = raw.Split('#')[0].Trim();
            if (line.Length == 0)
                continue;
            string[] words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (!_handlers.TryGetValue(words[0], out var handler))
                throw new InvalidDataException($"{Path.GetFileName(path)}:{lineNo}: unknown command '{words[0]}'");
            try
            {
                handler(words[1..]);
                if (_cluster is not null)
                {
                    _cluster.CheckStep();
                    _cluster.CheckChosenByQuorum();
                }
                _log.Add($"{lineNo,4}: {line}");
            }
            catch (Exception e) when (e is InvariantViolation or ScenarioFailure)
            {
                throw new ScenarioFailure($"{Path.GetFileName(path)}:{lineNo}: {line}\n  {e.Message}\n  after:\n{string.Join("\n", _log.TakeLast(12))}");
            }
        }
    }

    private void Tick(string[] a)
    {
        int count = a.Length > 0 ? Int(a[0]) : 1;
        var nodes = a.Length > 1 ? a[1..].Select(Node).ToList() : [.. Cluster.All];
        for (int i = 0; i < count; i++)
            foreach (var n in nodes)
            {
                Cluster.TickNode(n);
                Cluster.CheckStep();
            }
    }

    private void Settle(int ticks)
    {
        for (int i = 0; i < ticks; i++)
        {
            for (int guard = 0; Cluster.Parked.Count > 0 && guard < 10_000; guard++)
                Cluster.DeliverParked(_ => true);
            Tick(["1"]);
        }
        for (int guard = 0; Cluster.Parked.Count > 0 && guard < 10_000; guard++)
            Cluster.DeliverParked(_ => true);
    }

    private static Func<Message, bool> Matcher(string[] a)
    {
        int from = -1, to = -1;
        string? type = null;
        foreach (string word in a)
        {
            if (word.Contains("->", StringComparison.Ordinal))
            {
                var parts = word.Split("->");
                from = parts[0] == "*" ? -1 : Int(parts[0]);
                to = parts[1] == "*" ? -1 : Int(parts[1]);
            }
            else
                type = word;
        }
        return m => (from < 0 || m.From == from) && (to < 0 || m.To == to)
            && (type is null || m.Type.ToString().Equals(type, StringComparison.OrdinalIgnoreCase));
    }

    private void Propose(string[] a)
    {
        var node = Node(a[0]);
        bool rejected = a.Length > 2 && a[2] == "rejected";
        bool ok = Cluster.ProposeValue(node, long.Parse(a[1], CultureInfo.InvariantCulture));
        Require(ok != rejected, ok ? $"replica {node.Id} accepted a proposal" : $"replica {node.Id} is not the leader");
    }

    private SimNode Leader()
    {
        var leaders = Cluster.All.Where(n => n.Core?.IsLeader == true).ToList();
        Require(leaders.Count == 1, $"{leaders.Count} leaders: {string.Join(",", leaders.Select(l => l.Id))}");
        return leaders[0];
    }

    private void Partition(string[] a)
    {
        int bar = Array.IndexOf(a, "|");
        var left = a[..bar].Select(Int).ToHashSet();
        var right = a[(bar + 1)..].Select(Int).ToHashSet();
        foreach (int x in left)
            foreach (int y in right)
            {
                Cluster.CutLink(x, y);
                Cluster.CutLink(y, x);
            }
        Cluster.DropParked(m => left.Contains(m.From) && right.Contains(m.To) || right.Contains(m.From) && left.Contains(m.To));
    }

    private void ExpectLeader(string[] a)
    {
        var leaders = Cluster.All.Where(n => n.Core?.IsLeader == true).Select(n => n.Id).ToList();
        if (a[0] == "none")
            Require(leaders.Count == 0, $"expected no leader, found {string.Join(",", leaders)}");
        else
            Require(leaders.Count == 1 && a.Select(Int).Contains(leaders[0]), $"expected one leader among {string.Join(",", a)}, found [{string.Join(",", leaders)}]");
    }

    private void ExpectChosen(string[] a)
    {
        int slot = Int(a[0]);
        Require(Cluster.Learned.Count >= slot, $"slot {slot} is not chosen yet (chosen up to {Cluster.Learned.Count})");
        var value = Cluster.Learned[slot - 1];
        string actual = value.Kind switch
        {
            ValueKind.NoOp => "noop",
            ValueKind.Config => "config",
            _ => KvCommand.Decode(value.Commands[0].Span).A.ToString(CultureInfo.InvariantCulture),
        };
        Expect(actual, a[1], $"value chosen in slot {slot}");
    }

    private static void Expect(string actual, string expected, string what) =>
        Require(actual == expected, $"{what}: expected {expected}, got {actual}");

    private static void Require(bool condition, string message, Action? then = null)
    {
        if (!condition)
            throw new ScenarioFailure(message);
        then?.Invoke();
    }
}

internal sealed class ScenarioFailure(string message) : Exception(message);
