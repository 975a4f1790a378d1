using System.Runtime.CompilerServices;
using BenchmarkDotNet.Attributes;
using Storage.Devices;
using Storage.Raid;
using Storage.Versioning;

namespace Storage.Benchmarks;

/// <summary>
/// A thin volume against the raw array under it, side by side: RAID-6 over file-backed disks in /dev/shm (64 KiB
/// chunks, 128 MiB per member, journal on), the volume half the pool's size and written in full first, 16 KiB (the
/// default) or 32 KiB blocks. 4 KiB random writes and reads at queue depth 32 (and writes at depth 1, for the allocation column),
/// 1 MiB sequential writes and reads four at a time. The raw array's 4 KiB writes are read-modify-write through its
/// journal; the volume's are read-modify-write of its block into full, journal-free stripes.
/// </summary>
public class PoolBenchmarks
{
    private const int Chunk = 64 * 1024;
    private const long MemberSize = 128L << 20;
    private const int Small = 4096;
    private const int Large = 1 << 20;
    private const int Depth = 32;
    private const int LargeDepth = 4;

    private string _directory = "";
    private RaidArray _array = null!;
    private Pool _pool = null!;
    private PoolVolume _volume = null!;
    private IBlockDevice _target = null!;
    private byte[][] _small = [];
    private byte[][] _large = [];
    private long _next;
    private readonly ValueTask[] _inFlight = new ValueTask[Depth];
    private readonly Random _random = new(1);

    [Params("raid6-4+2", "raid6-8+2")]
    public string Shape { get; set; } = "raid6-4+2";

    /// <summary>The raw array, or a thin volume with 16 KiB (the default) or 32 KiB blocks.</summary>
    [Params("array", "thin-16K", "thin-32K")]
    public string Target { get; set; } = "thin-16K";

    private int Members => Shape == "raid6-4+2" ? 6 : 10;

    [GlobalSetup]
    public void Setup()
    {
        _directory = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), $"storage-bench-{Guid.NewGuid():N}");
        Directory.CreateDirectory(_directory);
        var files = Enumerable.Range(0, Members).Select(i => (IBlockDevice)FileBlockDevice.Create(Path.Combine(_directory, $"disk{i}.img"), MemberSize)).ToArray();
        _array = RaidArray.CreateAsync(files, new ArrayCreateOptions { Level = RaidLevel.Raid6, ChunkSize = Chunk, AssumeZeroed = true, Name = "bench" }).GetAwaiter().GetResult();
        _small = [.. Enumerable.Range(0, Depth).Select(i => Filled(Small, i))];
        _large = [.. Enumerable.Range(0, LargeDepth).Select(i => Filled(Large, 100 + i))];
        if (Target.StartsWith("thin", StringComparison.Ordinal))
        {
            int blockSize = Target == "thin-32K" ? 32 * 1024 : 16 * 1024;
            _pool = Pool.CreateAsync(_array, new PoolCreateOptions { Name = "bench", BlockSize = blockSize }).GetAwaiter().GetResult();
            long size = _pool.GetStatus().TotalBytes / 2 / Large * Large;
            _pool.CreateVolumeAsync("v", size).GetAwaiter().GetResult();
            _target = _volume = _pool.OpenVolume("v");
        }
        else
        {
            _target = _array;
        }
        long capacity = _target.Capacity / Large * Large;
        for (long offset = 0; offset < capacity; offset += Large)
            _target.WriteAsync(offset, _large[0]).AsTask().GetAwaiter().GetResult();
        _target.FlushAsync().AsTask().GetAwaiter().GetResult();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        if (_pool is not null)
        {
            _volume.Dispose();
            _pool.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        _array.StopAsync().GetAwaiter().GetResult();
        Directory.Delete(_directory, recursive: true);
    }

    private static byte[] Filled(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private long RandomSmall() => _random.NextInt64(0, _target.Capacity / Small) * Small;

    private long NextLarge()
    {
        long offset = _next;
        _next = (_next + Large) % (_target.Capacity / Large * Large);
        return offset;
    }

    [Benchmark]
    public ValueTask RandomWrite4KQd1() => _target.WriteAsync(RandomSmall(), _small[0]);

    [Benchmark]
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask RandomWrite4KQd32()
    {
        for (int i = 0; i < Depth; i++)
#pragma warning disable CA2012 // each stored ValueTask is awaited exactly once, below
            _inFlight[i] = _target.WriteAsync(RandomSmall(), _small[i]);
#pragma warning restore CA2012
        for (int i = 0; i < Depth; i++)
            await _inFlight[i];
    }

    [Benchmark]
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask RandomRead4KQd32()
    {
        for (int i = 0; i < Depth; i++)
#pragma warning disable CA2012
            _inFlight[i] = _target.ReadAsync(RandomSmall(), _small[i]);
#pragma warning restore CA2012
        for (int i = 0; i < Depth; i++)
            await _inFlight[i];
    }

    [Benchmark]
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask SequentialWrite1M()
    {
        for (int i = 0; i < LargeDepth; i++)
#pragma warning disable CA2012
            _inFlight[i] = _target.WriteAsync(NextLarge(), _large[i]);
#pragma warning restore CA2012
        for (int i = 0; i < LargeDepth; i++)
            await _inFlight[i];
    }

    [Benchmark]
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask SequentialRead1M()
    {
        for (int i = 0; i < LargeDepth; i++)
#pragma warning disable CA2012
            _inFlight[i] = _target.ReadAsync(NextLarge(), _large[i]);
#pragma warning restore CA2012
        for (int i = 0; i < LargeDepth; i++)
            await _inFlight[i];
    }

    /// <summary>Bytes and requests one call of each benchmark moves.</summary>
    internal static (long Bytes, int Requests) Work(string method) => method switch
    {
        nameof(RandomWrite4KQd1) => (Small, 1),
        nameof(RandomWrite4KQd32) or nameof(RandomRead4KQd32) => ((long)Small * Depth, Depth),
        nameof(SequentialWrite1M) or nameof(SequentialRead1M) => ((long)Large * LargeDepth, LargeDepth),
        _ => (0, 0),
    };
}

