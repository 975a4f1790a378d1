namespace Storage.Devices;

/// <summary>
/// A disk: a fixed number of bytes addressed in logical sectors. Offsets and lengths of every call are
/// multiples of <see cref="SectorSize"/> and lie inside <see cref="Capacity"/>; a call that breaks the rule
/// throws <see cref="ArgumentException"/> before touching the disk. Calls may run concurrently; two writes
/// to overlapping ranges in flight at once leave either one's bytes (callers serialise those).
/// A failed read or write throws <see cref="BlockDeviceException"/> naming the device and the range.
/// </summary>
public interface IBlockDevice : IDisposable
{
    /// <summary>Path or description, used in messages.</summary>
    string Name { get; }

    /// <summary>Size in bytes; a multiple of <see cref="SectorSize"/>.</summary>
    long Capacity { get; }

    /// <summary>Logical sector size in bytes (512 or 4096): the unit of every offset and length.</summary>
    int SectorSize { get; }

    /// <summary>Fills <paramref name="buffer"/> with the bytes at <paramref name="offset"/>.</summary>
    ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default);

    /// <summary>
    /// Writes <paramref name="buffer"/> at <paramref name="offset"/>. The bytes are durable after the next
    /// <see cref="FlushAsync"/> completes, or when this call completes if <paramref name="forceUnitAccess"/> is set.
    /// </summary>
    ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess = false, CancellationToken cancellationToken = default);

    /// <summary>Makes every write completed before this call durable.</summary>
    ValueTask FlushAsync(CancellationToken cancellationToken = default);

    /// <summary>Says the range is no longer needed; later reads of it return zeros or the old bytes.</summary>
    ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken = default);
}
