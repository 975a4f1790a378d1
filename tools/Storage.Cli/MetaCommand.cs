using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using Storage.CommandLine;
using Storage.Consensus;
using Storage.Metadata;

namespace Storage.Cli;

/// <summary>
/// <c>storage meta</c>: <c>serve</c> runs one replica of the Multi-Paxos metadata service over TCP, <c>status</c>
/// shows leader, ballot, commit index and lag per replica, <c>put</c>/<c>get</c> are a minimal client, and
/// <c>bench</c> measures committed commands per second and latency.
/// </summary>
internal static class MetaCommand
{
    private const string Notes = """

        Client endpoints default to each peer port + 100. --bootstrap founds a new group: use it on every
        replica's first start only (an empty directory without it is a replica that lost its disk).
        --tick-ms is the timer resolution; --election-ms the minimum election timeout (heartbeats every tenth
        of it): it must outlast a loaded leader's stalls, or leadership moves under load and throughput drops.
        Every replica of a group should use the same values.
        """;

    /// <summary>Values of one invocation.</summary>
    private sealed class Options
    {
        public string Command = "";
        public int? Id;
        public string? Dir;
        public Dictionary<int, IPEndPoint> Peers = [];
        public Dictionary<int, IPEndPoint> Clients = [];
        public bool Bootstrap;
        public bool Batching = true;
        public int TickMs = 10;
        public int ElectionMs = 1000;
        public int SnapshotEvery = 10_000;
        public int Ops = 10_000;
        public int Inflight = 64;
        public int ValueBytes = 100;
        public List<string> Positional = [];
    }

    public static Command Build()
    {
        var peers = Endpoints("--peers", "the replicas' consensus endpoints: 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT");
        var clients = Endpoints("--clients", "the replicas' client endpoints (default: each peer port + 100)");
        Command Verb(string name, string description, Func<Options, TextWriter, CancellationToken, Task<int>> run, params Option[] extra)
        {
            var command = new Command(name, description).WithNotes(Notes);
            command.Options.Add(peers);
            command.Options.Add(clients);
            foreach (var option in extra)
                command.Options.Add(option);
            command.SetAction(p =>
            {
                var o = new Options { Command = name, Peers = p.GetValue(peers)!, Clients = p.GetValue(clients)! };
                foreach (var option in extra)
                    Apply(o, p, option);
                foreach (var argument in command.Arguments)
                    o.Positional.Add(p.GetValue((Argument<string>)argument)!);
                return RunAsync(o, run, p.Out(), p.InvocationConfiguration.Error).GetAwaiter().GetResult();
            });
            return command;
        }

        var id = CliOptions.Number("--id", "this replica's id (a key of --peers)", 1, int.MaxValue);
        var dir = CliOptions.Text("--dir", "this replica's log directory", "PATH");
        var bootstrap = CliOptions.Flag("--bootstrap", "found a new group (first start of every replica only)");
        var noBatching = CliOptions.Flag("--no-batching", "propose one command per slot");
        var tick = CliOptions.Number("--tick-ms", "timer resolution in ms (default 10)", 1, 60_000);
        var election = CliOptions.Number("--election-ms", "minimum election timeout in ms (default 1000)", 1, 600_000);
        var snapshotEvery = CliOptions.Number("--snapshot-every", "entries between snapshots (default 10000)", 1, int.MaxValue);
        var ops = CliOptions.Number("--ops", "puts to make (default 10000)", 1, int.MaxValue);
        var inflight = CliOptions.Number("--inflight", "puts in flight (default 64)", 1, 1 << 16);
        var valueBytes = CliOptions.Number("--value-bytes", "bytes per value (default 100)", 1, 1 << 24);
        var key = new Argument<string>("KEY");
        var value = new Argument<string>("VALUE");

        var put = Verb("put", "store VALUE under KEY", Put);
        put.Arguments.Add(key);
        put.Arguments.Add(value);
        var get = Verb("get", "read KEY (linearizable)", Get);
        get.Arguments.Add(new Argument<string>("KEY"));
        return Cli.Group("meta", "the replicated metadata service (Multi-Paxos)",
            Verb("serve", "run one replica until Ctrl-C or SIGTERM", Serve, id, dir, bootstrap, noBatching, tick, election, snapshotEvery),
            Verb("status", "leader, ballot, commit index and lag per replica", Status),
            put,
            get,
            Verb("bench", "committed puts per second and latency", Bench, ops, inflight, valueBytes));
    }

