using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
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
/// <see cref="ExtendAndShrink"/> grows a volume by one segment per pool and shrinks it back (two transactions);
/// <see cref="CreateSnapshotDelete"/> adds a group snapshot of the volume to <see cref="CreateAndDelete"/> (the
/// difference is one snapshot transaction: hold, every pool's snapshot, decision, release).
/// </summary>
[MedianColumn]
[Config(typeof(TailConfig))]
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
        _transactions.CreateVolumeAsync("grown", Pools * Segment, Segment, new Placement(PlacementPolicy.RoundRobin)).GetAwaiter().GetResult();
    }

    /// <summary>The 95th percentile and the maximum beside the mean and median (BenchmarkDotNet has no p99 column).</summary>
    private sealed class TailConfig : ManualConfig
    {
        public TailConfig() => AddColumn(StatisticColumn.P95, StatisticColumn.Max);
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
    public async Task ExtendAndShrink()
    {
        await _transactions.ResizeVolumeAsync("grown", 2 * Pools * Segment, new Placement(PlacementPolicy.RoundRobin));
        await _transactions.ResizeVolumeAsync("grown", Pools * Segment, new Placement(PlacementPolicy.RoundRobin));
    }

    [Benchmark]
    public async Task CreateSnapshotDelete()
    {
        string name = $"s{_next++}";
        await _transactions.CreateVolumeAsync(name, Pools * Segment, Segment, new Placement(PlacementPolicy.RoundRobin));
        await _transactions.SnapshotGroupAsync("snap", [name]);
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
