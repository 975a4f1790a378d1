using Storage.Devices;
using Storage.Versioning;

namespace Storage.Volumes;

/// <summary>
/// A <see cref="SpannedVolume"/> as one block device: each request is split at segment boundaries and sent to the
/// segment's volume in its pool. Writes, trims and flushes go to every copy of a mirrored segment (a copy that fails
/// fails the request); reads go to one copy chosen by the segment's <see cref="ReadBalancer"/>, and to the other when
/// that one fails.
/// </summary>
public sealed class SpannedVolumeDevice : BlockDevice
{
    private readonly SpannedVolume _volume;

    /// <summary>The catalogue record this device serves.</summary>
    public SpannedVolume Volume => _volume;
    private readonly PoolVolume[][] _copies;
    private readonly ReadBalancer[] _balancers;
    private readonly Pool[] _pools;   // every pool holding a segment: a flush commits each once
    private readonly Lock _gate = new();
    private int _writing;                           // writes and trims in flight
    private TaskCompletionSource? _paused;          // set while paused: new writes wait for it
    private TaskCompletionSource? _drained;         // completed when the last write in flight leaves

    /// <param name="volume">The catalogue record.</param>
    /// <param name="pools">The pools by name (every pool the record names).</param>
    /// <param name="readPolicy">How mirrored reads choose a copy.</param>
    /// <exception cref="VolumeException">A pool the record names is not given, or lacks the segment.</exception>
    /// <param name="snapshot">Serve this snapshot of every segment (read-only, as the pools' snapshots are) instead of the live volume.</param>
    public SpannedVolumeDevice(SpannedVolume volume, IReadOnlyDictionary<string, Pool> pools, ReadPolicy readPolicy = ReadPolicy.LeastQueueDepth, string? snapshot = null)
        : base((volume ?? throw new ArgumentNullException(nameof(volume))).Name + (snapshot is null ? "" : "@" + snapshot), volume.SizeBytes, 512)
    {
        ArgumentNullException.ThrowIfNull(pools);
        _volume = volume;
        _copies = new PoolVolume[volume.Segments.Count][];
        _balancers = new ReadBalancer[volume.Segments.Count];
        for (int i = 0; i < volume.Segments.Count; i++)
        {
            string segment = SpannedVolume.SegmentName(volume.Name, i);
            _copies[i] = [.. volume.Segments[i].Select(p => pools.TryGetValue(p, out var pool)
                ? Open(pool, segment, p, snapshot)
                : throw new VolumeException($"Volume '{volume.Name}' has segment {i} on pool '{p}', which is not here."))];
            _balancers[i] = new ReadBalancer(readPolicy, _copies[i].Length, seed: i);
        }
        _pools = [.. volume.Segments.SelectMany(s => s).Distinct(StringComparer.Ordinal).Select(p => pools[p])];
    }

    /// <summary>Reads served by each copy of segment <paramref name="index"/> so far.</summary>
    public IReadOnlyList<long> ReadsServed(int index) => _balancers[index].Served;

    private static PoolVolume Open(Pool pool, string segment, string poolName, string? snapshot)
    {
        try
        {
            return snapshot is null ? pool.OpenVolume(segment) : pool.OpenSnapshot(segment, snapshot);
        }
        catch (PoolConfigurationException e)
        {
            throw new VolumeException($"Pool '{poolName}' has no segment '{segment}': {e.Message}");
        }
    }

    /// <inheritdoc />
    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        foreach (var (index, inSegment, position, length) in Pieces(offset, buffer.Length))
        {
            var piece = buffer.Slice(position, length);
            int copy = _balancers[index].Begin();
            try
            {
                await _copies[index][copy].ReadAsync(inSegment, piece, cancellationToken).ConfigureAwait(false);
            }
            catch (IOException) when (_copies[index].Length > 1)
            {
                // The other copy holds the same bytes.
                await _copies[index][(copy + 1) % _copies[index].Length].ReadAsync(inSegment, piece, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                _balancers[index].End(copy);
            }
        }
    }

    /// <summary>
    /// Holds new writes and trims and completes once those in flight have finished: from then until
    /// <see cref="ResumeWrites"/>, every segment's contents stand still (the cut of a group snapshot).
    /// </summary>
    /// <exception cref="InvalidOperationException">Already paused.</exception>
    public Task PauseWritesAsync()
    {
        lock (_gate)
        {
            if (_paused is not null)
                throw new InvalidOperationException($"Writes to volume '{Name}' are paused already.");
            _paused = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (_writing == 0)
                return Task.CompletedTask;
            _drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _drained.Task;
        }
    }

    /// <summary>Lets held and new writes go on.</summary>
    public void ResumeWrites()
    {
        TaskCompletionSource? paused;
        lock (_gate)
        {
            paused = _paused;
            _paused = null;
            _drained = null;
        }
        paused?.TrySetResult();
    }

    private async ValueTask EnterWriteAsync()
    {
        while (true)
        {
            Task wait;
            lock (_gate)
            {
                if (_paused is null)
                {
                    _writing++;
                    return;
                }
                wait = _paused.Task;
            }
            await wait.ConfigureAwait(false);
        }
    }

    private void ExitWrite()
    {
        TaskCompletionSource? drained = null;
        lock (_gate)
        {
            if (--_writing == 0 && _drained is not null)
            {
                drained = _drained;
                _drained = null;
            }
        }
        drained?.TrySetResult();
    }

    /// <inheritdoc />
    protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        await EnterWriteAsync().ConfigureAwait(false);
        try
        {
            foreach (var (index, inSegment, position, length) in Pieces(offset, buffer.Length))
            {
                var piece = buffer.Slice(position, length);
                await Task.WhenAll(_copies[index].Select(c => c.WriteAsync(inSegment, piece, forceUnitAccess, cancellationToken).AsTask())).ConfigureAwait(false);
            }
        }
        finally
        {
            ExitWrite();
        }
    }

    /// <inheritdoc />
    protected override async ValueTask TrimCoreAsync(long offset, long length, CancellationToken cancellationToken)
    {
        await EnterWriteAsync().ConfigureAwait(false);
        try
        {
            for (long done = 0; done < length;)
            {
                int index = (int)((offset + done) / _volume.SegmentBytes);
                long inSegment = offset + done - index * _volume.SegmentBytes;
                long piece = Math.Min(length - done, _volume.SegmentSize(index) - inSegment);
                await Task.WhenAll(_copies[index].Select(c => c.TrimAsync(inSegment, piece, cancellationToken).AsTask())).ConfigureAwait(false);
                done += piece;
            }
        }
        finally
        {
            ExitWrite();
        }
    }

    /// <inheritdoc />
    protected override async ValueTask FlushCoreAsync(CancellationToken cancellationToken)
    {
        // One commit per pool makes every segment it holds durable.
        await Task.WhenAll(_pools.Select(p => p.CommitAsync(cancellationToken))).ConfigureAwait(false);
    }

    /// <summary>The segment pieces of [offset, offset + length): segment, offset in it, offset in the buffer, length.</summary>
    private IEnumerable<(int Index, long InSegment, int Position, int Length)> Pieces(long offset, int length)
    {
        for (int position = 0; position < length;)
        {
            int index = (int)((offset + position) / _volume.SegmentBytes);
            long inSegment = offset + position - index * _volume.SegmentBytes;
            int piece = (int)Math.Min(length - position, _volume.SegmentSize(index) - inSegment);
            yield return (index, inSegment, position, piece);
            position += piece;
        }
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            foreach (var copy in _copies.SelectMany(c => c))
                copy.Dispose();
        }
        base.Dispose(disposing);
    }
}
