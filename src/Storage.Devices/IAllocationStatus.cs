namespace Storage.Devices;

/// <summary>What a range of a device holds, as NBD's <c>base:allocation</c> context describes it.</summary>
[Flags]
public enum AllocationState
{
    /// <summary>Space is allocated and the bytes may be anything.</summary>
    Data = 0,

    /// <summary>No space is allocated (NBD_STATE_HOLE); writing here may fail for lack of space.</summary>
    Hole = 1,

    /// <summary>The range reads as zeros (NBD_STATE_ZERO).</summary>
    Zero = 2,
}

/// <summary>One run of bytes in the same <see cref="AllocationState"/>.</summary>
/// <param name="Length">Bytes in the run; a multiple of the device's sector size.</param>
/// <param name="State">What the run holds.</param>
public readonly record struct AllocationExtent(long Length, AllocationState State);

/// <summary>
/// A device that can say which of its ranges hold data and which are holes (a sparse file, a thin volume). Callers
/// that copy or map a device use it to skip what reads as zeros.
/// </summary>
public interface IAllocationStatus
{
    /// <summary>
    /// Describes the bytes from <paramref name="offset"/> onwards as consecutive extents, the first starting at
    /// <paramref name="offset"/>. The extents cover at least one sector and at most <paramref name="length"/> bytes
    /// (they may stop early: callers ask again for the rest). Offset and length follow the rules of
    /// <see cref="IBlockDevice"/>. A hole is always reported with <see cref="AllocationState.Zero"/> as well unless
    /// its bytes are not known to read as zeros.
    /// </summary>
    /// <exception cref="ArgumentException">The range is not sector-aligned, empty or outside the device.</exception>
    /// <exception cref="BlockDeviceException">The device could not find out.</exception>
    ValueTask<IReadOnlyList<AllocationExtent>> GetAllocationAsync(long offset, long length, CancellationToken cancellationToken = default);
}
