namespace Storage.Devices;

/// <summary>
/// Wraps any <see cref="IBlockDevice"/> and injects the failures of real disks, for crash and recovery tests
/// (after Garnet's SimulatedFlakyDevice). It has the wrapped device's name, capacity and sector size.
/// </summary>
/// <remarks>
/// <para><b>Write cache.</b> The device models a volatile write cache. A write without force-unit-access goes
/// only to an in-memory overlay of un-flushed sectors (nothing reaches <see cref="Inner"/>); reads see the
/// overlay first, so every completed write is visible to later reads. <see cref="IBlockDevice.FlushAsync"/> writes
/// the newest overlay content of every sector to <see cref="Inner"/>, flushes <see cref="Inner"/>, and then
/// forgets those sectors (writes that arrive during the flush stay un-flushed). A force-unit-access write goes
/// straight to <see cref="Inner"/> (with FUA) and supersedes the un-flushed content of its own sectors only; other
/// un-flushed writes stay un-flushed, as with SCSI and NVMe FUA. A trim goes straight to <see cref="Inner"/> (it is
/// durable at once) and discards the un-flushed content of its range. Flushes, FUA writes, trims, bit rot on
/// <see cref="Inner"/> and crashes are serialised with one another; plain reads and writes run concurrently.</para>
/// <para><b>Crash.</b> <see cref="CrashAsync"/> models power loss: the un-flushed sectors are dropped or torn
/// (see <see cref="CrashMode"/>), what survives is written to <see cref="Inner"/> and flushed, and from then on
/// every call throws <see cref="BlockDeviceException"/> ("device crashed") until <see cref="Restart"/>, after which
/// the device reads exactly what <see cref="Inner"/> holds. A test may instead dispose this device and reopen the
/// inner one. A call in flight when the crash happens throws; if it was a FUA write, trim or flush, its data may
/// or may not have reached <see cref="Inner"/>, as on a real disk.</para>
/// <para><b>Other faults</b>, configurable at any time from any thread: read or write errors on byte ranges
/// (<see cref="FailReads"/>, <see cref="FailWrites"/>, until <see cref="ClearFaults"/>) or at random
/// (<see cref="ReadErrorRate"/>, <see cref="WriteErrorRate"/>); flush errors (<see cref="FailFlushes"/>); torn
/// writes (<see cref="TornWriteRate"/>); added latency (<see cref="Latency"/>); bit rot
/// (<see cref="CorruptAtAsync"/>); and a dead disk (<see cref="FailAll"/> until <see cref="Heal"/>). A failed
/// read or write changes nothing. Every injected failure is a <see cref="BlockDeviceException"/> naming the device
/// and range; <see cref="InjectedErrors"/> counts them.</para>
/// <para><b>Determinism.</b> Every random choice (error rates, torn subsets, crash tearing, the bit of bit rot)
/// comes from one <see cref="Random"/> seeded at construction, so a test that issues its calls one at a time
/// replays exactly from its seed.</para>
/// </remarks>
public sealed partial class FaultInjectingDevice : BlockDevice
{
    private readonly IBlockDevice _inner;
    private readonly bool _leaveInnerOpen;
    private readonly Random _random;

    // Guards every field below, the overlay and _random. Never held across an await.
    private readonly Lock _lock = new();

    // Serialises everything that writes to the inner device: flush, FUA write, trim, crash, bit rot.
    private readonly SemaphoreSlim _innerWrites = new(1, 1);

    private readonly List<(long Start, long End)> _badReads = [];
    private readonly List<(long Start, long End)> _badWrites = [];
    private double _readErrorRate;
    private double _writeErrorRate;
    private double _tornWriteRate;
    private bool _failFlushes;
    private long _latencyTicks;
    private bool _failed;
    private bool _crashed;
    private long _crashes;

    private long _reads;
    private long _writes;
    private long _bytesRead;
    private long _bytesWritten;
    private long _flushes;
    private long _trims;
    private long _injectedErrors;

    /// <summary>Wraps <paramref name="inner"/>; no fault is active until one is configured.</summary>
    /// <param name="inner">The device that holds the durable bytes.</param>
    /// <param name="seed">Seed of every random choice this device makes.</param>
    /// <param name="leaveInnerOpen">Keep <paramref name="inner"/> open when this device is disposed.</param>
    /// <param name="name">Name in messages; the inner device's name by default.</param>
    public FaultInjectingDevice(IBlockDevice inner, int seed, bool leaveInnerOpen = false, string? name = null)
        : base(name ?? NotNull(inner).Name, NotNull(inner).Capacity, inner.SectorSize)
    {
        _inner = inner;
        _leaveInnerOpen = leaveInnerOpen;
        _random = new Random(seed);
    }

    /// <summary>The wrapped device: what survives a crash.</summary>
    public IBlockDevice Inner => _inner;

    /// <summary>Read calls so far (each call counts once, failed ones too).</summary>
    public long Reads => Interlocked.Read(ref _reads);

    /// <summary>Write calls so far (each call counts once, failed ones too).</summary>
    public long Writes => Interlocked.Read(ref _writes);

    /// <summary>Bytes asked for by read calls so far.</summary>
    public long BytesRead => Interlocked.Read(ref _bytesRead);

    /// <summary>Bytes passed to write calls so far.</summary>
    public long BytesWritten => Interlocked.Read(ref _bytesWritten);

    /// <summary>Flush calls so far (failed ones too).</summary>
    public long Flushes => Interlocked.Read(ref _flushes);

    /// <summary>Trim calls so far (failed ones too).</summary>
    public long Trims => Interlocked.Read(ref _trims);

    /// <summary>Calls this device failed on purpose (configured faults, dead disk, crash).</summary>
    public long InjectedErrors => Interlocked.Read(ref _injectedErrors);

    /// <summary>Sectors holding writes that a crash would drop or tear.</summary>
    public int UnflushedSectors
    {
        get
        {
            lock (_lock)
                return _unflushed.Count;
        }
    }

    /// <summary>Sets every counter to zero.</summary>
    public void ResetCounters()
    {
        Interlocked.Exchange(ref _reads, 0);
        Interlocked.Exchange(ref _writes, 0);
        Interlocked.Exchange(ref _bytesRead, 0);
        Interlocked.Exchange(ref _bytesWritten, 0);
        Interlocked.Exchange(ref _flushes, 0);
        Interlocked.Exchange(ref _trims, 0);
        Interlocked.Exchange(ref _injectedErrors, 0);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _innerWrites.Dispose();
            if (!_leaveInnerOpen)
                _inner.Dispose();
        }
        base.Dispose(disposing);
    }

    private static IBlockDevice NotNull(IBlockDevice inner)
    {
        ArgumentNullException.ThrowIfNull(inner);
        return inner;
    }
}
