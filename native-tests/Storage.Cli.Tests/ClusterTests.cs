using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Text.Json;
using Storage.Daemon;
using Storage.Metadata;
using Storage.Nbd;
using Storage.Volumes;

namespace Storage.Cli.Tests;

/// <summary>
/// Three daemons on loopback, each with its own directory, ports and pool, one metadata replica each: a volume striped
/// across the three pools written by fio with verification through one node's NBD export, while the coordinator of
/// another transaction is killed (-9) right after its decision and the metadata leader is killed too. After the
/// restarts: fio's verification passes, the transaction is all there, nothing is in doubt, and every pool holds
/// exactly the segments the catalogue gives it.
/// </summary>
public sealed class ClusterTests : RealTools
{
    private static readonly string[] Nodes = ["n1", "n2", "n3"];
    private readonly Dictionary<string, Process> _daemons = new(StringComparer.Ordinal);
    private string _cluster = "";
    private string? _key;   // the cluster key the daemons are started with, if any
    private string? _failoverAfter;   // --failover-after for the daemons, if not the default

    private string NodeDir(string node) => At("node-" + node);

    private string Uri(string node, string export) => $"nbd+unix:///{export}?socket={Path.Combine(NodeDir(node), "nbd.sock")}";

    [Fact]
    public void A_volume_across_three_daemons_keeps_every_acknowledged_write_through_kill_9_of_coordinator_and_leader()
    {
        Require("cluster test", root: false, "fio", "qemu-io");
        CreateClusterPools("160M");
        try
        {
            Start("n1");
            Start("n2", new Dictionary<string, string> { ["STORAGE_DAEMON_KILL_AT"] = "after-decide" });
            Start("n3");
            for (int i = 1; i <= 3; i++)
                Assert.Contains($"pool 'p{i}' is online on node 'n{i}'", Storage("pool", "attach", "--device", At($"p{i}.img"), "--daemon", NodeDir($"n{i}")), StringComparison.Ordinal);
            Storage("volume", "create", "data", "--size", "48M", "--segment-size", "8M", "--daemon", NodeDir("n1"));
            using (var volumes = Json("n2", "volume", "list", "--json"))
            {
                var data = volumes.RootElement.EnumerateArray().Single();
                Assert.Equal(["p1", "p2", "p3"], data.GetProperty("pools").EnumerateArray().Select(p => p.GetString()));
                Assert.Equal("n1", data.GetProperty("node").GetString());
            }

            // fio writes every block once (crc32c headers), paced so that it runs through the kills.
            using var fio = StartFio("--do_verify=0", "--rate_iops=1500", "--end_fsync=1");
            Thread.Sleep(1000);
            var cut = StorageRaw("volume", "create", "extra", "--size", "24M", "--segment-size", "8M", "--daemon", NodeDir("n2"));
            Assert.Equal(1, cut.Code);
            Assert.True(_daemons["n2"].WaitForExit(TimeSpan.FromSeconds(30)), "n2 did not die after its decision");
            Start("n2");   // fio's writes to p2 wait for it (the NBD client reconnects)

            int leader = Leader("n1");
            if (leader != 1)
                KillAndRestart($"n{leader}");
            Assert.True(fio.WaitForExit(TimeSpan.FromMinutes(3)), "fio hung");
            Assert.True(fio.ExitCode == 0, $"fio failed: {File.ReadAllText(At("fio.log"))}");
            if (leader == 1)
                KillAndRestart("n1");   // the node serving the volume: what fio was told is durable must be there

            using (var verify = StartFio("--verify_only"))
            {
                Assert.True(verify.WaitForExit(TimeSpan.FromMinutes(3)), "fio verify hung");
                Assert.True(verify.ExitCode == 0, $"fio verification failed: {File.ReadAllText(At("fio.log"))}");
            }

            // All or nothing: the decided transaction is complete on every pool, and nothing stays in doubt.
            WaitFor(() => { using var s = Json("n3", "cluster", "status", "--json"); return s.RootElement.GetProperty("inDoubt").GetArrayLength() == 0; }, "transactions to be resolved");
            using (var volumes = Json("n3", "volume", "list", "--json"))
                Assert.Equal(["data", "extra"], volumes.RootElement.EnumerateArray().Select(v => v.GetProperty("name").GetString()).Order());
            Run("qemu-io", "-f", "raw", "-c", "write -P 0x5a 4M 16M", "-c", "read -P 0x5a 4M 16M", Uri("n2", "extra"));
            Dictionary<string, int> segments;
            using (var status = Json("n1", "cluster", "status", "--json"))
            {
                Assert.Equal(3, status.RootElement.GetProperty("replicas").EnumerateArray().Count(r => r.GetProperty("role").GetString() is "leader" or "follower"));
                segments = status.RootElement.GetProperty("pools").EnumerateArray().ToDictionary(p => p.GetProperty("name").GetString()!, p => p.GetProperty("segments").GetInt32());
            }
            Assert.Equal(6 + 3, segments.Values.Sum());
            foreach (string node in Nodes)
                Storage("daemon", "stop", "--daemon", NodeDir(node));
            foreach (var daemon in _daemons.Values)
                Assert.True(daemon.WaitForExit(TimeSpan.FromMinutes(1)), "a daemon did not stop");

            // Each pool holds exactly its segments: nothing staged, nothing leaked.
            for (int i = 1; i <= 3; i++)
            {
                using var pool = JsonDocument.Parse(Storage("pool", "status", "--device", At($"p{i}.img"), "--json"));
                Assert.Equal(segments[$"p{i}"], pool.RootElement.GetProperty("volumes").GetInt32());
            }
        }
        finally
        {
            StopAll();
        }
    }

