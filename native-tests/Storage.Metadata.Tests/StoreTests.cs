using System.Collections.Concurrent;
using System.Net;
using System.Text;
using Storage.Metadata;

namespace Storage.Metadata.Tests;

/// <summary>
/// <see cref="IMetadataStore"/> behaves the same in-process (<see cref="MetadataCluster"/>) and over TCP
/// (<see cref="MetadataClient"/> against <see cref="MetadataServer"/>s): execute, read, list, watch, and a record read
/// remotely decodes with the public <see cref="MetadataCodec"/>.
/// </summary>
public sealed class StoreTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "meta-store-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root))
            Directory.Delete(_root, recursive: true);
    }

    private string[] Dirs(int n) => [.. Enumerable.Range(1, n).Select(i => Path.Combine(_root, $"replica{i}"))];

    [Fact]
    public async Task The_cluster_in_process_is_a_store()
    {
        using var cluster = MetadataCluster.Start(Dirs(3));
        await cluster.WaitForLeaderAsync(TimeSpan.FromSeconds(10));
        await ExerciseAsync(cluster);
    }

    [Fact]
    public async Task The_client_over_tcp_is_a_store()
    {
        using var cluster = MetadataCluster.Start(Dirs(3));
        await cluster.WaitForLeaderAsync(TimeSpan.FromSeconds(10));
        var servers = cluster.Replicas.Select(r => new MetadataServer(r, new IPEndPoint(IPAddress.Loopback, 0))).ToList();
        try
        {
            foreach (var server in servers)
                server.Start();
            var endpoints = cluster.Replicas.Zip(servers).ToDictionary(p => p.First.Status.Consensus.Self.Id, p => p.Second.LocalEndpoint);
            using var client = new MetadataClient(endpoints) { WatchInterval = TimeSpan.FromMilliseconds(20) };
            await ExerciseAsync(client);
        }
        finally
        {
            foreach (var server in servers)
                server.Dispose();
        }
    }

    private static async Task ExerciseAsync(IMetadataStore store)
    {
        var ct = TestContext.Current.CancellationToken;
        var seen = new ConcurrentQueue<WatchEvent>();
        using (store.Watch("pools/", seen.Enqueue))
        {
            await Task.Delay(100, ct);   // a polling watch takes its first look
            Assert.True((await store.ExecuteAsync(new CreatePoolCommand("p", [new ArrayRecord(1, "raid6", ["a", "b", "c", "d"])]), ct)).IsOk);
            Assert.True((await store.ExecuteAsync(new CreatePoolCommand("q", [new ArrayRecord(1, "raid5", ["e", "f", "g"])]), ct)).IsOk);
            Assert.True((await store.ExecuteAsync(new PutCommand("other", Encoding.UTF8.GetBytes("x")), ct)).IsOk);

            var read = await store.ReadAsync(MetadataStateMachine.PoolKey("p"), ct);
            Assert.True(read.IsOk);
            Assert.Equal(["a", "b", "c", "d"], MetadataCodec.DecodePool(read.Value.Span).Arrays[0].Members);

            var listed = await store.ListAsync("pools/", ct);
            Assert.Equal(["pools/p", "pools/q"], listed.Select(k => k.Key));
            Assert.All(listed, k => Assert.True(k.Version > 0));

            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
            while (seen.Count < 2 && DateTime.UtcNow < deadline)
                await Task.Delay(10, ct);
            Assert.Equal(["pools/p", "pools/q"], seen.Select(e => e.Key));
            Assert.Equal("q", MetadataCodec.DecodePool(seen.Last().Value.Span).Name);

            Assert.True((await store.ExecuteAsync(new DeletePoolCommand("q"), ct)).IsOk);
            deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
            while (seen.Count < 3 && DateTime.UtcNow < deadline)
                await Task.Delay(10, ct);
            Assert.True(seen.Last() is { Key: "pools/q", Deleted: true });
        }
        Assert.Equal(["pools/p"], (await store.ListAsync("pools/", ct)).Select(k => k.Key));
    }
}
