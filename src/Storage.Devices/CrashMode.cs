namespace Storage.Devices;

/// <summary>What <see cref="FaultInjectingDevice.CrashAsync"/> does with writes that were not yet durable.</summary>
public enum CrashMode
{
    /// <summary>
    /// Power loss with a write cache that kept nothing: every sector holds what it held after the last flush or
    /// force-unit-access write that covered it (or a trim).
    /// </summary>
    DropUnflushed,

    /// <summary>
    /// Power loss part-way through destaging the write cache: each sector with un-flushed writes independently ends
    /// with its durable content or the content of any one of the un-flushed writes to it (uniformly, by the
    /// device's seeded random generator). Sectors, not bytes, are the unit: no sector mixes two writes. So a
    /// multi-sector write may survive in part, in any subset of its sectors, and an older un-flushed write may
    /// survive where a newer one to the same sector is lost.
    /// </summary>
    TearUnflushed,
}
