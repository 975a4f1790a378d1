namespace Storage.Raid;

/// <summary>The state of one role (slot) in an array, as every superblock records it.</summary>
public enum MemberState
{
    /// <summary>In sync: reads and writes use it.</summary>
    Active = 0,

    /// <summary>Being rebuilt: stripes below the checkpoint are in sync, the rest are being written back.</summary>
    Rebuilding = 1,

    /// <summary>Failed: not read or written until replaced.</summary>
    Faulty = 2,

    /// <summary>No member holds this role.</summary>
    Missing = 3,
}

/// <summary>One role of the array as the superblock records it.</summary>
/// <param name="MemberId">
/// The member (disk) in the role. For <see cref="MemberState.Missing"/>: the member that left it (absent at assembly or
/// removed), so that it can be re-added from the write-intent bitmap when it comes back; empty when none is known.
/// </param>
/// <param name="State">Its state.</param>
/// <param name="RebuildCheckpoint">For <see cref="MemberState.Rebuilding"/>: stripes below this are in sync.</param>
public readonly record struct RoleRecord(Guid MemberId, MemberState State, long RebuildCheckpoint)
{
    /// <summary>
    /// For <see cref="MemberState.Rebuilding"/>: a re-added member that missed only the writes the write-intent bitmap
    /// marks; the rebuild rewrites the marked regions only.
    /// </summary>
    public bool ResyncFromBitmap { get; init; }
}