    /// <summary>
    /// A volume grown across nodes takes writes at its new end (each node offers its grown segments again at their new
    /// size); a pool that is offline on a node that runs is unreachable, not a refusal: new volumes go to the other
    /// pools, and the other nodes restart and resolve transactions as usual.
    /// </summary>
    [Fact]
    public void A_volume_grows_across_nodes_and_a_pool_offline_on_a_live_node_blocks_nothing()
    {
        Require("cluster test", root: false, "qemu-io");
        CreateClusterPools("96M");
        try
        {
            StartWithPools();
            Storage("volume", "create", "grow", "--size", "20M", "--segment-size", "8M", "--daemon", NodeDir("n1"));   // its last segment (on p3) is 4 MiB
            Run("qemu-io", "-f", "raw", "-c", "write -P 0x11 0 20M", Uri("n1", "grow"));
            Storage("volume", "resize", "grow", "--size", "44M", "--daemon", NodeDir("n3"));   // forwarded to n1, which serves it
            WaitFor(() => RunRaw("qemu-io", "-f", "raw", "-c", "write -P 0x22 40M 4M", Uri("n1", "grow")).Code == 0, "the grown volume to be served again");
            Run("qemu-io", "-f", "raw", "-c", "write -P 0x33 20M 4M", Uri("n1", "grow"));   // the grown part of p3's segment
            Run("qemu-io", "-f", "raw", "-c", "read -P 0x11 0 20M", "-c", "read -P 0x33 20M 4M", "-c", "read -P 0 24M 16M", "-c", "read -P 0x22 40M 4M", Uri("n1", "grow"));

            // n3 comes back without p3's disk: p3 is offline there, n3 runs.
            Storage("daemon", "stop", "--daemon", NodeDir("n3"));
            Assert.True(_daemons["n3"].WaitForExit(TimeSpan.FromMinutes(1)));
            File.Move(At("p3.img"), At("p3.away"));
            Start("n3");
            var created = Storage("volume", "create", "more", "--size", "16M", "--segment-size", "8M", "--daemon", NodeDir("n2"));
            Assert.Contains("over p1, p2", created, StringComparison.Ordinal);
            KillAndRestart("n1");   // its recovery asks every pool, p3 included, what it holds prepared
            using (var status = Json("n1", "cluster", "status", "--json"))
            {
                Assert.Equal(0, status.RootElement.GetProperty("inDoubt").GetArrayLength());
                var p3 = status.RootElement.GetProperty("pools").EnumerateArray().Single(p => p.GetProperty("name").GetString() == "p3");
                Assert.StartsWith("offline", p3.GetProperty("state").GetString(), StringComparison.Ordinal);
            }
            foreach (string node in Nodes)
                Storage("daemon", "stop", "--daemon", NodeDir(node));
        }
        finally
        {
            StopAll();
        }
    }