/// <summary>
/// Snapshot creation on a volume with 1 M mapped blocks (4 KiB blocks, 4 GiB written to a pool on one file in
/// /dev/shm): O(1), no copy of the map. Each call takes a snapshot and commits; the cleanup deletes them.
/// </summary>
public class SnapshotBenchmarks
{
    private string _path = "";
    private FileBlockDevice _file = null!;
    private Pool _pool = null!;
    private int _taken;

    [GlobalSetup]
    public void Setup()
    {
        _path = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), $"storage-snap-{Guid.NewGuid():N}.img");
        _file = FileBlockDevice.Create(_path, (4L << 30) + (512L << 20));
        _pool = Pool.CreateAsync(_file, new PoolCreateOptions { Name = "snap", BlockSize = 4096 }).GetAwaiter().GetResult();
        _pool.CreateVolumeAsync("v", 4L << 30).GetAwaiter().GetResult();
        using var volume = _pool.OpenVolume("v");
        var data = new byte[1 << 20];
        new Random(3).NextBytes(data);
        for (long offset = 0; offset < volume.Capacity; offset += data.Length)
            volume.WriteAsync(offset, data).AsTask().GetAwaiter().GetResult();
        volume.FlushAsync().AsTask().GetAwaiter().GetResult();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _pool.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _file.Dispose();
        File.Delete(_path);
    }

    [Benchmark]
    public Task CreateSnapshotWith1MMappedBlocks() => _pool.CreateSnapshotAsync("v", $"s{_taken++}");
}

/// <summary>
/// Snapshot deletion: a snapshot that alone holds 64 Ki blocks of 16 KiB (1 GiB, every block overwritten since) is
/// deleted and committed; blocks freed per second is the reclaim rate. Pool on one file in /dev/shm.
/// </summary>
[InvocationCount(1)]
public class SnapshotDeleteBenchmarks
{
    private const long VolumeBytes = 1L << 30;
    private string _path = "";
    private FileBlockDevice _file = null!;
    private Pool _pool = null!;
    private PoolVolume _volume = null!;
    private readonly byte[] _data = new byte[1 << 20];

    [GlobalSetup]
    public void Setup()
    {
        _path = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), $"storage-snapdel-{Guid.NewGuid():N}.img");
        _file = FileBlockDevice.Create(_path, 3 * VolumeBytes);
        _pool = Pool.CreateAsync(_file, new PoolCreateOptions { Name = "snapdel" }).GetAwaiter().GetResult();
        _pool.CreateVolumeAsync("v", VolumeBytes).GetAwaiter().GetResult();
        _volume = _pool.OpenVolume("v");
        new Random(4).NextBytes(_data);
        Overwrite();
    }

    [IterationSetup]
    public void TakeAndOverwrite()
    {
        _pool.CreateSnapshotAsync("v", "doomed").GetAwaiter().GetResult();
        Overwrite();
    }

    private void Overwrite()
    {
        for (long offset = 0; offset < VolumeBytes; offset += _data.Length)
            _volume.WriteAsync(offset, _data).AsTask().GetAwaiter().GetResult();
        _volume.FlushAsync().AsTask().GetAwaiter().GetResult();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _volume.Dispose();
        _pool.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _file.Dispose();
        File.Delete(_path);
    }

    /// <summary>Frees 65 536 blocks.</summary>
    [Benchmark]
    public Task DeleteSnapshotHolding64KiBlocks() => _pool.DeleteSnapshotAsync("v", "doomed");
}