    private static void Apply(Options o, ParseResult p, Option option)
    {
        switch (option.Name)
        {
            case "--id": o.Id = p.GetValue((Option<int?>)option); break;
            case "--dir": o.Dir = p.GetValue((Option<string?>)option); break;
            case "--bootstrap": o.Bootstrap = p.GetValue((Option<bool>)option); break;
            case "--no-batching": o.Batching = !p.GetValue((Option<bool>)option); break;
            case "--tick-ms": o.TickMs = p.GetValue((Option<int?>)option) ?? o.TickMs; break;
            case "--election-ms": o.ElectionMs = p.GetValue((Option<int?>)option) ?? o.ElectionMs; break;
            case "--snapshot-every": o.SnapshotEvery = p.GetValue((Option<int?>)option) ?? o.SnapshotEvery; break;
            case "--ops": o.Ops = p.GetValue((Option<int?>)option) ?? o.Ops; break;
            case "--inflight": o.Inflight = p.GetValue((Option<int?>)option) ?? o.Inflight; break;
            case "--value-bytes": o.ValueBytes = p.GetValue((Option<int?>)option) ?? o.ValueBytes; break;
            default: throw new ArgumentOutOfRangeException(nameof(option), option.Name, "not a meta option");
        }
    }

    /// <summary><c>1=HOST:PORT,2=HOST:PORT</c>; empty when absent.</summary>
    private static Option<Dictionary<int, IPEndPoint>> Endpoints(string name, string description) => new(name)
    {
        Description = description,
        HelpName = "1=HOST:PORT,…",
        DefaultValueFactory = _ => [],
        CustomParser = result =>
        {
            var endpoints = new Dictionary<int, IPEndPoint>();
            foreach (string part in (result.Tokens.Count > 0 ? result.Tokens[0].Value : "").Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                string[] kv = part.Split('=', 2);
                if (kv.Length != 2 || !int.TryParse(kv[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out int id) || id <= 0
                    || !IPEndPoint.TryParse(kv[1], out var endpoint))
                {
                    result.AddError($"{name}: bad endpoint '{part}' (want ID=HOST:PORT).");
                    return [];
                }
                endpoints[id] = endpoint;
            }
            return endpoints;
        },
    };

    /// <summary>Checks what one option cannot check alone, then runs the verb until done, Ctrl+C or SIGTERM.</summary>
    private static async Task<int> RunAsync(Options o, Func<Options, TextWriter, CancellationToken, Task<int>> run, TextWriter output, TextWriter error)
    {
        if (o.ElectionMs < 2 * o.TickMs)
            throw new UsageException("--election-ms must be at least two ticks (--tick-ms).");
        if (o.Clients.Count == 0)
            o.Clients = o.Peers.ToDictionary(p => p.Key, p => new IPEndPoint(p.Value.Address, p.Value.Port + 100));
        if (o.Clients.Count == 0)
            throw new UsageException($"give --peers or --clients. Run 'storage meta {o.Command} --help' for details.");
        using var stop = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c =>
        {
            c.Cancel = true;
            stop.Cancel();
        });
        try
        {
            return await run(o, output, stop.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Ctrl+C or SIGTERM while a client command waits: a failure, not a crash.
            await error.WriteLineAsync($"storage meta {o.Command}: interrupted").ConfigureAwait(false);
            return Cli.Failed;
        }
        catch (Exception e) when (e is MetadataUnavailableException or IOException or System.Net.Sockets.SocketException or InvalidDataException)
        {
            await error.WriteLineAsync($"storage meta {o.Command}: {e.Message}").ConfigureAwait(false);
            return Cli.Failed;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    private static async Task<int> Serve(Options o, TextWriter output, CancellationToken cancellationToken)
    {
        int id = o.Id ?? throw new UsageException("serve needs --id N (this replica's id).");
        string dir = o.Dir ?? throw new UsageException("serve needs --dir PATH (this replica's log directory).");
        if (!o.Peers.TryGetValue(id, out var self))
            throw new UsageException($"--peers has no endpoint for replica {id}.");
        using var host = Storage.Daemon.ReplicaHost.Start(new MetadataReplicaOptions
        {
            Id = id,
            Directory = dir,
            InitialConfig = Storage.Daemon.ReplicaHost.ConfigurationOf(o.Peers),
            Bootstrap = o.Bootstrap,
            TickInterval = TimeSpan.FromMilliseconds(o.TickMs),
            ElectionTimeout = TimeSpan.FromMilliseconds(o.ElectionMs),
            Batching = o.Batching,
            SnapshotEvery = o.SnapshotEvery,
        }, o.Peers, o.Clients[id]);
        var replica = host.Replica;
        var s = replica.Status;
        await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
            $"replica {id} (incarnation {s.Consensus.Self.Incarnation}, {s.Recovery}) consensus on {self}, clients on {host.ClientEndpoint}, log in {dir}")).ConfigureAwait(false);
        await output.FlushAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        await output.WriteLineAsync($"replica {id} stopping").ConfigureAwait(false);
        return 0;
    }

    private static async Task<int> Status(Options o, TextWriter output, CancellationToken cancellationToken)
    {
        using var client = new MetadataClient(o.Clients) { AttemptTimeout = TimeSpan.FromSeconds(1) };
        var statuses = new SortedDictionary<int, RemoteStatus?>();
        foreach (int id in o.Clients.Keys)
            statuses[id] = await client.StatusAsync(id, cancellationToken).ConfigureAwait(false);
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"{"replica",-8}{"role",-10}{"leader",-7}{"ballot",-9}{"commit",-9}{"applied",-9}{"snapshot",-9}{"lease",-6}{"revision",-9}config");
        foreach (var (id, s) in statuses)
            sb.AppendLine(s is null
                ? $"{id,-8}(no answer)"
                : string.Create(CultureInfo.InvariantCulture,
                    $"{id,-8}{s.Role,-10}{s.LeaderId,-7}{s.Promised,-9}{s.Commit,-9}{s.Applied,-9}{s.SnapshotIndex,-9}{(s.HasLease ? "yes" : "no"),-6}{s.Revision,-9}{s.Config}"));
        var leader = statuses.Values.FirstOrDefault(s => s?.Role == Role.Leader);
        if (leader is not null)
        {
            sb.Append(CultureInfo.InvariantCulture, $"lag behind leader {leader.Self.Id} (commit {leader.Commit}):");
            foreach (var p in leader.Peers)
                sb.Append(CultureInfo.InvariantCulture, $" {p.Id}: {leader.Commit - p.Commit} slots{(p.TicksSinceHeard == long.MaxValue ? " (never heard)" : $", heard {p.TicksSinceHeard} ticks ago")};");
            sb.AppendLine();
        }
        else
            sb.AppendLine("no leader");
        await output.WriteAsync(sb.ToString()).ConfigureAwait(false);
        return leader is null ? 1 : 0;
    }