    /// <summary>
    /// With a cluster key every port between nodes is TLS with mutual authentication: the cluster works as without it
    /// (a volume striped over three nodes takes writes and reads, a forwarded resize), and a process that lacks the key —
    /// plain TCP, or TLS with a key of its own — gets no answer from any of the four ports: it cannot read or propose
    /// through the metadata port, send node requests, be heard on the consensus port, or open a segment. The same probes
    /// with the cluster's key are answered (so the refusals are the key's doing).
    /// </summary>
    [Fact]
    public async Task With_a_cluster_key_nodes_talk_tls_and_a_process_without_the_key_reaches_no_port()
    {
        Require("cluster test", root: false, "qemu-io");
        CreateClusterPools("64M");
        _key = At("cluster.key");
        Storage("cluster", "key", "create", _key);
        Storage("cluster", "key", "create", At("stranger.key"));
        try
        {
            StartWithPools();
            Assert.Contains("over p1, p2, p3", Storage("volume", "create", "sealed", "--size", "24M", "--segment-size", "8M", "--daemon", NodeDir("n2")), StringComparison.Ordinal);
            WaitFor(() => RunRaw("qemu-io", "-f", "raw", "-c", "write -P 0x7e 0 24M", Uri("n2", "sealed")).Code == 0, "the volume to be served");
            Run("qemu-io", "-f", "raw", "-c", "read -P 0x7e 0 24M", Uri("n2", "sealed"));
            Storage("volume", "resize", "sealed", "--size", "32M", "--daemon", NodeDir("n1"));   // forwarded to n2 over the peer port

            var n3 = ClusterNodes().Single(n => n.Name == "n3");
            using var member = Outsider.Certificate(_key);
            using var stranger = Outsider.Certificate(At("stranger.key"));
            string pools = """{"op":"pools","from":"n1"}""";
            var wait = TimeSpan.FromSeconds(5);
            Assert.NotNull(Outsider.Ask(n3.Peer, member, member, pools, wait));
            Assert.Null(Outsider.Ask(n3.Peer, stranger, member, pools, wait));
            Assert.Null(Outsider.Ask(n3.Peer, null, member, pools, wait));
            Assert.True(Outsider.StaysOpen(n3.Consensus, member, member, wait));
            Assert.False(Outsider.StaysOpen(n3.Consensus, stranger, member, wait));
            Assert.False(Outsider.StaysOpen(n3.Metadata, stranger, member, wait));

            var metadata = ClusterNodes().ToDictionary(n => n.Id, n => n.Metadata);
            foreach (var tls in new[] { null, Outsider.Tls(stranger, member) })
            {
                using var outside = new MetadataClient(metadata) { Tls = tls, Timeout = TimeSpan.FromSeconds(3) };
                await Assert.ThrowsAsync<MetadataUnavailableException>(() => outside.ExecuteAsync(
                    new PutCommand("intruder", new byte[] { 1 }), TestContext.Current.CancellationToken));
            }
            using (var key = ClusterKey.Load(_key))
            using (var inside = new MetadataClient(metadata) { Tls = key.ClientOptions(), Timeout = TimeSpan.FromSeconds(5) })
            {
                Assert.Equal(3, (await inside.ListAsync("pools/", TestContext.Current.CancellationToken)).Count);
                Assert.False((await inside.ReadAsync("intruder", TestContext.Current.CancellationToken)).IsOk);
            }
            // The segment of the volume that p3 holds opens with the cluster's key (placement decides which one it is).
            string export = "";
            NbdClientOptions Segment(SslClientAuthenticationOptions? tls) => new()
            {
                Host = n3.Segments.Address.ToString(), Port = n3.Segments.Port, ExportName = export, Tls = tls, ReconnectAttempts = 0,
            };
            using (var key = ClusterKey.Load(_key))
            {
                var opened = new List<string>();
                for (int i = 0; i < 3; i++)
                {
                    export = SegmentExports.ExportName("p3", SpannedVolume.SegmentName("sealed", i), null, "n2");   // offered to n2, which serves the volume
                    try
                    {
                        await using var segment = await NbdClientDevice.ConnectAsync(Segment(key.ClientOptions()), TestContext.Current.CancellationToken);
                        var bytes = new byte[4096];
                        await segment.ReadAsync(0, bytes, TestContext.Current.CancellationToken);
                        Assert.All(bytes, b => Assert.Equal(0x7e, b));
                        opened.Add(export);
                    }
                    catch (NbdConfigurationException e) when (e.Message.Contains("no export", StringComparison.Ordinal))
                    {
                    }
                }
                export = Assert.Single(opened);
                // The same segment for a node that does not serve the volume is not offered, key or no key.
                string serving = export;
                export = export.Replace("#n2", "#n1", StringComparison.Ordinal);
                await Assert.ThrowsAsync<NbdConfigurationException>(async () =>
                    await (await NbdClientDevice.ConnectAsync(Segment(key.ClientOptions()), TestContext.Current.CancellationToken)).DisposeAsync());
                export = serving;
            }
            var plain = await Assert.ThrowsAsync<NbdConfigurationException>(async () =>
                await (await NbdClientDevice.ConnectAsync(Segment(null), TestContext.Current.CancellationToken)).DisposeAsync());
            Assert.Contains("TLS", plain.Message, StringComparison.Ordinal);
            await Assert.ThrowsAnyAsync<Exception>(async () =>
                await (await NbdClientDevice.ConnectAsync(Segment(Outsider.Tls(stranger, member)), TestContext.Current.CancellationToken)).DisposeAsync());
            using (var volumes = Json("n1", "volume", "list", "--json"))
                Assert.Equal(32L << 20, volumes.RootElement.EnumerateArray().Single().GetProperty("sizeBytes").GetInt64());

            // A node started with another key cannot join.
            Storage("daemon", "stop", "--daemon", NodeDir("n3"));
            Assert.True(_daemons["n3"].WaitForExit(TimeSpan.FromMinutes(1)));
            _key = At("stranger.key");
            var lone = StartStorage(At("n3-stranger.log"), "daemon", "--dir", NodeDir("n3"), "--node", "n3", "--cluster", _cluster, "--cluster-key", _key);
            _daemons["n3"] = lone;
            WaitFor(() => File.Exists(At("n3-stranger.log")) && File.ReadAllText(At("n3-stranger.log")).Contains("waiting for a majority", StringComparison.Ordinal), "the node with another key to find no majority");
            using (var status = Json("n1", "cluster", "status", "--json"))
                Assert.Equal(2, status.RootElement.GetProperty("replicas").EnumerateArray().Count(r => r.GetProperty("role").GetString() is "leader" or "follower"));
            Assert.False(lone.HasExited);
            foreach (string node in new[] { "n1", "n2" })
                Storage("daemon", "stop", "--daemon", NodeDir(node));
        }
        finally
        {
            StopAll();
        }
    }

