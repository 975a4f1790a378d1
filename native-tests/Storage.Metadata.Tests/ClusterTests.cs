using System.Collections.Concurrent;
using System.Net;
using System.Text;
using Storage.Consensus;
using Storage.Metadata;

namespace Storage.Metadata.Tests;

public sealed class ClusterTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "meta-" + Guid.NewGuid().ToString("N"));

    private string[] Dirs(int n) => [.. Enumerable.Range(1, n).Select(i => Path.Combine(_root, $"replica{i}"))];

    public void Dispose()
    {
        if (Directory.Exists(_root))
            Directory.Delete(_root, recursive: true);
    }

    private static byte[] B(string s) => Encoding.UTF8.GetBytes(s);

    private static string S(CommandResult r) => Encoding.UTF8.GetString(r.Value.Span);

    private static async Task WaitUntil(Func<Task<bool>> condition, string what, int seconds = 15)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
                Assert.Fail("timed out waiting for " + what);
            await Task.Delay(20);
        }
    }

    private static async Task<bool> Converged(MetadataCluster c)
    {
        var sums = await Task.WhenAll(c.Replicas.Select(r => r.QueryAsync(s => (s.AppliedIndex, s.Checksum()))));
        return sums.Distinct().Count() == 1 && c.Replicas.Count() == 3;
    }

    [Fact]
    public async Task Three_replicas_apply_concurrent_commands_once_and_converge()
    {
        using var c = MetadataCluster.Start(Dirs(3));
        await c.WaitForLeaderAsync(TimeSpan.FromSeconds(10));
        var results = await Task.WhenAll(Enumerable.Range(0, 200).Select(i => c.ExecuteAsync(new PutCommand($"k{i % 20}", B($"v{i}")))));
        Assert.All(results, r => Assert.True(r.IsOk));
        Assert.Equal(200, results.Select(r => r.Revision).Distinct().Count());
        await WaitUntil(() => Converged(c), "convergence");
        var read = await c.ReadAsync("k7");
        Assert.True(read.IsOk);
        Assert.StartsWith("v", S(read));
    }

    [Fact]
    public async Task Leader_stop_loses_nothing_acknowledged_and_the_restarted_replica_catches_up()
    {
        using var c = MetadataCluster.Start(Dirs(3), o => new MetadataReplicaOptions
        {
            Id = o.Id, Directory = o.Directory, InitialConfig = o.InitialConfig, Bootstrap = o.Bootstrap, SnapshotEvery = 50,
        });
        var leader = await c.WaitForLeaderAsync(TimeSpan.FromSeconds(10));
        var acked = new ConcurrentDictionary<string, string>();
        for (int i = 0; i < 120; i++)
        {
            var r = await c.ExecuteAsync(new PutCommand($"key{i}", B($"value{i}")));
            Assert.True(r.IsOk);
            acked[$"key{i}"] = $"value{i}";
            if (i == 60)
                c.StopReplica(leader.Id);
        }
        var next = await c.WaitForLeaderAsync(TimeSpan.FromSeconds(10));
        Assert.NotEqual(leader.Id, next.Id);
        c.StartReplica(leader.Id);
        await WaitUntil(() => Converged(c), "the restarted replica to catch up");
        foreach (var (key, value) in acked)
            Assert.Equal(value, S(await c.ReadAsync(key)));
        var status = c.Replica(leader.Id)!.Status;
        Assert.True(status.Consensus.SnapshotIndex > 0, "logs are compacted behind snapshots");
    }

    [Fact]
    public async Task Replica_with_a_wiped_directory_rejoins_as_a_new_incarnation()
    {
        using var c = MetadataCluster.Start(Dirs(3));
        await c.WaitForLeaderAsync(TimeSpan.FromSeconds(10));
        for (int i = 0; i < 20; i++)
            Assert.True((await c.ExecuteAsync(new PutCommand($"k{i}", B("x")))).IsOk);
        int victim = c.Replicas.First(r => !r.IsLeader).Id;
        c.StopReplica(victim);
        Directory.Delete(Dirs(3)[victim - 1], recursive: true);
        c.StartReplica(victim);
        var fresh = c.Replica(victim)!;
        Assert.Equal(RecoveryOutcome.New, fresh.Status.Recovery);
        long incarnation = fresh.Status.Consensus.Self.Incarnation;
        Assert.NotEqual(0, incarnation);
        await WaitUntil(async () => (await c.WaitForLeaderAsync(TimeSpan.FromSeconds(5))).Status.Consensus.Config.Contains(new Member(victim, incarnation)),
            "the new incarnation to be admitted");
        Assert.True((await c.ExecuteAsync(new PutCommand("after", B("y")))).IsOk);
        await WaitUntil(() => Converged(c), "convergence");
    }

    [Fact]
    public async Task A_member_removed_through_the_log_is_no_longer_needed_for_a_quorum()
    {
        using var c = MetadataCluster.Start(Dirs(3));
        var leader = await c.WaitForLeaderAsync(TimeSpan.FromSeconds(10));
        int removed = c.Replicas.First(r => r.Id != leader.Id).Id;
        var smaller = new Configuration(c.Config.Members.Where(m => m.Id != removed));
        await Assert.ThrowsAsync<ArgumentException>(() => leader.ProposeConfigurationAsync(new Configuration([new Member(leader.Id, 0)])));
        Assert.True(await leader.ProposeConfigurationAsync(smaller));
        await WaitUntil(() => Task.FromResult(c.Replicas.Where(r => r.Id != removed).All(r => r.Status.Consensus.Config.Equals(smaller))), "the change to be chosen");
        c.StopReplica(removed);
        int other = smaller.Members.First(m => m.Id != leader.Id).Id;
        Assert.True((await c.ExecuteAsync(new PutCommand("two-of-two", B("ok")))).IsOk);
        Assert.Equal("ok", S(await c.ReadAsync("two-of-two")));
        Assert.Contains(other, smaller.Members.Select(m => m.Id));
    }

    [Fact]
    public async Task Watchers_see_every_change_under_their_prefix_in_revision_order()
    {
        using var c = MetadataCluster.Start(Dirs(3));
        await c.WaitForLeaderAsync(TimeSpan.FromSeconds(10));
        var seen = new ConcurrentQueue<WatchEvent>();
        using var watch = c.Watch("volumes/", seen.Enqueue);
        Assert.True((await c.ExecuteAsync(new CreatePoolCommand("p", [new ArrayRecord(1, "raid1", ["a", "b"])]))).IsOk);
        Assert.True((await c.ExecuteAsync(new CreateVolumeCommand("v1", "p", 1 << 20))).IsOk);
        Assert.True((await c.ExecuteAsync(new MapExtentCommand("v1", new ExtentRecord(0, 4096, 1, 0)))).IsOk);
        Assert.True((await c.ExecuteAsync(new DeleteVolumeCommand("v1"))).IsOk);
        await WaitUntil(() => Task.FromResult(seen.Count == 3), "three volume events");
        var events = seen.ToArray();
        Assert.All(events, e => Assert.Equal("volumes/v1", e.Key));
        Assert.Equal([false, false, true], events.Select(e => e.Deleted));
        Assert.True(events[0].Revision < events[1].Revision && events[1].Revision < events[2].Revision);
    }

    [Fact]
    public async Task Replicas_over_tcp_on_loopback_agree_and_survive_a_restart()
    {
        int[] ports = [.. Enumerable.Range(0, 3).Select(_ => Ports.Free())];
        var peers = Enumerable.Range(1, 3).ToDictionary(i => i, i => new IPEndPoint(IPAddress.Loopback, ports[i - 1]));
        var dirs = Dirs(3);
        var config = Configuration.Initial(3);
        MetadataReplica Make(int id, bool boot)
        {
            var r = new MetadataReplica(new MetadataReplicaOptions { Id = id, Directory = dirs[id - 1], InitialConfig = config, Bootstrap = boot },
                new TcpTransport(id, peers[id], peers));
            r.Start();
            return r;
        }
        var replicas = Enumerable.Range(1, 3).ToDictionary(i => i, i => Make(i, true));
        try
        {
            async Task<CommandResult> Exec(MetadataCommand cmd)
            {
                var deadline = DateTime.UtcNow.AddSeconds(15);
                while (true)
                {
                    var leader = replicas.Values.FirstOrDefault(r => r.IsLeader);
                    if (leader is not null)
                        try
                        {
                            return await leader.ExecuteAsync(cmd);
                        }
                        catch (Exception e) when (e is NotLeaderException or TimeoutException)
                        {
                        }
                    Assert.True(DateTime.UtcNow < deadline, "no leader over TCP");
                    await Task.Delay(20);
                }
            }
            for (int i = 0; i < 30; i++)
                Assert.True((await Exec(new PutCommand($"k{i}", B("tcp")))).IsOk);
            int victim = replicas.Values.First(r => !r.IsLeader).Id;
            replicas[victim].Dispose();
            for (int i = 30; i < 60; i++)
                Assert.True((await Exec(new PutCommand($"k{i}", B("tcp")))).IsOk);
            replicas[victim] = Make(victim, false);
            await WaitUntil(async () =>
            {
                var sums = await Task.WhenAll(replicas.Values.Select(r => r.QueryAsync(s => (s.AppliedIndex, s.Checksum()))));
                return sums.Distinct().Count() == 1;
            }, "TCP replicas to converge");
            Assert.Equal(60, await replicas[victim].QueryAsync(s => s.Count));
        }
        finally
        {
            foreach (var r in replicas.Values)
                r.Dispose();
        }
    }
}
