using Storage.Devices;
using Storage.Parity;

namespace Storage.Raid;

/// <summary>What <see cref="RaidArray.CreateAsync"/> builds.</summary>
public sealed record ArrayCreateOptions
{
    /// <summary>Level.</summary>
    public required RaidLevel Level { get; init; }

    /// <summary>Parity chunks per stripe for <see cref="RaidLevel.ReedSolomon"/>; ignored otherwise.</summary>
    public int ParityCount { get; init; }

    /// <summary>Chunk size in bytes (power of two, 4 KiB to 16 MiB). Default 64 KiB.</summary>
    public int ChunkSize { get; init; } = 64 * 1024;

    /// <summary>Name recorded in the superblocks.</summary>
    public string Name { get; init; } = "array";

    /// <summary>Overwrite disks that carry a foreign, newer or other array's superblock, or unknown data.</summary>
    public bool Force { get; init; }

    /// <summary>
    /// Skip the initial parity computation because every member's data area reads as zeros (fresh sparse
    /// files, trimmed disks): zeros are consistent parity for every level. Otherwise creation computes parity.
    /// </summary>
    public bool AssumeZeroed { get; init; }

    /// <summary>
    /// Journal every stripe update before writing it in place (closes the write hole; costs one extra write
    /// of the changed chunks and a flush per update). Off is faster and documented as unsafe after a crash
    /// followed by a member failure.
    /// </summary>
    public bool Journal { get; init; } = true;

    /// <summary>
    /// Journal slots (2 to 1024): half of them may be in flight at once, and a slot is reused only after its record's
    /// stripe is flushed home (see JournalRing). Default <see cref="DefaultJournalSlots"/> in the members (each costs
    /// every member a chunk), <see cref="DefaultJournalDeviceSlots"/> on a journal device, where a longer ring means
    /// fewer waits for the members' flushes.
    /// </summary>
    public int? JournalSlots { get; init; }

    /// <summary>Journal slots in every member unless <see cref="JournalSlots"/> says otherwise.</summary>
    public const int DefaultJournalSlots = 16;

    /// <summary>Journal slots on a separate journal device unless <see cref="JournalSlots"/> says otherwise.</summary>
    public const int DefaultJournalDeviceSlots = 256;

    /// <summary>
    /// Keep a write-intent bitmap on every member (md's <c>--bitmap=internal</c>): a region is marked durably before
    /// it is written and cleared once idle, so an unclean stop without the journal resyncs only marked regions, and
    /// a member that was briefly missing comes back with only those regions rebuilt. Costs one small write to every
    /// member the first time an idle region is written. Only for levels with redundancy.
    /// </summary>
    public bool Bitmap { get; init; } = true;

    /// <summary>Array bytes one bitmap bit covers, rounded to whole stripes (default 64 MiB; raised so the bitmap stays within 32 KiB).</summary>
    public long BitmapRegionBytes { get; init; } = 64L << 20;

    internal int SlotsToUse => JournalSlots ?? (JournalDevice is null ? DefaultJournalSlots : DefaultJournalDeviceSlots);

    /// <summary>
    /// Keep the journal on this device (a fast one: NVMe, a file on tmpfs for tests) instead of in every member
    /// (md's <c>--write-journal</c>). It needs <see cref="RaidArray.JournalDeviceSize"/> bytes, gets a superblock of its
    /// own and must be given with the members at every assembly. Journalled writes then cost the members no
    /// second write, and a journal write waits for a flush of this device only. The array takes ownership of it.
    /// </summary>
    public IBlockDevice? JournalDevice { get; init; }
}

/// <summary>How a running array behaves.</summary>
public sealed record ArrayRunOptions
{
    /// <summary>Kernel set for parity; the CPU's best when null.</summary>
    public KernelSet? Kernels { get; init; }

    /// <summary>Start rebuilding onto a spare as soon as a role is missing or faulty.</summary>
    public bool AutoRebuild { get; init; } = true;

    /// <summary>Rebuild speed limit in bytes per second written to the new member; 0 = unlimited.</summary>
    public long RebuildBytesPerSecond { get; init; }

    /// <summary>Stripes between rebuild checkpoints persisted in the superblocks.</summary>
    public int RebuildCheckpointStripes { get; init; } = 256;

    /// <summary>Read errors a member may return (each repaired from parity) before it is failed.</summary>
    public int MaxReadErrors { get; init; } = 32;

    /// <summary>
    /// Assemble an array whose separate journal device is lost for good: the array then runs without a journal (written
    /// to its superblocks), and after an unclean stop the regions the bitmap marks (every stripe without a bitmap) are
    /// resynced. Stripe updates the lost journal held that had not reached the members are lost with it.
    /// </summary>
    public bool AssembleWithoutJournalDevice { get; init; }

    /// <summary>
    /// How often idle bitmap regions are cleared (after a flush of every member); <see cref="TimeSpan.Zero"/> leaves
    /// them to <see cref="RaidArray.ClearIdleBitmapRegionsAsync"/> and the clean stop.
    /// </summary>
    public TimeSpan BitmapClearInterval { get; init; } = TimeSpan.FromSeconds(5);
}