    /// <summary>
    /// A volume whose node dies (kill -9, not restarted) is taken over by the first live node once the dead node's
    /// lease has gone unrenewed for --failover-after: it serves the volume with every flushed byte, takes writes, and
    /// the old node, restarted, does not serve it again (nor may it reopen its segments: they are offered to the new
    /// node only).
    /// </summary>
    [Fact]
    public void A_volume_whose_node_dies_is_served_by_the_next_live_node()
    {
        Require("cluster test", root: false, "qemu-io");
        CreateClusterPools("64M");
        _failoverAfter = "4";
        try
        {
            StartWithPools();
            CreateOnN1OverOtherNodes("moving", "0x61");
            Assert.NotEqual(0, RunRaw("qemu-io", "-f", "raw", "-c", "read -P 0x61 0 4k", Uri("n2", "moving")).Code);   // one node serves it

            _daemons["n1"].Kill();
            Assert.True(_daemons["n1"].WaitForExit(TimeSpan.FromSeconds(30)));
            WaitFor(() => RunRaw("qemu-io", "-f", "raw", "-c", "read -P 0x61 0 16M", Uri("n2", "moving")).Code == 0, "n2 to take the volume over");
            using (var volumes = Json("n3", "volume", "list", "--json"))
                Assert.Equal("n2", volumes.RootElement.EnumerateArray().Single().GetProperty("node").GetString());
            Run("qemu-io", "-f", "raw", "-c", "write -P 0x62 4M 4M", "-c", "flush", Uri("n2", "moving"));

            Start("n1");
            Thread.Sleep(3000);   // a few lease rounds: n1 must not take it back
            Assert.NotEqual(0, RunRaw("qemu-io", "-f", "raw", "-c", "read 0 4k", Uri("n1", "moving")).Code);
            Run("qemu-io", "-f", "raw", "-c", "read -P 0x61 0 4M", "-c", "read -P 0x62 4M 4M", "-c", "read -P 0x61 8M 8M", Uri("n2", "moving"));
            Storage("volume", "resize", "moving", "--size", "24M", "--daemon", NodeDir("n1"));   // forwarded to its new node
            WaitFor(() => RunRaw("qemu-io", "-f", "raw", "-c", "read -P 0 16M 8M", Uri("n2", "moving")).Code == 0, "the grown volume on n2");
            foreach (string node in Nodes)
                Storage("daemon", "stop", "--daemon", NodeDir(node));
        }
        finally
        {
            StopAll();
        }
    }

