namespace Storage.Versioning;

/// <summary>
/// A segment being filled or written: a run of blocks that starts and ends on stripe boundaries, assembled in memory
/// so that it reaches the array as whole stripes. Reads of its blocks are served from <see cref="Buffer"/> until it is
/// on disk.
/// </summary>
internal sealed class Segment(long index, byte[] buffer)
{
    public long Index { get; } = index;

    public byte[] Buffer { get; } = buffer;

    /// <summary>Slots handed out so far (they are filled in order).</summary>
    public int Filled { get; set; }

    /// <summary>Slots already sent to the device by a commit that could not wait for the segment to fill.</summary>
    public int Written { get; set; }

    /// <summary>Writes of this segment's slots still in flight.</summary>
    public int Pending { get; set; }

    /// <summary>True once every slot is handed out and sent.</summary>
    public bool Sealed { get; set; }
}
