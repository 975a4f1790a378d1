using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using Storage.CommandLine;
using Storage.Daemon;
using Storage.Volumes;

namespace Storage.Cli;

/// <summary>
/// <c>storage daemon</c> (run the node), <c>storage daemon stop</c>, <c>storage cluster status</c>, and the client
/// side of every verb that acts through the daemon: typed requests on its owner-only control socket.
/// </summary>
internal static class DaemonCommands
{
    private const string Notes = """

        The daemon hosts three metadata replicas (DIR/meta/1..3), the pools attached to it ('storage pool attach'),
        and an NBD export of every volume (VOL) and snapshot (VOL@SNAP, read-only) on DIR/nbd.sock (and --listen).
        With --cluster n1=127.0.0.1:7100,n2=127.0.0.1:7110,n3=127.0.0.1:7120 --node n2 it is one node of a cluster:
        one metadata replica per node (replica ids are positions in the list; give every node the same list), the pools
        attached to each node, volumes across all of them (prepare and commit sent to the node hosting each pool, data
        over NBD), each volume served by the node it was created on. A node uses four ports from its own: consensus,
        metadata clients, requests between nodes, segment NBD. Without --cluster-key the addresses must be loopback
        (plain TCP on this machine). With --cluster-key FILE (made once by 'storage cluster key create FILE' and
        copied, mode 0600, to every node) all four ports speak TLS 1.3 and each side must show the cluster's
        certificate: a process without the file cannot join, vote, propose or reach a segment, and nodes may be on
        other machines. A transaction undecided for --in-doubt-after seconds (default 10) is presumed abandoned
        and aborted through the Paxos log. Each node renews a lease in the log every second; a node that cannot for a
        third of --failover-after seconds (default 15) stops serving its volumes, and when one has not renewed for
        --failover-after the first live node in the list takes its volumes over and serves them (clients reconnect to
        that node's NBD socket; 'storage volume list' says which node serves each). Segments on the lost node's own
        pools stay unreachable until it is back, except on mirrored volumes: a copy on a pool that is offline or does
        not answer for --degrade-after seconds (default 30) when the volume is opened, or that fails a write while it
        is served, is recorded stale and left out; the volume is served from its other copy, and the stale copy is
        resynchronized in the background (writes going on) once its pool is online again ('storage pool attach', or
        its node back).
        Volume, snapshot and pool commands given no --disks or --device go to it. It logs to standard output and stops
        cleanly on SIGTERM, Ctrl-C or 'storage daemon stop'. See docs/storage-daemon.service for a systemd unit.
        STORAGE_DAEMON_KILL_AT=STEP (crash tests only): the daemon kills itself when a transaction reaches STEP
        (after-begin, after-prepare, after-decide, POOL:after-prepare, POOL:after-commit, ...).
        """;

    /// <summary>The daemon to ask: its directory (default: the one running on this machine).</summary>
    public static Option<string?> DaemonOption { get; } = PoolCommands.PathOption("--daemon", "the storage daemon to ask, by its --dir (default: the one running here)", "DIR");