    /// <summary>
    /// A mirrored volume served by n1 with its copies on n2's and n3's pools: when n3 dies, writes go on once its
    /// copies are recorded stale; when n3 is back they are resynchronized in the background; then n2 dies and n3's
    /// copies alone serve every byte.
    /// </summary>
    [Fact]
    public void A_mirror_goes_on_when_a_copy_node_dies_resyncs_when_it_is_back_and_then_serves_alone()
    {
        Require("cluster test", root: false, "qemu-io");
        CreateClusterPools("64M");
        try
        {
            StartWithPools();
            Storage("volume", "create", "mir", "--size", "16M", "--segment-size", "8M", "--mirror", "--pools", "p2,p3", "--daemon", NodeDir("n1"));
            WaitFor(() => RunRaw("qemu-io", "-f", "raw", "-c", "write -P 0x71 0 16M", "-c", "flush", Uri("n1", "mir")).Code == 0, "n1 to serve the volume");

            _daemons["n3"].Kill();
            Assert.True(_daemons["n3"].WaitForExit(TimeSpan.FromSeconds(30)));
            Run("qemu-io", "-f", "raw", "-c", "write -P 0x72 0 12M", "-c", "flush", Uri("n1", "mir"));   // waits out n3's reconnects, then goes on without it
            Assert.Equal([("p3", "stale"), ("p3", "stale")], Stale("mir"));

            Start("n3");
            WaitFor(() => Stale("mir").Count == 0, "n3's copies to be resynchronized");
            Assert.Contains("resync finished", File.ReadAllText(At("n1.log")), StringComparison.Ordinal);

            _daemons["n2"].Kill();
            Assert.True(_daemons["n2"].WaitForExit(TimeSpan.FromSeconds(30)));
            Run("qemu-io", "-f", "raw", "-c", "write -P 0x73 12M 4k", "-c", "flush", Uri("n1", "mir"));   // n2's copy of segment 1 is left out
            Run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0x72 0 12M", "-c", "read -P 0x73 12M 4k", "-c", "read -P 0x71 12292k 4092k", Uri("n1", "mir"));
            Assert.Contains(("p2", "stale"), Stale("mir"));
            foreach (string node in new[] { "n1", "n3" })
                Storage("daemon", "stop", "--daemon", NodeDir(node));
        }
        finally
        {
            StopAll();
        }
    }

