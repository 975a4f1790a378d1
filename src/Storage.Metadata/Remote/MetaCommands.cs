using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using Storage.Consensus;

namespace Storage.Metadata;

/// <summary>
/// The <c>storage meta</c> commands, for the CLI to dispatch to: <c>serve</c> runs one replica over TCP,
/// <c>status</c> shows leader, ballot, commit index and lag per replica, <c>put</c>/<c>get</c> are a
/// minimal client, and <c>bench</c> measures committed commands per second and latency.
/// </summary>
public static class MetaCommands
{
    /// <summary>The usage text.</summary>
    public const string Usage = """
        usage: storage meta serve  --id N --dir PATH --peers 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT
                                   [--clients 1=HOST:PORT,...] [--bootstrap] [--tick-ms 10] [--election-ms 1000]
                                   [--no-batching] [--snapshot-every N]
               storage meta status --peers ... | --clients ...
               storage meta put KEY VALUE --peers ... | --clients ...
               storage meta get KEY --peers ... | --clients ...
               storage meta bench --peers ... | --clients ... [--ops 10000] [--inflight 64] [--value-bytes 100]
        Client endpoints default to each peer port + 100. --bootstrap founds a new group: use it on every
        replica's first start only (an empty directory without it is a replica that lost its disk).
        --tick-ms is the timer resolution; --election-ms the minimum election timeout (heartbeats every tenth
        of it): it must outlast a loaded leader's stalls, or leadership moves under load and throughput drops.
        Every replica of a group should use the same values.
        """;

