namespace Storage.Versioning;

/// <summary>How <see cref="Pool.CreateAsync"/> formats a device.</summary>
public sealed record PoolCreateOptions
{
    /// <summary>
    /// The default block: 16 KiB. Small enough that a 4 KiB write rewrites only 16 KiB and a block read stays on the
    /// caller's thread in the device layer; large enough that the map costs 0.07 % of the data on disk and about
    /// 1 GiB of memory per TiB mapped. See docs/pools.md.
    /// </summary>
    public const int DefaultBlockSize = 16 * 1024;

    /// <summary>The smallest block size.</summary>
    public const int MinBlockSize = 4 * 1024;

    /// <summary>The largest block size.</summary>
    public const int MaxBlockSize = 1024 * 1024;

    /// <summary>Name shown in status and used in export names; letters, digits, '.', '_' and '-'.</summary>
    public required string Name { get; init; }

    /// <summary>The unit of allocation, checksums and versions: a power of two from 4 KiB to 1 MiB.</summary>
    public int BlockSize { get; init; } = DefaultBlockSize;

    /// <summary>Format even a device that holds data or another pool.</summary>
    public bool Force { get; init; }
}

/// <summary>How an open pool behaves.</summary>
public sealed record PoolOpenOptions
{
    /// <summary>Commit buffered writes at least this often even without a flush (0 = only on flush).</summary>
    public TimeSpan CommitInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Log lines (self-heal repairs, replay).</summary>
    public Action<string>? Log { get; init; }
}

/// <summary>A pool's size, use and health.</summary>
/// <remarks>
/// <c>CleanedSegments</c>: segments the cleaner emptied; <c>JournalledBlockWrites</c>: blocks written into partly used
/// stripes through the array's journal because no fresh segment could be made (a pool mostly full of live data).
/// </remarks>
public sealed record PoolStatus(
    string Name, ulong Id, string Device, int BlockSize, int SegmentSize, long TotalBytes, long UsedBytes,
    long PendingFreeBytes, long FreeBytes, int Volumes, int Snapshots, long Transaction, long Repairs,
    long ChecksumErrors, long Unrecoverable, long FreshSegments, double LogFill, bool ParityProtected,
    long CleanedSegments, long JournalledBlockWrites);

/// <summary>A volume as <see cref="Pool.ListVolumes"/> shows it.</summary>
/// <param name="Name">The volume's name (its NBD export name).</param>
/// <param name="Size">Virtual size in bytes.</param>
/// <param name="MappedBytes">Bytes the volume's head maps itself (not counting its snapshots or origin).</param>
/// <param name="Snapshots">How many snapshots it has.</param>
/// <param name="UsedBytes">Blocks the volume and its snapshots hold, in bytes (deleting it frees this).</param>
/// <param name="Origin">For a clone, <c>VOLUME@SNAPSHOT</c> it was cloned from.</param>
public sealed record VolumeInfo(string Name, long Size, long UsedBytes, long MappedBytes, int Snapshots, string? Origin);

/// <summary>A snapshot as <see cref="Pool.ListSnapshots"/> shows it.</summary>
/// <param name="Volume">The volume it belongs to.</param>
/// <param name="Name">Its name.</param>
/// <param name="Version">The transaction group it was taken at.</param>
/// <param name="Size">The volume's size when it was taken.</param>
/// <param name="Created">When it was taken (on the pool it was first taken in).</param>
/// <param name="Clones">Volumes cloned from it (it cannot be deleted while they exist).</param>
/// <param name="ReferencedBytes">Bytes of blocks the snapshot sees that the volume itself holds (not its origin's).</param>
/// <param name="UniqueBytes">Bytes that deleting this snapshot would free.</param>
public sealed record SnapshotInfo(string Volume, string Name, long Version, long Size, DateTimeOffset Created, long ReferencedBytes, long UniqueBytes, int Clones)
{
    /// <summary><c>VOLUME@SNAPSHOT</c>: its NBD export name.</summary>
    public string FullName => $"{Volume}@{Name}";
}

/// <summary>What <see cref="Pool.ScrubAsync"/> found.</summary>
public sealed record PoolScrubResult(long BlocksChecked, long BytesChecked, long Repaired, long Unrecoverable, IReadOnlyList<string> Errors);

/// <summary>What a send or receive moved.</summary>
public sealed record TransferResult(string Snapshot, string? Base, long Blocks, long ZeroBlocks, long Bytes);

/// <summary>Progress of long work: units done out of a total (bytes for send, receive and scrub).</summary>
public readonly record struct PoolProgress(long Done, long Total);
