namespace Storage.Metadata;

/// <summary>One RAID array of a pool and the devices that make it up.</summary>
/// <param name="Id">The array id, unique in its pool.</param>
/// <param name="Level">The layout, e.g. "raid6" or "8+2".</param>
/// <param name="Members">Device names or paths, in array order.</param>
public sealed record ArrayRecord(int Id, string Level, IReadOnlyList<string> Members);

/// <summary>A storage pool: arrays whose capacity volumes are carved from.</summary>
/// <param name="Name">The pool name.</param>
/// <param name="Arrays">Its arrays.</param>
public sealed record PoolRecord(string Name, IReadOnlyList<ArrayRecord> Arrays);

/// <summary>A mapped range of a volume: <paramref name="Length"/> bytes at <paramref name="Offset"/> live on
/// array <paramref name="ArrayId"/> at <paramref name="Physical"/>.</summary>
public sealed record ExtentRecord(long Offset, long Length, int ArrayId, long Physical);

/// <summary>A volume of a pool and its mapped extents (ordered by offset, non-overlapping).</summary>
public sealed record VolumeRecord(string Name, string Pool, long SizeBytes, IReadOnlyList<ExtentRecord> Extents);

/// <summary>A point-in-time copy of a volume's map.</summary>
public sealed record SnapshotRecord(string Volume, string Name, long SizeBytes, IReadOnlyList<ExtentRecord> Extents, long Revision);

/// <summary>The state of a two-phase-commit transaction.</summary>
public enum TransactionState : byte
{
    /// <summary>Begun; participants are preparing. The coordinator may still decide either way.</summary>
    Pending = 0,

    /// <summary>Decided commit; final.</summary>
    Committed = 1,

    /// <summary>Decided abort; final.</summary>
    Aborted = 2,
}

/// <summary>A two-phase-commit transaction record: its participants and its (eventually final) decision.</summary>
public sealed record TransactionRecord(string Id, IReadOnlyList<string> Participants, TransactionState State)
{
    /// <summary>
    /// The catalogue changes the transaction makes if it commits, applied with the commit decision in the same log
    /// entry (all or none); a recovering participant reads here what was intended.
    /// </summary>
    public IReadOnlyList<MetadataCommand> Changes { get; init; } = [];
}
