using System.Globalization;
using System.Runtime.CompilerServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Storage.Devices;
using Storage.Raid;

namespace Storage.Benchmarks;

/// <summary>
/// Arrays over file-backed disks in /dev/shm (64 KiB chunks, 128 MiB per member): sequential full-stripe
/// writes and reads (4 MiB requests), single full-stripe writes and reads (one stripe per request), 4 KiB random
/// writes and reads at queue depth 1 and 32, the same with one member failed ("Degraded…"), and rebuild. Each
/// "Ideal…" method moves the same member bytes (data and parity) with plain positional I/O on the same files and
/// no parity work: the ceiling the array is measured against.
/// </summary>
/// <remarks>
/// The array methods return the array's <see cref="ValueTask"/> itself (queue depth 32: one pooled async method
/// over a reused array of them), so the <c>Allocated</c> column counts what the array allocates, not a benchmark
/// state machine.
/// </remarks>
public class ArrayBenchmarks
{
    private const int Chunk = 64 * 1024;
    private const long MemberSize = 128L << 20;
    private const int SequentialBytes = 4 << 20;
    private const int Small = 4096;
    private const int Depth = 32;

    private string _directory = "";
    private FileBlockDevice[] _files = [];
    private RaidArray _array = null!;
    private byte[] _data = [];
    private byte[][] _small = [];
    private long _next;
    private readonly ValueTask[] _inFlight = new ValueTask[Depth];
    private readonly Random _random = new(1);

    [Params("raid5-4+1", "raid6-8+2")]
    public string Shape { get; set; } = "raid6-8+2";

    /// <summary>Where the write journal lives: "member" (a ring in every member, the default), "device" (a file of its own on the same tmpfs), "off".</summary>
    [Params("member", "device", "off")]
    public string Journal { get; set; } = "member";

    private RaidLevel Level => Shape.StartsWith("raid5", StringComparison.Ordinal) ? RaidLevel.Raid5 : RaidLevel.Raid6;

    private int Members => Level == RaidLevel.Raid5 ? 5 : 10;

    private int Parity => Level == RaidLevel.Raid5 ? 1 : 2;