    /// <summary>The stale copies of <paramref name="volume"/> as n1's 'storage volume list --json' has them.</summary>
    private List<(string Pool, string State)> Stale(string volume) => StaleCopies(Storage("volume", "list", "--json", "--daemon", NodeDir("n1")), volume);

    /// <summary>
    /// A node that is frozen (SIGSTOP) rather than dead loses its volume the same way; when it runs again it cannot
    /// write the volume's segments any more (the pools offer them to the new node only), so a client still connected
    /// to it gets errors, not a split brain: the new node's bytes stay as they were.
    /// </summary>
    [Fact]
    public void A_frozen_node_that_wakes_after_failover_cannot_write_the_volume()
    {
        Require("cluster test", root: false, "qemu-io");
        CreateClusterPools("64M");
        _failoverAfter = "4";
        try
        {
            StartWithPools();
            CreateOnN1OverOtherNodes("frozen", "0x71");

            int pid = _daemons["n1"].Id;
            Run("kill", "-STOP", pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
            try
            {
                WaitFor(() => RunRaw("qemu-io", "-f", "raw", "-c", "read -P 0x71 0 16M", Uri("n2", "frozen")).Code == 0, "n2 to take the volume over");
            }
            finally
            {
                Run("kill", "-CONT", pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            var stale = RunRaw("qemu-io", "-f", "raw", "-c", "write -P 0x73 0 16M", "-c", "flush", Uri("n1", "frozen"));
            Assert.NotEqual(0, stale.Code);
            Run("qemu-io", "-f", "raw", "-c", "read -P 0x71 0 16M", Uri("n2", "frozen"));
            foreach (string node in Nodes)
                Storage("daemon", "stop", "--daemon", NodeDir(node));
        }
        finally
        {
            StopAll();
        }
    }

    private IReadOnlyList<ClusterNode> ClusterNodes() => ClusterNode.Parse(_cluster);

    [Fact]
    public void Cluster_options_that_cannot_work_are_refused_before_anything_starts()
    {
        var wide = StorageRaw("daemon", "--dir", At("x"), "--node", "n1", "--cluster", "n1=10.1.2.3:7100,n2=127.0.0.1:7110,n3=127.0.0.1:7120");
        Assert.Equal(2, wide.Code);
        Assert.Contains("not a loopback address", wide.Error, StringComparison.Ordinal);
        var overlap = StorageRaw("daemon", "--dir", At("x"), "--node", "n1", "--cluster", "n1=127.0.0.1:7100,n2=127.0.0.1:7102");
        Assert.Equal(2, overlap.Code);
        Assert.Contains("overlap", overlap.Error, StringComparison.Ordinal);
        var stranger = StorageRaw("daemon", "--dir", At("x"), "--node", "n9", "--cluster", "n1=127.0.0.1:7100,n2=127.0.0.1:7110");
        Assert.Equal(2, stranger.Code);
        Assert.Contains("--node n9 is not in --cluster", stranger.Error, StringComparison.Ordinal);
        Assert.False(Directory.Exists(At("x")));
        Assert.Equal(2, ClusterNode.Parse("n1=10.1.2.3:7100,n2=[fd00::2]:7100", authenticated: true).Count);
        Assert.Throws<FormatException>(() => ClusterNode.Parse("n1=0.0.0.0:7100", authenticated: true));
        Assert.Throws<FormatException>(() => ClusterNode.Parse("n1=239.1.2.3:7100", authenticated: true));
        if (OperatingSystem.IsWindows())
            return;
        Storage("cluster", "key", "create", At("k"));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(At("k")));
        File.SetUnixFileMode(At("k"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
        var readable = StorageRaw("daemon", "--dir", At("x"), "--node", "n1", "--cluster", "n1=10.1.2.3:7100", "--cluster-key", At("k"));
        Assert.Equal(2, readable.Code);
        Assert.Contains("chmod 600", readable.Error, StringComparison.Ordinal);
        var both = StorageRaw("volume", "list", "--device", At("x.img"), "--daemon", At("x"));
        Assert.Equal(2, both.Code);
        Assert.Contains("give one or the other", both.Error, StringComparison.Ordinal);
        var again = StorageRaw("cluster", "key", "create", At("k"));
        Assert.Equal(2, again.Code);
        Assert.Contains("never overwritten", again.Error, StringComparison.Ordinal);
    }

    /// <summary>Refusals found once the daemon runs: they end it with a message and exit 1, not a crash.</summary>
    [Fact]
    public void A_daemon_that_cannot_join_its_cluster_says_why_and_exits()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        int port = ((IPEndPoint)taken.LocalEndpoint).Port;
        var busy = StorageRaw("daemon", "--dir", At("busy"), "--node", "n1", "--cluster", $"n1=127.0.0.1:{port}");
        Assert.Equal(1, busy.Code);
        Assert.Contains("in use", busy.Output + busy.Error, StringComparison.OrdinalIgnoreCase);

        Directory.CreateDirectory(At("moved"));
        File.WriteAllText(At("moved/cluster"), "n1=127.0.0.1:7100,n2=127.0.0.1:7110 node=n1\n");
        var moved = StorageRaw("daemon", "--dir", At("moved"), "--node", "n1", "--cluster", "n1=127.0.0.1:7200,n2=127.0.0.1:7210");
        Assert.Equal(1, moved.Code);
        Assert.Contains("belongs to cluster", moved.Output + moved.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", moved.Output + moved.Error, StringComparison.Ordinal);
    }

    /// <summary>Starts n1..n3 and attaches pool pN to node nN.</summary>
    private void StartWithPools()
    {
        foreach (string node in Nodes)
            Start(node);
        for (int i = 1; i <= 3; i++)
            Storage("pool", "attach", "--device", At($"p{i}.img"), "--daemon", NodeDir($"n{i}"));
    }

    /// <summary>A 16 MiB volume created on n1 with its segments on p2 and p3 only, filled with <paramref name="pattern"/> and flushed through n1.</summary>
    private void CreateOnN1OverOtherNodes(string volume, string pattern)
    {
        Storage("volume", "create", volume, "--size", "16M", "--segment-size", "8M", "--pools", "p2,p3", "--daemon", NodeDir("n1"));
        WaitFor(() => RunRaw("qemu-io", "-f", "raw", "-c", $"write -P {pattern} 0 16M", "-c", "flush", Uri("n1", volume)).Code == 0, "n1 to serve the volume");
    }

    /// <summary>Picks the cluster's ports and makes pools p1..p3 of <paramref name="size"/>.</summary>
    private void CreateClusterPools(string size)
    {
        int port = FreePorts();
        _cluster = string.Join(",", Nodes.Select((n, i) => $"{n}=127.0.0.1:{port + i * 10}"));
        for (int i = 1; i <= 3; i++)
            Storage("pool", "create", "--device", At($"p{i}.img"), "--size", size, "--name", $"p{i}");
    }

    /// <summary>Kills whatever daemon a failed test left running, and cleans up.</summary>
    private void StopAll()
    {
        foreach (var daemon in _daemons.Values)
        {
            if (!daemon.HasExited)
                daemon.Kill();
            daemon.Dispose();
        }
        Cleanup();
    }

    private Process StartFio(params string[] extra)
    {
        var args = new List<string>
        {
            "fio", "--name=data", "--ioengine=nbd", $"--uri={Uri("n1", "data")}", "--rw=randwrite", "--bs=4k", "--iodepth=8", "--size=48M",
            "--verify=crc32c", "--randrepeat=1", "--verify_fatal=1", $"--output={At("fio.log")}",
        };
        args.AddRange(extra);
        var start = new ProcessStartInfo("bash") { ArgumentList = { "-c", "exec \"$@\"", "fio" } };
        foreach (string arg in args)
            start.ArgumentList.Add(arg);
        return Process.Start(start)!;
    }

    private void Start(string node, IReadOnlyDictionary<string, string>? environment = null)
    {
        _daemons.Remove(node, out var old);
        old?.Dispose();
        string[] args = ["daemon", "--dir", NodeDir(node), "--node", node, "--cluster", _cluster, "--in-doubt-after", "3"];
        if (_key is not null)
            args = [.. args, "--cluster-key", _key];
        if (_failoverAfter is not null)
            args = [.. args, "--failover-after", _failoverAfter];
        var daemon = StartStorage(At($"{node}.log"), environment ?? new Dictionary<string, string>(), args);
        _daemons[node] = daemon;
        // A node is up once it publishes its record; the first needs a second node for a metadata majority.
        if (node != "n1" || _daemons.Count > 1)
            WaitFor(() => PublishedPid(node) == daemon.Id || daemon.HasExited, $"daemon {node} to start");
        if (daemon.HasExited)
            Assert.Fail($"daemon {node} exited: {File.ReadAllText(At($"{node}.log"))}");
        if (node == "n2" && _daemons.TryGetValue("n1", out var first))
            WaitFor(() => PublishedPid("n1") == first.Id, "daemon n1 to start");
    }

    private void KillAndRestart(string node)
    {
        _daemons[node].Kill();
        Assert.True(_daemons[node].WaitForExit(TimeSpan.FromSeconds(30)));
        Start(node);
    }

    private int Leader(string askNode)
    {
        int leader = 0;
        WaitFor(() =>
        {
            using var status = Json(askNode, "cluster", "status", "--json");
            leader = status.RootElement.TryGetProperty("leader", out var l) && l.ValueKind == JsonValueKind.Number ? l.GetInt32() : 0;
            return leader > 0;
        }, "a metadata leader");
        return leader;
    }

    private int PublishedPid(string node)
    {
        try
        {
            using var record = JsonDocument.Parse(File.ReadAllText(Path.Combine(RunDir, node + ".daemon")));
            return record.RootElement.GetProperty("pid").GetInt32();
        }
        catch (Exception e) when (e is IOException or JsonException)
        {
            return -1;
        }
    }

    private JsonDocument Json(string node, params string[] args) => JsonDocument.Parse(Storage([.. args, "--daemon", NodeDir(node)]));

    /// <summary>A base port with the twelve from it free on loopback (three nodes, four ports each, ten apart).</summary>
    private static int FreePorts()
    {
        for (int attempt = 0; attempt < 100; attempt++)
        {
            int base_ = 20000 + Random.Shared.Next(0, 3000) * 10;
            var listeners = new List<TcpListener>();
            try
            {
                foreach (int port in Enumerable.Range(0, 3).SelectMany(n => Enumerable.Range(base_ + n * 10, 4)))
                {
                    var listener = new TcpListener(IPAddress.Loopback, port);
                    listener.Start();
                    listeners.Add(listener);
                }
                return base_;
            }
            catch (SocketException)
            {
            }
            finally
            {
                foreach (var listener in listeners)
                    listener.Stop();
            }
        }
        throw new InvalidOperationException("no free loopback ports");
    }
}
