namespace Storage.Metadata;

/// <summary>A command of the metadata state machine. Each is applied atomically, in log order, on every replica.</summary>
public abstract record MetadataCommand;

/// <summary>Writes <paramref name="Value"/> at <paramref name="Key"/> if its version is
/// <paramref name="ExpectedVersion"/> (compare-and-set): -1 means any, 0 means the key must not exist.</summary>
public sealed record PutCommand(string Key, ReadOnlyMemory<byte> Value, long ExpectedVersion = -1) : MetadataCommand;

/// <summary>Deletes <paramref name="Key"/> if its version is <paramref name="ExpectedVersion"/> (-1: any).</summary>
public sealed record DeleteCommand(string Key, long ExpectedVersion = -1) : MetadataCommand;

/// <summary>A read that goes through the log (used when no lease read is possible); changes nothing.</summary>
public sealed record ReadCommand(string Key) : MetadataCommand;

/// <summary>Creates a pool from arrays whose devices appear once across the pool.</summary>
public sealed record CreatePoolCommand(string Name, IReadOnlyList<ArrayRecord> Arrays) : MetadataCommand;

/// <summary>Adds a device to an array of a pool (a spare or a grown array).</summary>
public sealed record AddArrayMemberCommand(string Pool, int ArrayId, string Device) : MetadataCommand;

/// <summary>Removes a device from an array of a pool.</summary>
public sealed record RemoveArrayMemberCommand(string Pool, int ArrayId, string Device) : MetadataCommand;

/// <summary>Deletes a pool no volume uses.</summary>
public sealed record DeletePoolCommand(string Name) : MetadataCommand;

/// <summary>Creates a volume of <paramref name="SizeBytes"/> in a pool.</summary>
public sealed record CreateVolumeCommand(string Name, string Pool, long SizeBytes) : MetadataCommand;

/// <summary>Resizes a volume (never below its highest mapped byte).</summary>
public sealed record ResizeVolumeCommand(string Name, long SizeBytes) : MetadataCommand;

/// <summary>Deletes a volume that has no snapshots.</summary>
public sealed record DeleteVolumeCommand(string Name) : MetadataCommand;

/// <summary>Maps an extent of a volume onto an array of its pool; it must not overlap a mapped one.</summary>
public sealed record MapExtentCommand(string Volume, ExtentRecord Extent) : MetadataCommand;

/// <summary>Unmaps the extent of a volume that starts at <paramref name="Offset"/>.</summary>
public sealed record UnmapExtentCommand(string Volume, long Offset) : MetadataCommand;

/// <summary>Snapshots a volume's current map under a new name.</summary>
public sealed record CreateSnapshotCommand(string Volume, string Name) : MetadataCommand;

/// <summary>Deletes a snapshot.</summary>
public sealed record DeleteSnapshotCommand(string Volume, string Name) : MetadataCommand;

/// <summary>Records a new two-phase-commit transaction as pending.</summary>
public sealed record BeginTransactionCommand(string Id, IReadOnlyList<string> Participants) : MetadataCommand
{
    /// <summary>
    /// Catalogue commands (no reads, no transaction commands) that the commit decision applies atomically, in order, in
    /// the same log entry; checked when the commit is decided.
    /// </summary>
    public IReadOnlyList<MetadataCommand> Changes { get; init; } = [];
}

/// <summary>Decides a pending transaction. A decision is final: deciding the same way again succeeds,
/// deciding the other way fails. Committing applies the transaction's changes with it, all or none: when one of them
/// fails, nothing changes, the transaction stays pending and the result says which change failed.</summary>
public sealed record DecideTransactionCommand(string Id, bool Commit) : MetadataCommand;

/// <summary>Forgets a decided transaction once every participant has acted on the decision.</summary>
public sealed record ForgetTransactionCommand(string Id) : MetadataCommand;

/// <summary>How a command ended.</summary>
public enum ResultCode : byte
{
    /// <summary>Applied.</summary>
    Ok = 0,

    /// <summary>Something it refers to does not exist.</summary>
    NotFound = 1,

    /// <summary>What it would create exists.</summary>
    AlreadyExists = 2,

    /// <summary>A compare-and-set found another version.</summary>
    VersionMismatch = 3,

    /// <summary>It breaks a rule of the model (overlap, in use, decision already taken the other way...).</summary>
    Conflict = 4,

    /// <summary>Malformed arguments.</summary>
    Invalid = 5,
}

/// <summary>The outcome of a command or read.</summary>
/// <param name="Code">How it ended.</param>
/// <param name="Message">Why, when not <see cref="ResultCode.Ok"/>.</param>
/// <param name="Version">The key's version after the command (0: absent).</param>
/// <param name="Revision">The store's revision after the command.</param>
/// <param name="Value">Reads: the value.</param>
public sealed record CommandResult(ResultCode Code, string? Message, long Version, long Revision, ReadOnlyMemory<byte> Value)
{
    /// <summary>Whether it was applied.</summary>
    public bool IsOk => Code == ResultCode.Ok;
}

/// <summary>What a watch reports: a key changed (or was deleted, <see cref="Deleted"/>) at a revision.</summary>
public sealed record WatchEvent(string Key, bool Deleted, long Version, long Revision, ReadOnlyMemory<byte> Value);

/// <summary>Thrown at a replica that is not the leader; <see cref="LeaderId"/> is its best guess (-1: unknown).</summary>
public sealed class NotLeaderException(int leaderId) : Exception($"Not the leader; try replica {leaderId}.")
{
    /// <summary>The leader this replica believes in, or -1.</summary>
    public int LeaderId { get; } = leaderId;
}
