using Storage.Devices;
using Storage.Versioning;

namespace Storage.Volumes;

/// <summary>
/// Where a volume's segments are read and written: a pool in this process (<see cref="LocalSegmentPool"/>), or one on
/// another node reached over NBD.
/// </summary>
public interface ISegmentPool
{
    /// <summary>The pool's name.</summary>
    string Name { get; }

    /// <summary>Opens segment <paramref name="segment"/> (or its snapshot <paramref name="snapshot"/>, read-only) as a device the caller disposes.</summary>
    /// <exception cref="VolumeException">The pool has no such segment or snapshot.</exception>
    /// <exception cref="IOException">The pool cannot be reached.</exception>
    ValueTask<IBlockDevice> OpenAsync(string segment, string? snapshot, CancellationToken cancellationToken = default);

    /// <summary>Makes every write acknowledged on <paramref name="opened"/> (devices this pool opened) durable.</summary>
    Task FlushAsync(IReadOnlyList<IBlockDevice> opened, CancellationToken cancellationToken = default);
}

/// <summary>A pool in this process: segments are its thin volumes, and one commit makes all of them durable.</summary>
public sealed class LocalSegmentPool(string name, Pool pool) : ISegmentPool
{
    /// <inheritdoc />
    public string Name { get; } = name;

    /// <summary>The pool.</summary>
    public Pool Pool { get; } = pool;

    /// <summary>Opens without waiting (a local pool never does).</summary>
    /// <exception cref="VolumeException">No such segment or snapshot.</exception>
    public PoolVolume Open(string segment, string? snapshot)
    {
        try
        {
            return snapshot is null ? Pool.OpenVolume(segment) : Pool.OpenSnapshot(segment, snapshot);
        }
        catch (PoolConfigurationException e)
        {
            throw new VolumeException($"Pool '{Name}' has no segment '{segment}': {e.Message}");
        }
    }

    /// <inheritdoc />
    public ValueTask<IBlockDevice> OpenAsync(string segment, string? snapshot, CancellationToken cancellationToken = default)
        => ValueTask.FromResult<IBlockDevice>(Open(segment, snapshot));

    /// <inheritdoc />
    public Task FlushAsync(IReadOnlyList<IBlockDevice> opened, CancellationToken cancellationToken = default) => Pool.CommitAsync(cancellationToken);
}