    [GlobalSetup]
    public void Setup()
    {
        _directory = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), $"storage-bench-{Guid.NewGuid():N}");
        Directory.CreateDirectory(_directory);
        _files = [.. Enumerable.Range(0, Members).Select(i => FileBlockDevice.Create(Path.Combine(_directory, $"disk{i}.img"), MemberSize))];
        var journalDevice = Journal == "device" ? FileBlockDevice.Create(Path.Combine(_directory, "journal.img"), RaidArray.JournalDeviceSize(Members, Chunk)) : null;
        _array = RaidArray.CreateAsync(_files, new ArrayCreateOptions { Level = Level, ChunkSize = Chunk, AssumeZeroed = true, Journal = Journal != "off", JournalDevice = journalDevice, Name = "bench" })
            .GetAwaiter().GetResult();
        _data = new byte[SequentialBytes];
        new Random(2).NextBytes(_data);
        _small = [.. Enumerable.Range(0, Depth).Select(_ => _data.AsSpan(0, Small).ToArray())];
        for (long offset = 0; offset < _array.Capacity; offset += SequentialBytes)
            _array.WriteAsync(offset, _data.AsMemory(0, (int)Math.Min(SequentialBytes, _array.Capacity - offset))).AsTask().GetAwaiter().GetResult();
        _array.FlushAsync().AsTask().GetAwaiter().GetResult();
    }

    /// <summary>The degraded benchmarks run with member 0 failed from the start.</summary>
    [GlobalSetup(Targets = [nameof(DegradedRead), nameof(DegradedFullStripeWrite), nameof(DegradedFullStripeRead), nameof(DegradedRandomWrite4KQd1), nameof(DegradedRandomRead4KQd1)])]
    public void SetupDegraded()
    {
        Setup();
        _array.FailAsync(0).GetAwaiter().GetResult();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _array.StopAsync().GetAwaiter().GetResult();
        Directory.Delete(_directory, recursive: true);
    }

    private long NextSequential()
    {
        long offset = _next;
        _next = (_next + SequentialBytes) % (_array.Capacity - SequentialBytes);
        _next -= _next % SequentialBytes;
        return offset;
    }

    private long RandomSmall(long capacity) => _random.NextInt64(0, capacity / Small) * Small;

    private long RandomStripe() => _random.NextInt64(0, _array.Capacity / _array.Geometry.StripeDataSize) * _array.Geometry.StripeDataSize;

    private ReadOnlyMemory<byte> OneStripe => _data.AsMemory(0, (int)_array.Geometry.StripeDataSize);

    [Benchmark]
    public ValueTask SequentialWrite() => _array.WriteAsync(NextSequential(), _data);

    [Benchmark]
    public ValueTask SequentialRead() => _array.ReadAsync(NextSequential(), _data);

    /// <summary>One whole stripe (k chunks) at a random stripe: parity from the data, no reads.</summary>
    [Benchmark]
    public ValueTask FullStripeWrite() => _array.WriteAsync(RandomStripe(), OneStripe);

    [Benchmark]
    public ValueTask FullStripeRead() => _array.ReadAsync(RandomStripe(), _data.AsMemory(0, (int)_array.Geometry.StripeDataSize));

    [Benchmark]
    public ValueTask RandomWrite4KQd1() => _array.WriteAsync(RandomSmall(_array.Capacity), _small[0]);

    [Benchmark]
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask RandomWrite4KQd32()
    {
        for (int i = 0; i < Depth; i++)
#pragma warning disable CA2012 // each stored ValueTask is awaited exactly once, below
            _inFlight[i] = _array.WriteAsync(RandomSmall(_array.Capacity), _small[i]);
#pragma warning restore CA2012
        for (int i = 0; i < Depth; i++)
            await _inFlight[i];
    }

    [Benchmark]
    public ValueTask RandomRead4KQd1() => _array.ReadAsync(RandomSmall(_array.Capacity), _small[0]);

    [Benchmark]
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask RandomRead4KQd32()
    {
        for (int i = 0; i < Depth; i++)
#pragma warning disable CA2012 // each stored ValueTask is awaited exactly once, below
            _inFlight[i] = _array.ReadAsync(RandomSmall(_array.Capacity), _small[i]);
#pragma warning restore CA2012
        for (int i = 0; i < Depth; i++)
            await _inFlight[i];
    }

    /// <summary>Sequential reads with one member failed: every stripe rebuilds a chunk.</summary>
    [Benchmark]
    public ValueTask DegradedRead() => _array.ReadAsync(NextSequential(), _data);

    /// <summary>One whole stripe with member 0 failed: its row is not written.</summary>
    [Benchmark]
    public ValueTask DegradedFullStripeWrite() => _array.WriteAsync(RandomStripe(), OneStripe);

    /// <summary>One whole stripe with member 0 failed: its chunk is rebuilt from the others.</summary>
    [Benchmark]
    public ValueTask DegradedFullStripeRead() => _array.ReadAsync(RandomStripe(), _data.AsMemory(0, (int)_array.Geometry.StripeDataSize));

    /// <summary>4 KiB writes with member 0 failed: reconstruct-write of every stripe (the missing row is rebuilt first).</summary>
    [Benchmark]
    public ValueTask DegradedRandomWrite4KQd1() => _array.WriteAsync(RandomSmall(_array.Capacity), _small[0]);

    /// <summary>4 KiB reads with member 0 failed: one in n lands on it and is rebuilt from the stripe.</summary>
    [Benchmark]
    public ValueTask DegradedRandomRead4KQd1() => _array.ReadAsync(RandomSmall(_array.Capacity), _small[0]);

    /// <summary>Full rebuild of one member (fail, remove, add back, wait): member bytes rebuilt per second.</summary>
    [Benchmark]
    public async Task Rebuild()
    {
        int role = 1;
        await _array.FailAsync(role);
        var device = await _array.RemoveAsync(role);
        await _array.AddAsync(device, force: true);
        await _array.WaitForRebuildsAsync();
    }

    /// <summary>The member bytes of a 4 MiB full-stripe write (data and parity), written with positional I/O.</summary>
    [Benchmark]
    public async Task IdealSequentialWrite()
    {
        long offset = NextSequential() / (Members - Parity) + (1 << 20);
        int perMember = SequentialBytes / (Members - Parity);
        await Task.WhenAll(_files.Select(f => f.WriteAsync(offset, _data.AsMemory(0, perMember)).AsTask()));
    }

    /// <summary>The member bytes of a 4 MiB read (data only).</summary>
    [Benchmark]
    public async Task IdealSequentialRead()
    {
        long offset = NextSequential() / (Members - Parity) + (1 << 20);
        int perMember = SequentialBytes / (Members - Parity);
        await Task.WhenAll(_files.Take(Members - Parity).Select(f => f.ReadAsync(offset, _data.AsMemory(0, perMember)).AsTask()));
    }

    /// <summary>A 4 KiB random write's minimum member I/O: read old data and parity, write new data and parity.</summary>
    [Benchmark]
    public async Task IdealRandomWrite4KQd1()
    {
        long offset = RandomSmall(MemberSize - (2 << 20)) + (1 << 20);
        var disks = _files.Take(1 + Parity).ToArray();
        await Task.WhenAll(disks.Select(f => f.ReadAsync(offset, _small[0]).AsTask()));
        await Task.WhenAll(disks.Select(f => f.WriteAsync(offset, _small[0]).AsTask()));
    }

    /// <summary>Bytes (user data) and requests one call of each benchmark moves.</summary>
    internal static (long Bytes, int Requests) Work(string method, string shape) => method switch
    {
        nameof(SequentialWrite) or nameof(SequentialRead) or nameof(DegradedRead) or nameof(IdealSequentialWrite) or nameof(IdealSequentialRead) => (SequentialBytes, 1),
        nameof(FullStripeWrite) or nameof(FullStripeRead) or nameof(DegradedFullStripeWrite) or nameof(DegradedFullStripeRead) => ((long)Chunk * (shape.StartsWith("raid5", StringComparison.Ordinal) ? 4 : 8), 1),
        nameof(RandomWrite4KQd1) or nameof(RandomRead4KQd1) or nameof(DegradedRandomWrite4KQd1) or nameof(DegradedRandomRead4KQd1) or nameof(IdealRandomWrite4KQd1) => (Small, 1),
        nameof(RandomWrite4KQd32) or nameof(RandomRead4KQd32) => ((long)Small * Depth, Depth),
        nameof(Rebuild) => (MemberSize - (2 << 20), 1),
        _ => (0, 0),
    };
}

