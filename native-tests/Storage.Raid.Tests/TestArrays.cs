using Storage.Devices;

namespace Storage.Raid.Tests;

/// <summary>Arrays over memory disks wrapped in fault injectors, and the bytes they should hold.</summary>
internal sealed class TestArray
{
    public const int Sector = 512;

    /// <param name="separateJournal">Keep the journal on one more disk, the last of <see cref="Disks"/> (<see cref="JournalDisk"/>).</param>
    public TestArray(RaidLevel level, int members, int parity, int chunk, long diskBytes, int seed, int spares = 0, int extra = 0, bool separateJournal = false)
    {
        JournalDisk = separateJournal ? members + spares + extra : -1;
        Level = level;
        Parity = parity;
        Chunk = chunk;
        Seed = seed;
        SpareCount = spares;
        Disks = [.. Enumerable.Range(0, members + spares + extra + (separateJournal ? 1 : 0)).Select(i => new MemoryBlockDevice(diskBytes, Sector, i == JournalDisk ? "journal" : $"mem{i}"))];
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

    /// <summary>Index in <see cref="Disks"/> of the separate journal device, or -1.</summary>
    public int JournalDisk { get; }

    /// <summary>Keep a write-intent bitmap (the default of real arrays).</summary>
    public bool Bitmap { get; init; } = true;

    /// <summary>Array bytes per bitmap bit.</summary>
    public long BitmapRegionBytes { get; init; } = 64L << 20;

    public ArrayCreateOptions Options(bool journal = true) => new()
    {
        Level = Level, ParityCount = Parity, ChunkSize = Chunk, Name = "test", AssumeZeroed = true, Journal = journal, JournalSlots = JournalSlots,
        Bitmap = Bitmap, BitmapRegionBytes = BitmapRegionBytes,
    };

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
        var options = JournalDisk >= 0 ? Options(journal) with { JournalDevice = wrapped[JournalDisk] } : Options(journal);
        return await RaidArray.CreateAsync(wrapped[..MemberCount], options, wrapped[MemberCount..(MemberCount + SpareCount)], run ?? Quiet);
    }

    public async Task<RaidArray> AssembleAsync(int generation, IEnumerable<int>? leaveOut = null, ArrayRunOptions? run = null)
    {
        var wrapped = Wrap(generation);
        var skip = leaveOut?.ToHashSet() ?? [];
        return await RaidArray.AssembleAsync([.. wrapped.Where((_, i) => !skip.Contains(i))], run ?? Quiet);
    }

    /// <summary>Small rebuild checkpoints; bitmap regions cleared only when a test asks (no timer).</summary>
    public static ArrayRunOptions Quiet { get; } = new() { RebuildCheckpointStripes = 4, BitmapClearInterval = TimeSpan.Zero };
}

internal static class Bytes
{
    /// <summary>Reproducible pseudo-random bytes (SplitMix64: several GB/s, where a seeded <see cref="System.Random"/> makes ~0.2).</summary>
    public static byte[] Random(int length, int seed)
    {
        var bytes = new byte[length];
        ulong state = (ulong)seed * 0x9E3779B97F4A7C15UL + 0x632BE59BD9B4E019UL;
        var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(bytes.AsSpan(0, length / 8 * 8));
        for (int i = 0; i < words.Length; i++)
            words[i] = Next(ref state);
        for (int i = words.Length * 8; i < length; i++)
            bytes[i] = (byte)Next(ref state);
        return bytes;
    }

    private static ulong Next(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
