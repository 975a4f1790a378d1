using Storage.Devices;

namespace Storage.Versioning;

/// <summary>
/// A volume or snapshot of a <see cref="Pool"/> as a block device (what NBD exports and mounts use). Reads of unmapped
/// ranges return zeros; <see cref="IBlockDevice.TrimAsync"/> frees space; <see cref="IBlockDevice.FlushAsync"/> commits.
/// A snapshot's device is read-only. Disposing it leaves the pool open.
/// </summary>
public sealed class PoolVolume : BlockDevice, IAllocationStatus
{
    private readonly Pool _pool;
    private readonly long _volume;
    private readonly long _limit;

    internal PoolVolume(Pool pool, long volume, long limit, string name, long size, int sectorSize)
        : base(name, size / sectorSize * sectorSize, sectorSize)
    {
        _pool = pool;
        _volume = volume;
        _limit = limit;
    }

    /// <summary>True for a snapshot.</summary>
    public bool IsReadOnly => _limit != long.MaxValue;

    /// <summary>The pool block size: the unit that part-block writes read and rewrite.</summary>
    public int BlockSize => _pool.BlockSize;

    /// <inheritdoc />
    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
        => _pool.ReadAsync(_volume, _limit, offset, buffer, cancellationToken);

    /// <inheritdoc />
    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        ThrowIfReadOnly();
        return _pool.WriteAsync(_volume, offset, buffer, forceUnitAccess, cancellationToken);
    }

    /// <inheritdoc />
    protected override async ValueTask FlushCoreAsync(CancellationToken cancellationToken)
    {
        if (!IsReadOnly)
            await _pool.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    protected override ValueTask TrimCoreAsync(long offset, long length, CancellationToken cancellationToken)
    {
        ThrowIfReadOnly();
        return _pool.TrimAsync(_volume, offset, length, cancellationToken);
    }

    /// <inheritdoc />
    public ValueTask<IReadOnlyList<AllocationExtent>> GetAllocationAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, length);
        if (length == 0)
            throw new ArgumentException($"{Name}: an allocation query needs a non-empty range.", nameof(length));
        return ValueTask.FromResult(_pool.Allocation(_volume, _limit, Capacity, offset, length));
    }

    private void ThrowIfReadOnly()
    {
        if (IsReadOnly)
            throw new BlockDeviceException(Name, "a snapshot is read-only; clone it to write", null);
    }
}
