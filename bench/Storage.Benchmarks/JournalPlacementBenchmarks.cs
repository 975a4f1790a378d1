using BenchmarkDotNet.Attributes;
using Storage.Devices;
using Storage.Raid;

namespace Storage.Benchmarks;

/// <summary>
/// Where the write journal lives, on RAID-6 8+2 (64 KiB chunks) whose members are files on a real disk
/// (<c>STORAGE_BENCH_DISK_DIR</c>, default /var/tmp) and whose separate journal device is a file in /dev/shm: the md
/// setup of slow members and a fast journal. One call writes 64 MiB sequentially (4 MiB requests, four in flight)
/// and flushes. <see cref="IdealWriteAndFlush"/> writes the same member bytes (data and parity) with positional I/O
/// and flushes every file: the ceiling.
/// </summary>
public class JournalPlacementBenchmarks
{
    private const int Chunk = 64 * 1024;
    private const int Members = 10;
    private const int Parity = 2;
    private const long MemberSize = 256L << 20;
    private const int Request = 4 << 20;
    private const int Requests = 16;
    private const int Depth = 4;

    private string _directory = "";
    private string _journalPath = "";
    private FileBlockDevice[] _files = [];
    private RaidArray _array = null!;
    private byte[] _data = [];
    private long _next;

    /// <summary>"member" (16 slots in every member), "device" (the default 256 slots on the tmpfs device), "device-16", "off".</summary>
    [Params("member", "device", "device-16", "off")]
    public string Journal { get; set; } = "member";

    [GlobalSetup]
    public void Setup()
    {
        string root = Environment.GetEnvironmentVariable("STORAGE_BENCH_DISK_DIR") ?? "/var/tmp";
        _directory = Path.Combine(root, $"storage-bench-{Guid.NewGuid():N}");
        Directory.CreateDirectory(_directory);
        _files = [.. Enumerable.Range(0, Members).Select(i => FileBlockDevice.Create(Path.Combine(_directory, $"disk{i}.img"), MemberSize))];
        int slots = Journal == "device" ? ArrayCreateOptions.DefaultJournalDeviceSlots : ArrayCreateOptions.DefaultJournalSlots;
        _journalPath = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), $"storage-bench-journal-{Guid.NewGuid():N}.img");
        var journal = Journal.StartsWith("device", StringComparison.Ordinal) ? FileBlockDevice.Create(_journalPath, RaidArray.JournalDeviceSize(Members, Chunk, slots)) : null;
        _array = RaidArray.CreateAsync(_files, new ArrayCreateOptions
        {
            Level = RaidLevel.Raid6, ChunkSize = Chunk, AssumeZeroed = true, Name = "bench",
            Journal = Journal != "off", JournalDevice = journal, JournalSlots = slots,
        }).GetAwaiter().GetResult();
        _data = new byte[Request];
        new Random(2).NextBytes(_data);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _array.StopAsync().GetAwaiter().GetResult();
        Directory.Delete(_directory, recursive: true);
        File.Delete(_journalPath);
    }

    private long NextOffset(long capacity)
    {
        long offset = _next;
        _next = (_next + Request) % (capacity / Request * Request);
        return offset;
    }

    [Benchmark]
    public async Task WriteAndFlush()
    {
        var inFlight = new Task[Depth];
        for (int i = 0; i < Requests; i++)
        {
            if (inFlight[i % Depth] is { } previous)
                await previous;
            inFlight[i % Depth] = _array.WriteAsync(NextOffset(_array.Capacity), _data).AsTask();
        }
        await Task.WhenAll(inFlight);
        await _array.FlushAsync();
    }

    [Benchmark]
    public async Task IdealWriteAndFlush()
    {
        int perMember = Request / (Members - Parity);
        for (int i = 0; i < Requests; i += Depth)
        {
            var writes = new List<Task>();
            for (int j = 0; j < Depth; j++)
            {
                long offset = (1 << 20) + NextOffset((MemberSize - (2 << 20)) * (Members - Parity)) / (Members - Parity);
                writes.AddRange(_files.Select(f => f.WriteAsync(offset, _data.AsMemory(0, perMember)).AsTask()));
            }
            await Task.WhenAll(writes);
        }
        await Task.WhenAll(_files.Select(f => f.FlushAsync().AsTask()));
    }

    internal static (long Bytes, int Requests) Work(string method) => method is nameof(WriteAndFlush) or nameof(IdealWriteAndFlush) ? ((long)Request * Requests, Requests) : (0, 0);
}