    /// <summary>Runs a <c>storage meta</c> command (arguments after "meta") until done, or until Ctrl+C /
    /// SIGTERM for <c>serve</c>.</summary>
    /// <returns>0 on success, 1 on failure, 2 on a usage error.</returns>
    public static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter error)
    {
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
            return await RunAsync(args, output, error, stop.Token).ConfigureAwait(false);
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    /// <summary>Runs a <c>storage meta</c> command until done or <paramref name="cancellationToken"/> fires.</summary>
    /// <returns>0 on success, 1 on failure, 2 on a usage error.</returns>
    public static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(error);
        Options o;
        try
        {
            o = Options.Parse(args);
        }
        catch (FormatException e)
        {
            await error.WriteLineAsync($"storage meta: {e.Message}\n{Usage}").ConfigureAwait(false);
            return 2;
        }
        try
        {
            return o.Command switch
            {
                "serve" => await Serve(o, output, cancellationToken).ConfigureAwait(false),
                "status" => await Status(o, output, cancellationToken).ConfigureAwait(false),
                "put" => await Put(o, output, cancellationToken).ConfigureAwait(false),
                "get" => await Get(o, output, cancellationToken).ConfigureAwait(false),
                "bench" => await Bench(o, output, cancellationToken).ConfigureAwait(false),
                _ => throw new FormatException($"unknown command '{o.Command}'"),
            };
        }
        catch (FormatException e)
        {
            await error.WriteLineAsync($"storage meta: {e.Message}\n{Usage}").ConfigureAwait(false);
            return 2;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Ctrl+C or SIGTERM while a client command waits: a failure, not a crash.
            await error.WriteLineAsync($"storage meta {o.Command}: interrupted").ConfigureAwait(false);
            return 1;
        }
        catch (Exception e) when (e is MetadataUnavailableException or IOException or System.Net.Sockets.SocketException or InvalidDataException)
        {
            await error.WriteLineAsync($"storage meta {o.Command}: {e.Message}").ConfigureAwait(false);
            return 1;
        }
    }

    private static async Task<int> Serve(Options o, TextWriter output, CancellationToken cancellationToken)
    {
        int id = o.Id ?? throw new FormatException("serve needs --id");
        string dir = o.Dir ?? throw new FormatException("serve needs --dir");
        if (!o.Peers.TryGetValue(id, out var self))
            throw new FormatException($"--peers has no endpoint for replica {id}");
        var config = new Configuration(o.Peers.Keys.Select(k => new Member(k, 0)));
        using var replica = new MetadataReplica(new MetadataReplicaOptions
        {
            Id = id,
            Directory = dir,
            InitialConfig = config,
            Bootstrap = o.Bootstrap,
            TickInterval = TimeSpan.FromMilliseconds(o.TickMs),
            ElectionTimeout = TimeSpan.FromMilliseconds(o.ElectionMs),
            Batching = o.Batching,
            SnapshotEvery = o.SnapshotEvery,
        }, new TcpTransport(id, self, o.Peers));
        replica.Start();
        using var server = new MetadataServer(replica, o.Clients[id]);
        server.Start();
        var s = replica.Status;
        await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
            $"replica {id} (incarnation {s.Consensus.Self.Incarnation}, {s.Recovery}) consensus on {self}, clients on {server.LocalEndpoint}, log in {dir}")).ConfigureAwait(false);
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
        if (o.Positional.Count != 2)
            throw new FormatException("put needs KEY VALUE");
        using var client = new MetadataClient(o.Clients);
        var r = await client.ExecuteAsync(new PutCommand(o.Positional[0], Encoding.UTF8.GetBytes(o.Positional[1])), cancellationToken).ConfigureAwait(false);
        await output.WriteLineAsync(r.IsOk ? $"ok version {r.Version}" : $"{r.Code}: {r.Message}").ConfigureAwait(false);
        return r.IsOk ? 0 : 1;
    }

    private static async Task<int> Get(Options o, TextWriter output, CancellationToken cancellationToken)
    {
        if (o.Positional.Count != 1)
            throw new FormatException("get needs KEY");
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

        public static Options Parse(string[] args)
        {
            if (args.Length == 0)
                throw new FormatException("missing command");
            var o = new Options { Command = args[0] };
            for (int i = 1; i < args.Length; i++)
            {
                string Value() => i + 1 < args.Length ? args[++i] : throw new FormatException($"{args[i]} needs a value");
                int Int() => int.TryParse(Value(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v > 0
                    ? v : throw new FormatException($"{args[i]} needs a positive integer");
                switch (args[i])
                {
                    case "--id": o.Id = Int(); break;
                    case "--dir": o.Dir = Value(); break;
                    case "--peers": o.Peers = Endpoints(Value()); break;
                    case "--clients": o.Clients = Endpoints(Value()); break;
                    case "--bootstrap": o.Bootstrap = true; break;
                    case "--no-batching": o.Batching = false; break;
                    case "--tick-ms": o.TickMs = Int(); break;
                    case "--election-ms": o.ElectionMs = Int(); break;
                    case "--snapshot-every": o.SnapshotEvery = Int(); break;
                    case "--ops": o.Ops = Int(); break;
                    case "--inflight": o.Inflight = Int(); break;
                    case "--value-bytes": o.ValueBytes = Int(); break;
                    default:
                        if (args[i].StartsWith("--", StringComparison.Ordinal))
                            throw new FormatException($"unknown option {args[i]}");
                        o.Positional.Add(args[i]);
                        break;
                }
            }
            if (o.ElectionMs < 2 * o.TickMs)
                throw new FormatException("--election-ms must be at least two ticks (--tick-ms)");
            if (o.Clients.Count == 0)
                o.Clients = o.Peers.ToDictionary(p => p.Key, p => new IPEndPoint(p.Value.Address, p.Value.Port + 100));
            if (o.Clients.Count == 0)
                throw new FormatException("give --peers or --clients");
            return o;
        }

        private static Dictionary<int, IPEndPoint> Endpoints(string text)
        {
            var result = new Dictionary<int, IPEndPoint>();
            foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                string[] kv = part.Split('=', 2);
                if (kv.Length != 2 || !int.TryParse(kv[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out int id) || id <= 0
                    || !IPEndPoint.TryParse(kv[1], out var endpoint))
                    throw new FormatException($"bad endpoint '{part}' (want ID=HOST:PORT)");
                result[id] = endpoint;
            }
            return result;
        }
    }
}