    public static Command Build()
    {
        var dir = PoolCommands.PathOption("--dir", "the daemon's directory: metadata logs, control and NBD sockets (created owner-only)", "DIR");
        var node = CliOptions.Text("--node", "this node's name in the catalogue (default n1)", "NAME");
        var listen = CliOptions.Text("--listen", "also serve NBD on TCP, e.g. 127.0.0.1:10809", "ADDR:PORT");
        var cluster = CliOptions.Text("--cluster", "run as one node of this cluster: NAME=HOST:PORT,... (loopback only without --cluster-key)", "NODES");
        var failover = CliOptions.Text("--failover-after", "seconds a node may stay silent before another node takes over its volumes (default 15)", "SECONDS");
        var clusterKey = PoolCommands.PathOption("--cluster-key", "the cluster's key file: TLS with mutual authentication between nodes", "FILE");
        var degrade = CliOptions.Text("--degrade-after", "seconds a mirrored volume waits for a copy whose pool is away before it is served without it (default 30)", "SECONDS");
        var inDoubt = CliOptions.Text("--in-doubt-after", "seconds a cluster transaction may stay undecided before it is aborted (default 10)", "SECONDS");
        var daemon = new Command("daemon", "run this node's storage daemon in the foreground (metadata replicas, pools, NBD exports)").WithNotes(Notes);
        daemon.Options.Add(dir);
        daemon.Options.Add(node);
        daemon.Options.Add(listen);
        daemon.Options.Add(cluster);
        daemon.Options.Add(inDoubt);
        daemon.Options.Add(clusterKey);
        daemon.Options.Add(failover);
        daemon.Options.Add(degrade);
        daemon.SetAction(p =>
        {
            string directory = p.GetValue(dir) ?? throw new UsageException("--dir is required: where the daemon keeps its metadata logs and sockets, e.g. storage daemon --dir /var/lib/storage.");
            string name = p.GetValue(node) ?? "n1";
            if (name.Length is 0 or > 32 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
                throw new UsageException($"'{name}' is not a valid node name: 1 to 32 letters, digits, '-' or '_'.");
            if (Path.Combine(directory, "control.sock").Length > 100)
                throw new UsageException($"--dir {directory} is too long for a Unix socket path; use a shorter directory.");
            IReadOnlyList<ClusterNode>? nodes = null;
            string? keyPath = p.GetValue(clusterKey);
            if (keyPath is not null)
            {
                if (p.GetValue(cluster) is null)
                    throw new UsageException("--cluster-key is for a cluster node: give --cluster and --node too.");
                try
                {
                    ClusterKey.Load(keyPath).Dispose();
                }
                catch (DaemonRequestException e)
                {
                    throw new UsageException($"--cluster-key: {e.Message}");
                }
                keyPath = Path.GetFullPath(keyPath);
            }
            if (p.GetValue(cluster) is { } list)
            {
                try
                {
                    nodes = ClusterNode.Parse(list, authenticated: keyPath is not null);
                }
                catch (FormatException e)
                {
                    throw new UsageException($"--cluster: {e.Message}");
                }
                if (p.GetValue(node) is null)
                    throw new UsageException($"--cluster needs --node NAME: which of {string.Join(", ", nodes.Select(n => n.Name))} this daemon is.");
                if (nodes.All(n => n.Name != name))
                    throw new UsageException($"--node {name} is not in --cluster; the nodes are {string.Join(", ", nodes.Select(n => n.Name))}.");
            }
            double seconds = 10;
            if (p.GetValue(inDoubt) is { } text && (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out seconds) || seconds is < 0.5 or > 3600))
                throw new UsageException($"--in-doubt-after {text}: give seconds from 0.5 to 3600.");
            double failoverSeconds = 15;
            if (p.GetValue(failover) is { } after && (!double.TryParse(after, NumberStyles.Float, CultureInfo.InvariantCulture, out failoverSeconds) || failoverSeconds is < 3 or > 3600))
                throw new UsageException($"--failover-after {after}: give seconds from 3 to 3600.");
            double degradeSeconds = 30;
            if (p.GetValue(degrade) is { } wait && (!double.TryParse(wait, NumberStyles.Float, CultureInfo.InvariantCulture, out degradeSeconds) || degradeSeconds is < 0 or > 86400))
                throw new UsageException($"--degrade-after {wait}: give seconds from 0 to 86400.");
            var options = new DaemonOptions
            {
                DegradeAfter = TimeSpan.FromSeconds(degradeSeconds),
                Directory = directory,
                Node = name,
                Cluster = nodes,
                ClusterKeyPath = keyPath,
                InDoubtAfter = TimeSpan.FromSeconds(seconds),
                FailoverAfter = TimeSpan.FromSeconds(failoverSeconds),
                Listen = p.GetValue(listen),
                KillAtStep = Environment.GetEnvironmentVariable("STORAGE_DAEMON_KILL_AT") is { Length: > 0 } step ? step : null,
            };
            return DaemonHost.RunAsync(options).GetAwaiter().GetResult();
        });
        var stop = new Command("stop", "stop the running daemon cleanly (pools committed, arrays marked clean)");
        stop.Options.Add(DaemonOption);
        stop.SetAction(p => Send(p, new StopRequest(), json: false, _ => null));
        daemon.Subcommands.Add(stop);
        return daemon;
    }