/// <summary>MB/s (10^6 bytes of user data, or of rebuilt member bytes) and requests per second of array benchmarks.</summary>
public sealed class ArrayRateColumn(bool iops) : IColumn
{
    public string Id => nameof(ArrayRateColumn) + iops;
    public string ColumnName => iops ? "IOPS" : "MB/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => iops ? 1 : 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => iops ? "Requests per second" : "User bytes (rebuilt member bytes for Rebuild) per second, 10^6";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var stats = summary[benchmarkCase]?.ResultStatistics;
        var type = benchmarkCase.Descriptor.Type;
        if (stats is null || stats.Mean <= 0 || !Rated(type))
            return "-";
        string method = benchmarkCase.Descriptor.WorkloadMethod.Name;
        var (bytes, requests) = type == typeof(PoolBenchmarks) ? PoolBenchmarks.Work(method)
            : type == typeof(JournalPlacementBenchmarks) ? JournalPlacementBenchmarks.Work(method)
            : ArrayBenchmarks.Work(method, benchmarkCase.Parameters["Shape"] as string ?? "");
        double perSecond = 1e9 / stats.Mean;
        return (iops ? requests * perSecond : bytes * perSecond / 1e6).ToString("0", CultureInfo.InvariantCulture);
    }

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public bool IsAvailable(Summary summary) => summary.BenchmarksCases.Any(c => Rated(c.Descriptor.Type));

    private static bool Rated(Type type) => type == typeof(ArrayBenchmarks) || type == typeof(PoolBenchmarks) || type == typeof(JournalPlacementBenchmarks);
}
