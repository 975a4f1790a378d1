using BenchmarkDotNet.Attributes;
using Storage.Devices;
using Storage.Metadata;
using Storage.Versioning;
using Storage.Volumes;

namespace Storage.Benchmarks;

/// <summary>
/// Volume operations as two-phase commits over 1, 3 and 5 pools (memory disks) with three in-process Paxos replicas
/// whose logs are on /dev/shm: one call creates a volume of one segment per pool and deletes it again (two
/// transactions). <see cref="SinglePoolWithout2pc"/> does the same on one pool directly: the cost the transactions add.
/// <see cref="PaxosDecisionOnly"/> is one command through the log: the share of a transaction spent on a decision.
/// </summary>
public class VolumeTransactionBenchmarks
{
    private const long Segment = 1L << 20;
    private string _root = "";
    private MetadataCluster _cluster = null!;
    private readonly List<PoolParticipant> _pools = [];
    private VolumeTransactions _transactions = null!;
    private long _next;

    [Params(1, 3, 5)]
    public int Pools { get; set; } = 3;

    [GlobalSetup]
    public void Setup()
    {
        _root = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), $"storage-bench-2pc-{Guid.NewGuid():N}");
        _cluster = MetadataCluster.Start([.. Enumerable.Range(1, 3).Select(i => Path.Combine(_root, $"r{i}"))]);
        _cluster.WaitForLeaderAsync(TimeSpan.FromSeconds(10)).GetAwaiter().GetResult();
        for (int i = 0; i < Pools; i++)
        {
            var pool = Pool.CreateAsync(new MemoryBlockDevice(64L << 20, 512, $"disk{i}"), new PoolCreateOptions { Name = $"pool{i}" }, new PoolOpenOptions { CommitInterval = TimeSpan.Zero }).GetAwaiter().GetResult();
            _pools.Add(new PoolParticipant($"pool{i}", pool));
        }
        _transactions = new VolumeTransactions(_cluster, _pools);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var pool in _pools)
            pool.Pool.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _cluster.Dispose();
        Directory.Delete(_root, recursive: true);
    }

    [Benchmark]
    public async Task CreateAndDelete()
    {
        string name = $"v{_next++}";
        await _transactions.CreateVolumeAsync(name, Pools * Segment, Segment, new Placement(PlacementPolicy.RoundRobin));
        await _transactions.DeleteVolumeAsync(name);
    }

    [Benchmark]
    public async Task SinglePoolWithout2pc()
    {
        string name = $"w{_next++}";
        await _pools[0].Pool.CreateVolumeAsync(name, Pools * Segment);
        await _pools[0].Pool.DeleteVolumeAsync(name);
    }

    [Benchmark]
    public Task PaxosDecisionOnly() => _cluster.ExecuteAsync(new PutCommand("bench", new byte[64]));
}