    public static Command BuildCluster()
    {
        var json = CliOptions.Flag("--json", "print one JSON document and nothing else");
        var status = new Command("status", "metadata replicas (role, leader, lag), pools, in-doubt transactions, exports");
        status.Options.Add(DaemonOption);
        status.Options.Add(json);
        // Exit 1 when the metadata service has no leader: nothing can change until it has one.
        status.SetAction(p =>
        {
            ClusterView? cluster = null;
            int code = Send(p, new ClusterStatusRequest(), p.GetValue(json), r => JsonSerializer.Serialize(cluster = r.Cluster!, DaemonJson.Default.ClusterView), (r, o) => PrintCluster(cluster = r.Cluster!, o));
            return code == Cli.Ok && cluster?.Leader is null ? Cli.Failed : code;
        });
        return Cli.Group("cluster", "the cluster this node belongs to", status, BuildKey());
    }

    private static Command BuildKey()
    {
        var json = CliOptions.Flag("--json", "print one JSON document and nothing else");
        var file = new Argument<string>("FILE") { Description = "where to write the key (created with mode 0600; never overwritten)" };
        var create = new Command("create", "make a new cluster key: copy it to every node and start each daemon with --cluster-key FILE");
        create.Arguments.Add(file);
        create.Options.Add(json);
        create.SetAction(p =>
        {
            string path = p.GetValue(file)!, fingerprint;
            try
            {
                fingerprint = ClusterKey.Create(path);
            }
            catch (Exception e) when (e is DaemonRequestException or IOException or UnauthorizedAccessException)
            {
                throw new UsageException(e.Message);
            }
            if (p.GetValue(json))
                p.Out().WriteLine(JsonSerializer.Serialize(new Dictionary<string, string> { ["file"] = Path.GetFullPath(path), ["fingerprint"] = fingerprint }));
            else
                p.Out().WriteLine($"cluster key written to {path} (mode 0600), SHA-256 fingerprint {fingerprint}; copy it to every node and start each daemon with --cluster-key {path}");
            return Cli.Ok;
        });
        var shown = new Argument<string>("FILE") { Description = "a cluster key file" };
        var show = new Command("show", "print a cluster key's fingerprint (compare it across nodes)");
        show.Arguments.Add(shown);
        show.Options.Add(json);
        show.SetAction(p =>
        {
            string path = p.GetValue(shown)!;
            try
            {
                using var key = ClusterKey.Load(path);
                p.Out().WriteLine(p.GetValue(json) ? JsonSerializer.Serialize(new Dictionary<string, string> { ["file"] = Path.GetFullPath(path), ["fingerprint"] = key.Fingerprint }) : key.Fingerprint);
            }
            catch (DaemonRequestException e)
            {
                throw new UsageException(e.Message);
            }
            return Cli.Ok;
        });
        return Cli.Group("key", "the cluster's shared key (TLS between nodes)", create, show);
    }

