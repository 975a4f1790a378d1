using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Storage.Metadata;

namespace Storage.Metadata.Tests;

/// <summary>
/// <see cref="MetadataClient"/> under many concurrent requests sharing one connection while connections are
/// cut (a proxy between client and servers resets them) and while the leader is stopped: every request
/// completes, none throws <see cref="ObjectDisposedException"/>, nothing hangs.
/// </summary>
public sealed class ClientFailoverTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "meta-client-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root))
            Directory.Delete(_root, recursive: true);
    }

    private string[] Dirs(int n) => [.. Enumerable.Range(1, n).Select(i => Path.Combine(_root, $"replica{i}"))];

    private static async Task RunWorkers(MetadataClient client, int workers, int ops, Func<Task> chaos)
    {
        int next = -1;
        var failures = new ConcurrentQueue<string>();
        async Task Worker()
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < ops)
            {
                var r = await client.ExecuteAsync(new PutCommand($"k{i % 500}", Encoding.UTF8.GetBytes($"v{i}")), TestContext.Current.CancellationToken);
                if (!r.IsOk)
                    failures.Enqueue($"{r.Code} {r.Message}");
            }
        }
        var load = Task.WhenAll(Enumerable.Range(0, workers).Select(_ => Task.Run(Worker, TestContext.Current.CancellationToken)));
        await chaos();
        // A hang (a worker stuck on a dead connection) must fail the test, not stall the run.
        await load.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken);
        Assert.Empty(failures);
    }

    [Fact]
    public async Task Concurrent_requests_survive_connections_being_reset_under_them()
    {
        using var cluster = MetadataCluster.Start(Dirs(3));
        await cluster.WaitForLeaderAsync(TimeSpan.FromSeconds(10));
        using var servers = new Servers(cluster);
        // Short attempts: a request caught on a dead connection must move on quickly.
        using var client = new MetadataClient(servers.ProxyEndpoints) { AttemptTimeout = TimeSpan.FromMilliseconds(500), Timeout = TimeSpan.FromSeconds(15) };
        // No warm-up: 256 requests open the first connection at once.
        await RunWorkers(client, workers: 256, ops: 6000, async () =>
        {
            for (int i = 0; i < 15; i++)
            {
                await Task.Delay(40, TestContext.Current.CancellationToken);
                servers.ResetAll();
            }
        });
        Assert.True(servers.Resets > 0, "the proxies cut live connections");
    }

    [Fact]
    public async Task Concurrent_requests_fail_over_when_the_leader_stops()
    {
        using var cluster = MetadataCluster.Start(Dirs(3));
        var leader = await cluster.WaitForLeaderAsync(TimeSpan.FromSeconds(10));
        using var servers = new Servers(cluster);
        using var client = new MetadataClient(servers.ProxyEndpoints) { AttemptTimeout = TimeSpan.FromMilliseconds(500), Timeout = TimeSpan.FromSeconds(15) };
        await RunWorkers(client, workers: 64, ops: 3000, async () =>
        {
            await Task.Delay(100, TestContext.Current.CancellationToken);
            servers.Stop(leader.Id);
            cluster.StopReplica(leader.Id);
        });
    }

    /// <summary>A <see cref="MetadataServer"/> per replica, each behind a <see cref="ResettingProxy"/>.</summary>
    private sealed class Servers : IDisposable
    {
        private readonly Dictionary<int, MetadataServer> _servers = [];
        private readonly Dictionary<int, ResettingProxy> _proxies = [];

        public Servers(MetadataCluster cluster)
        {
            foreach (var r in cluster.Replicas)
            {
                var server = new MetadataServer(r, new IPEndPoint(IPAddress.Loopback, 0));
                server.Start();
                _servers[r.Status.Consensus.Self.Id] = server;
                _proxies[r.Status.Consensus.Self.Id] = new ResettingProxy(server.LocalEndpoint);
            }
            ProxyEndpoints = _proxies.ToDictionary(p => p.Key, p => p.Value.Endpoint);
        }

        public Dictionary<int, IPEndPoint> ProxyEndpoints { get; }

        public int Resets => _proxies.Values.Sum(p => p.Resets);

        public void ResetAll()
        {
            foreach (var p in _proxies.Values)
                p.ResetAll();
        }

        /// <summary>Stops replica <paramref name="id"/>'s server and cuts its connections (as its process dying would).</summary>
        public void Stop(int id)
        {
            _proxies.Remove(id, out var proxy);
            _servers.Remove(id, out var server);
            proxy!.Dispose();
            server!.Dispose();
        }

        public void Dispose()
        {
            foreach (var p in _proxies.Values)
                p.Dispose();
            foreach (var s in _servers.Values)
                s.Dispose();
        }
    }

    /// <summary>Forwards TCP connections to a server; <see cref="ResetAll"/> aborts every live one (RST).</summary>
    private sealed class ResettingProxy : IDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly IPEndPoint _target;
        private readonly ConcurrentDictionary<Socket, byte> _live = new();
        private int _resets;

        public ResettingProxy(IPEndPoint target)
        {
            _target = target;
            _listener.Start();
            _ = Task.Run(Accept);
        }

        public IPEndPoint Endpoint => (IPEndPoint)_listener.LocalEndpoint;

        public int Resets => Volatile.Read(ref _resets);

        private async Task Accept()
        {
            while (true)
            {
                Socket inbound;
                try
                {
                    inbound = await _listener.AcceptSocketAsync().ConfigureAwait(false);
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException or InvalidOperationException)
                {
                    return;
                }
                var outbound = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                inbound.NoDelay = true;
                try
                {
                    await outbound.ConnectAsync(_target).ConfigureAwait(false);
                }
                catch (SocketException)
                {
                    Abort(inbound);
                    outbound.Dispose();
                    continue;
                }
                _live[inbound] = 0;
                _live[outbound] = 0;
                _ = Pump(inbound, outbound);
                _ = Pump(outbound, inbound);
            }
        }

        private async Task Pump(Socket from, Socket to)
        {
            var buffer = new byte[64 * 1024];
            try
            {
                int n;
                while ((n = await from.ReceiveAsync(buffer, SocketFlags.None).ConfigureAwait(false)) > 0)
                    await to.SendAsync(buffer.AsMemory(0, n), SocketFlags.None).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
            }
            Abort(from);
            Abort(to);
        }

        private void Abort(Socket s)
        {
            _live.TryRemove(s, out _);
            try
            {
                s.LingerState = new LingerOption(true, 0); // close with RST, as a crashed peer's kernel would
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
            }
            s.Dispose();
        }

        public void ResetAll()
        {
            foreach (var s in _live.Keys)
            {
                Interlocked.Increment(ref _resets);
                Abort(s);
            }
        }

        public void Dispose()
        {
            _listener.Stop();
            ResetAll();
        }
    }
}
