namespace Storage.Devices;

/// <summary>
/// Base for devices: checks every range against the sector size and capacity, then calls the
/// <c>…Core</c> methods with valid arguments only, and tracks disposal.
/// </summary>
public abstract class BlockDevice : IBlockDevice
{
    private int _disposed;

    /// <summary>Sets the geometry every call is checked against.</summary>
    protected BlockDevice(string name, long capacity, int sectorSize)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (sectorSize is not (512 or 4096))
            throw new ArgumentOutOfRangeException(nameof(sectorSize), sectorSize, "Sector size must be 512 or 4096 bytes.");
        ArgumentOutOfRangeException.ThrowIfNegative(capacity);
        if (capacity % sectorSize != 0)
            throw new ArgumentException($"{name}: capacity {capacity} is not a multiple of the {sectorSize}-byte sector.", nameof(capacity));
        Name = name;
        Capacity = capacity;
        SectorSize = sectorSize;
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public long Capacity { get; }

    /// <inheritdoc />
    public int SectorSize { get; }

    /// <summary>True after <see cref="Dispose()"/>.</summary>
    protected bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <inheritdoc />
    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, buffer.Length);
        return buffer.IsEmpty ? ValueTask.CompletedTask : ReadCoreAsync(offset, buffer, cancellationToken);
    }

    /// <inheritdoc />
    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess = false, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, buffer.Length);
        return buffer.IsEmpty ? ValueTask.CompletedTask : WriteCoreAsync(offset, buffer, forceUnitAccess, cancellationToken);
    }

    /// <inheritdoc />
    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        return FlushCoreAsync(cancellationToken);
    }

    /// <inheritdoc />
    public ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, length);
        return length == 0 ? ValueTask.CompletedTask : TrimCoreAsync(offset, length, cancellationToken);
    }

    /// <summary>Reads a valid, non-empty range.</summary>
    protected abstract ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken);

    /// <summary>Writes a valid, non-empty range.</summary>
    protected abstract ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess, CancellationToken cancellationToken);

    /// <summary>Makes completed writes durable.</summary>
    protected abstract ValueTask FlushCoreAsync(CancellationToken cancellationToken);

    /// <summary>Discards a valid, non-empty range; the default does nothing (reads return the old bytes).</summary>
    protected virtual ValueTask TrimCoreAsync(long offset, long length, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <summary>Throws unless [offset, offset + length) is sector-aligned and inside the device.</summary>
    protected void CheckRange(long offset, long length)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (offset < 0 || length < 0 || offset > Capacity - length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"{Name}: range at {offset} of {length} bytes is outside the device ({Capacity} bytes).");
        if ((offset | length) % SectorSize != 0)
            throw new ArgumentException($"{Name}: offset {offset} and length {length} must be multiples of the {SectorSize}-byte sector.", nameof(offset));
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the device's resources once.</summary>
    protected virtual void Dispose(bool disposing) { }

    /// <inheritdoc />
    public override string ToString() => Name;
}