    private static async Task<int> Put(Options o, TextWriter output, CancellationToken cancellationToken)
    {
        using var client = new MetadataClient(o.Clients);
        var r = await client.ExecuteAsync(new PutCommand(o.Positional[0], Encoding.UTF8.GetBytes(o.Positional[1])), cancellationToken).ConfigureAwait(false);
        await output.WriteLineAsync(r.IsOk ? $"ok version {r.Version}" : $"{r.Code}: {r.Message}").ConfigureAwait(false);
        return r.IsOk ? 0 : 1;
    }

    private static async Task<int> Get(Options o, TextWriter output, CancellationToken cancellationToken)
    {
        using var client = new MetadataClient(o.Clients);
        var r = await client.ReadAsync(o.Positional[0], cancellationToken).ConfigureAwait(false);
        await output.WriteLineAsync(r.IsOk ? $"{Encoding.UTF8.GetString(r.Value.Span)} (version {r.Version})" : $"{r.Code}: {r.Message}").ConfigureAwait(false);
        return r.IsOk ? 0 : 1;
    }

    private static async Task<int> Bench(Options o, TextWriter output, CancellationToken cancellationToken)
    {
        using var client = new MetadataClient(o.Clients);
        var value = new byte[o.ValueBytes];
        Random.Shared.NextBytes(value);
        // Warm up: find the leader and open the connection.
        await client.ExecuteAsync(new PutCommand("bench/warmup", value), cancellationToken).ConfigureAwait(false);
        var latencies = new double[o.Ops];
        int next = -1;
        var cpu = Process.GetCurrentProcess().TotalProcessorTime;
        var clock = Stopwatch.StartNew();
        async Task Worker()
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < o.Ops)
            {
                long start = Stopwatch.GetTimestamp();
                var r = await client.ExecuteAsync(new PutCommand($"bench/{i % 100_000:D10}", value), cancellationToken).ConfigureAwait(false);
                if (!r.IsOk)
                    throw new IOException($"put failed: {r.Code} {r.Message}");
                latencies[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            }
        }
        await Task.WhenAll(Enumerable.Range(0, o.Inflight).Select(_ => Task.Run(Worker, cancellationToken))).ConfigureAwait(false);
        var elapsed = clock.Elapsed;
        var clientCpu = Process.GetCurrentProcess().TotalProcessorTime - cpu;
        Array.Sort(latencies);
        await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
            $"{o.Ops} puts ({o.ValueBytes} B values, 16 B keys), {o.Inflight} in flight: {o.Ops / elapsed.TotalSeconds:F0} ops/s, "
            + $"p50 {latencies[o.Ops / 2]:F2} ms, p99 {latencies[(int)(o.Ops * 0.99)]:F2} ms, client CPU {clientCpu.TotalMicroseconds / o.Ops:F0} us/op")).ConfigureAwait(false);
        return 0;
    }
}