    /// <summary>
    /// Sends <paramref name="request"/> to the daemon and prints the reply: its JSON (<paramref name="jsonOf"/>) with
    /// --json, else <paramref name="print"/> or its message; a refusal or failure goes to standard error with its code.
    /// </summary>
    public static int Send(ParseResult parse, DaemonRequest request, bool json, Func<DaemonReply, string?> jsonOf, Action<DaemonReply, TextWriter>? print = null)
    {
        var reply = Ask(parse.GetValue(DaemonOption), request);
        var output = parse.Out();
        if (reply.Code != DaemonReply.Ok)
        {
            parse.InvocationConfiguration.Error.WriteLine($"storage: {reply.Message}");
            return reply.Code;
        }
        if (json && jsonOf(reply) is { } document)
            output.WriteLine(document);
        else if (print is not null)
            print(reply, output);
        else
            output.WriteLine(reply.Message);
        return Cli.Ok;
    }

    /// <summary>Sends <paramref name="request"/> to the daemon the command names (or the one running) and returns the reply.</summary>
    public static DaemonReply Ask(ParseResult parse, DaemonRequest request) => Ask(parse.GetValue(DaemonOption), request);

    /// <summary>The record of the daemon the command names (or of the one running), if it runs.</summary>
    public static DaemonRecord? Target(ParseResult parse)
    {
        string control = ControlSocket(parse.GetValue(DaemonOption));
        return DaemonRecords.Running().FirstOrDefault(r => r.Control == control);
    }

    private static DaemonReply Ask(string? dir, DaemonRequest request)
    {
        string control = ControlSocket(dir);
        try
        {
            return DaemonClient.SendAsync(control, request).GetAwaiter().GetResult();
        }
        catch (IOException e)
        {
            throw new OperationFailedException(e.Message);
        }
    }

    /// <summary>The control socket of the daemon in <paramref name="dir"/>, or of the one daemon running here.</summary>
    private static string ControlSocket(string? dir)
    {
        if (dir is not null)
            return Path.Combine(dir, "control.sock");
        var running = DaemonRecords.Running();
        return running.Count switch
        {
            1 => running[0].Control,
            0 => throw new UsageException("no storage daemon is running here; start one with 'storage daemon --dir DIR' (or give the pool's disks with --disks/--device to work offline)."),
            _ => throw new UsageException($"{running.Count} storage daemons run here ({string.Join(", ", running.Select(r => $"node {r.Node} in {r.Dir}"))}); say which with --daemon DIR."),
        };
    }

    /// <summary>round-robin, random, weighted, least-loaded.</summary>
    public static PlacementPolicy ParsePolicy(string? text) => text switch
    {
        null or "round-robin" => PlacementPolicy.RoundRobin,
        "random" => PlacementPolicy.Random,
        "weighted" or "weighted-by-free-space" => PlacementPolicy.WeightedByFreeSpace,
        "least-loaded" => PlacementPolicy.LeastLoaded,
        _ => throw new UsageException($"--policy {text}: want round-robin, random, weighted (by free space) or least-loaded."),
    };

    /// <summary>round-robin, random, least-queue-depth.</summary>
    public static ReadPolicy ParseReads(string? text) => text switch
    {
        null or "least-queue-depth" => ReadPolicy.LeastQueueDepth,
        "round-robin" => ReadPolicy.RoundRobin,
        "random" => ReadPolicy.Random,
        _ => throw new UsageException($"--read-policy {text}: want least-queue-depth, round-robin or random."),
    };

    /// <summary>"a,b , c" → [a, b, c]; null stays null.</summary>
    public static IReadOnlyList<string>? List(string? text) => text?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    public static void PrintPools(IReadOnlyList<PoolView> pools, TextWriter output)
    {
        if (pools.Count == 0)
        {
            output.WriteLine("no pools; attach one with 'storage pool attach --disks A,B,… ' (after 'storage pool create').");
            return;
        }
        var table = Tables.Create("pool", "node", "layout", "state", "size", "free", "segments", "members");
        foreach (var p in pools)
            table.AddRow(Tables.Cell(p.Name), Tables.Cell(p.Node), Tables.Cell(p.Layout), Tables.Cell(p.State), Tables.Cell(PoolCommands.Bytes(p.SizeBytes)),
                Tables.Cell(PoolCommands.Bytes(p.FreeBytes)), Tables.Cell(p.Segments), Tables.Cell(string.Join(",", p.Members)));
        Tables.Write(output, table);
    }

