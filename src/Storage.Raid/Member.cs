using Storage.Devices;

namespace Storage.Raid;

/// <summary>A disk in an array: its device, identity and (for role holders) state. Mutated under the array's state lock.</summary>
internal sealed class Member(IBlockDevice device, Guid id)
{
    public IBlockDevice Device { get; } = device;

    public Guid Id { get; } = id;

    public MemberState State { get; set; } = MemberState.Active;

    /// <summary>Stripes below this are in sync while <see cref="State"/> is <see cref="MemberState.Rebuilding"/>.</summary>
    public long RebuildCheckpoint { get; set; }

    /// <summary>A re-added member: its rebuild rewrites only the regions the write-intent bitmap marks.</summary>
    public bool ResyncFromBitmap { get; set; }

    public int ReadErrors;

    public bool Writable => State is MemberState.Active or MemberState.Rebuilding;

    public bool ReadableAt(long stripe) => State == MemberState.Active || (State == MemberState.Rebuilding && stripe < RebuildCheckpoint);
}
