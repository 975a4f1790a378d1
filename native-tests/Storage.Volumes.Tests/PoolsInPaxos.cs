using Storage.Devices;
using Storage.Metadata;
using Storage.Versioning;

namespace Storage.Volumes.Tests;

/// <summary>
/// What the transaction tests stand on: real Paxos (three replicas in this process, logs in a temporary folder) and
/// <paramref name="count"/> pools named pool0, pool1, … on memory disks of <paramref name="poolBytes"/>.
/// </summary>
public abstract class PoolsInPaxos(int count = 3, long poolBytes = 64L << 20, int? blockSize = null) : IAsyncLifetime
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "volumes-" + Guid.NewGuid().ToString("N"));

    protected MetadataCluster Cluster { get; private set; } = null!;

    protected List<PoolParticipant> Pools { get; } = [];

    /// <summary>A step hook's way to cut a transaction short.</summary>
    protected sealed class CrashException(string step) : Exception($"cut short at {step}");

    public virtual async ValueTask InitializeAsync()
    {
        Cluster = MetadataCluster.Start([.. Enumerable.Range(1, 3).Select(i => Path.Combine(_root, $"replica{i}"))]);
        await Cluster.WaitForLeaderAsync(TimeSpan.FromSeconds(10));
        for (int i = 0; i < count; i++)
        {
            var options = blockSize is { } block ? new PoolCreateOptions { Name = $"pool{i}", BlockSize = block } : new PoolCreateOptions { Name = $"pool{i}" };
            var pool = await Pool.CreateAsync(new MemoryBlockDevice(poolBytes, 512, $"disk{i}"), options, new PoolOpenOptions { CommitInterval = TimeSpan.Zero });
            Pools.Add(new PoolParticipant($"pool{i}", pool));
        }
    }

    public virtual async ValueTask DisposeAsync()
    {
        foreach (var p in Pools)
            await p.Pool.DisposeAsync();
        Cluster.Dispose();
        if (Directory.Exists(_root))
            Directory.Delete(_root, recursive: true);
        GC.SuppressFinalize(this);
    }

    protected VolumeTransactions Transactions() => new(Cluster, Pools);

    protected Dictionary<string, Pool> ByName => Pools.ToDictionary(p => p.Name, p => p.Pool, StringComparer.Ordinal);

    protected Dictionary<string, ISegmentPool> Segments => Pools.ToDictionary(p => p.Name, p => (ISegmentPool)new LocalSegmentPool(p.Name, p.Pool), StringComparer.Ordinal);

    protected async Task<SpannedVolume> RecordAsync(string name) => SpannedVolume.Decode((await Cluster.ReadAsync(SpannedVolume.Key(name))).Value.Span);
}
