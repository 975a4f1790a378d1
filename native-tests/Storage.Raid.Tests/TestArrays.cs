using Storage.Devices;

namespace Storage.Raid.Tests;

/// <summary>Arrays over memory disks wrapped in fault injectors, and the bytes they should hold.</summary>
internal sealed class TestArray
{
    public const int Sector = 512;

    public TestArray(RaidLevel level, int members, int parity, int chunk, long diskBytes, int seed, int spares = 0, int extra = 0)
    {
        Level = level;
        Parity = parity;
        Chunk = chunk;
        Seed = seed;
        SpareCount = spares;
        Disks = [.. Enumerable.Range(0, members + spares + extra).Select(i => new MemoryBlockDevice(diskBytes, Sector, $"mem{i}"))];
        MemberCount = members;
    }

    public RaidLevel Level { get; }

    public int Parity { get; }

    public int Chunk { get; }

    public int Seed { get; }

    public int MemberCount { get; }

    public int SpareCount { get; }

    /// <summary>The durable bytes of every disk; the fault wrappers in front of them change with each (re)assembly.</summary>
    public MemoryBlockDevice[] Disks { get; }

    public FaultInjectingDevice[] Faults { get; private set; } = [];

    public int JournalSlots { get; init; } = 16;

    public ArrayCreateOptions Options(bool journal = true) => new() { Level = Level, ParityCount = Parity, ChunkSize = Chunk, Name = "test", AssumeZeroed = true, Journal = journal, JournalSlots = JournalSlots };

    /// <summary>Called before every read, write, flush and trim of any member (crash triggers).</summary>
    public Action? BeforeCall { get; set; }

    /// <summary>New fault injectors over the disks; the array gets them behind a hook that calls <see cref="BeforeCall"/>.</summary>
    public IBlockDevice[] Wrap(int generation)
    {
        _power = new PowerLine();
        Faults = [.. Disks.Select((d, i) => new FaultInjectingDevice(d, Seed * 1000 + generation * 64 + i, leaveInnerOpen: true))];
        return [.. Faults.Select(f => new HookedDevice(f, this, _power))];
    }

    /// <summary>A new fault injector for one disk only (the others keep theirs), e.g. a disk added to a running array.</summary>
    public IBlockDevice WrapOne(int disk, int generation)
    {
        Faults[disk] = new FaultInjectingDevice(Disks[disk], Seed * 1000 + generation * 64 + disk, leaveInnerOpen: true);
        return new HookedDevice(Faults[disk], this, _power);
    }

    /// <summary>
    /// Power goes out for every disk of the current wrapping at the same instant: first no new call gets through to
    /// any of them, then each drops or tears its un-flushed writes. (Crashing the disks one after another would let
    /// the running array see the first ones die and record it on the others, which no power cut does.)
    /// </summary>
    public async Task PowerCutAsync(CrashMode mode)
    {
        _power.Cut();
        foreach (var fault in Faults)
        {
            if (!fault.IsFailed)
                await fault.CrashAsync(mode);
        }
    }

    private PowerLine _power = new();

    private sealed class PowerLine
    {
        private volatile bool _cut;

        public void Cut() => _cut = true;

        public void Check()
        {
            if (_cut)
                throw new BlockDeviceException("power", 0, 0, "power lost");
        }
    }

    private sealed class HookedDevice(IBlockDevice inner, TestArray owner, PowerLine power) : BlockDevice(inner.Name, inner.Capacity, inner.SectorSize)
    {
        protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
        {
            Before();
            return inner.ReadAsync(offset, buffer, cancellationToken);
        }

        protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess, CancellationToken cancellationToken)
        {
            Before();
            return inner.WriteAsync(offset, buffer, forceUnitAccess, cancellationToken);
        }

        protected override ValueTask FlushCoreAsync(CancellationToken cancellationToken)
        {
            Before();
            return inner.FlushAsync(cancellationToken);
        }

        protected override ValueTask TrimCoreAsync(long offset, long length, CancellationToken cancellationToken)
        {
            Before();
            return inner.TrimAsync(offset, length, cancellationToken);
        }

        private void Before()
        {
            power.Check();
            owner.BeforeCall?.Invoke();
        }

        protected override void Dispose(bool disposing)
        {
            inner.Dispose();
            base.Dispose(disposing);
        }
    }

    public async Task<RaidArray> CreateAsync(int generation = 0, bool journal = true, ArrayRunOptions? run = null)
    {
        var wrapped = Wrap(generation);
        return await RaidArray.CreateAsync(wrapped[..MemberCount], Options(journal), wrapped[MemberCount..(MemberCount + SpareCount)], run ?? Quiet);
    }

    public async Task<RaidArray> AssembleAsync(int generation, IEnumerable<int>? leaveOut = null, ArrayRunOptions? run = null)
    {
        var wrapped = Wrap(generation);
        var skip = leaveOut?.ToHashSet() ?? [];
        return await RaidArray.AssembleAsync([.. wrapped.Where((_, i) => !skip.Contains(i))], run ?? Quiet);
    }

    public static ArrayRunOptions Quiet { get; } = new() { RebuildCheckpointStripes = 4 };
}

internal static class Bytes
{
    public static byte[] Random(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }
}
