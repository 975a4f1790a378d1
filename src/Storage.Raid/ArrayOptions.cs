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

    /// <summary>Journal slots per member (2 to 1024): half of them may be in flight at once (see JournalRing).</summary>
    public int JournalSlots { get; init; } = 16;
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
}
