namespace Storage.Devices.Tests;

/// <summary>One device of a given kind for the contract tests, with what it takes to reopen and clean it up.</summary>
internal sealed class TestDisk : IDisposable
{
    private readonly Func<IBlockDevice>? _reopen;
    private readonly IDisposable? _resources;

    private TestDisk(string kind, IBlockDevice device, Func<IBlockDevice>? reopen, IDisposable? resources)
    {
        Kind = kind;
        Device = device;
        _reopen = reopen;
        _resources = resources;
    }

    private static readonly (string Kind, int SectorSize)[] AllKinds =
    [
        ("memory", 512), ("memory", 4096),
        ("file", 512), ("file", 4096),
        ("file+direct", 512), ("file+direct", 4096),
        ("raw-loop", 512), ("raw-loop", 4096),
        ("fault", 512), ("fault", 4096),
    ];

    /// <summary>Every kind the contract covers, with both sector sizes.</summary>
    public static TheoryData<string, int> Kinds => new(AllKinds);

    /// <summary>The kinds whose content outlives the device object (all but memory).</summary>
    public static TheoryData<string, int> PersistentKinds => new(AllKinds.Where(k => k.Kind != "memory"));

    public string Kind { get; }

    public IBlockDevice Device { get; private set; }

    public const long DefaultCapacity = 4 << 20;

    public static TestDisk Create(string kind, int sectorSize, long capacity = DefaultCapacity)
    {
        switch (kind)
        {
            case "memory":
                return new TestDisk(kind, new MemoryBlockDevice(capacity, sectorSize), null, null);
            case "file" or "file+direct":
            {
                var directory = new TempDirectory();
                string path = directory.File("disk.img");
                bool direct = kind == "file+direct";
                return new TestDisk(kind, FileBlockDevice.Create(path, capacity, sectorSize, directIo: direct),
                    () => FileBlockDevice.Open(path, directIo: direct, sectorSize: sectorSize), directory);
            }
            case "raw-loop":
            {
                var loop = LoopDevice.Attach(capacity, sectorSize);
                try
                {
                    return new TestDisk(kind, RawBlockDevice.Open(loop.Path), () => RawBlockDevice.Open(loop.Path), loop);
                }
                catch
                {
                    loop.Dispose();
                    throw;
                }
            }
            case "fault":
            {
                var directory = new TempDirectory();
                string path = directory.File("disk.img");
                return new TestDisk(kind, new FaultInjectingDevice(FileBlockDevice.Create(path, capacity, sectorSize), seed: 7),
                    () => new FaultInjectingDevice(FileBlockDevice.Open(path, sectorSize: sectorSize), seed: 7), directory);
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, null);
        }
    }

    /// <summary>Closes the device and opens the same disk again.</summary>
    public IBlockDevice Reopen()
    {
        Assert.NotNull(_reopen);
        Device.Dispose();
        Device = _reopen();
        return Device;
    }

    public void Dispose()
    {
        Device.Dispose();
        _resources?.Dispose();
    }
}