    public static void PrintVolumes(IReadOnlyList<VolumeView> volumes, TextWriter output)
    {
        if (volumes.Count == 0)
        {
            output.WriteLine("no volumes; create one with 'storage volume create NAME --size 10G'.");
            return;
        }
        var table = Tables.Create("volume", "size", "segments", "copies", "policy", "reads", "group", "pools", "served by", "moving", "degraded");
        foreach (var v in volumes)
            table.AddRow(Tables.Cell(v.Name), Tables.Cell(PoolCommands.Bytes(v.SizeBytes)), Tables.Cell($"{v.Segments} × {PoolCommands.Bytes(v.SegmentBytes)}"),
                Tables.Cell(v.Copies), Tables.Cell(v.Policy), Tables.Cell(v.Copies > 1 ? v.Reads : "-"), Tables.Cell(v.Group ?? "-"), Tables.Cell(string.Join(",", v.Pools)),
                Tables.Cell(v.Node ?? "any node"), Tables.Cell(v.Moving ?? "-"), Tables.Cell(Degraded(v.Stale)));
        Tables.Write(output, table);
    }

    /// <summary>"p2: 3 stale, 1 resyncing", or "-".</summary>
    private static string Degraded(IReadOnlyList<StaleCopyView>? stale)
        => stale is not { Count: > 0 } ? "-" : string.Join("; ", stale.GroupBy(s => s.Pool, StringComparer.Ordinal)
            .Select(g => $"{g.Key}: {string.Join(", ", g.GroupBy(s => s.State, StringComparer.Ordinal).Select(s => $"{s.Count()} {s.Key}"))}"));

    public static void PrintSnapshots(IReadOnlyList<SnapshotView> snapshots, TextWriter output)
    {
        if (snapshots.Count == 0)
        {
            output.WriteLine("no snapshots; take one with 'storage snapshot create VOL@SNAP' (or SNAP --group G).");
            return;
        }
        var table = Tables.Create("snapshot", "size", "taken", "cut with");
        foreach (var s in snapshots)
            table.AddRow(Tables.Cell(s.FullName), Tables.Cell(PoolCommands.Bytes(s.SizeBytes)), Tables.Cell(s.Created.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture) + "Z"),
                Tables.Cell(string.Join(",", s.Group)));
        Tables.Write(output, table);
    }

    private static void PrintCluster(ClusterView c, TextWriter output)
    {
        output.WriteLine($"node '{c.Node}': metadata leader {(c.Leader is { } l ? $"replica {l}" : "NONE (election under way)")}; {c.Exports} NBD export(s) on {c.NbdSocket}{(c.NbdTcp is null ? "" : $" and {c.NbdTcp}")}");
        var replicas = Tables.Create("replica", "role", "leader", "commit", "applied", "lag", "lease");
        foreach (var r in c.Replicas)
            replicas.AddRow(Tables.Cell(r.Id), Tables.Cell(r.Role), Tables.Cell(r.LeaderId), Tables.Cell(r.Commit), Tables.Cell(r.Applied), Tables.Cell(r.Lag < 0 ? "-" : r.Lag), Tables.Cell(r.HasLease ? "yes" : "no"));
        Tables.Write(output, replicas);
        PrintPools(c.Pools, output);
        if (c.InDoubt.Count == 0)
        {
            output.WriteLine("no transactions in doubt");
            return;
        }
        var transactions = Tables.Create("transaction", "state", "participants");
        foreach (var t in c.InDoubt)
            transactions.AddRow(Tables.Cell(t.Id), Tables.Cell(t.State), Tables.Cell(string.Join(",", t.Participants)));
        Tables.Write(output, transactions);
    }
}
