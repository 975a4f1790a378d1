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
    private readonly IBlockDevice[][] _copies;
    private readonly ReadBalancer[] _balancers;
    private readonly (ISegmentPool Pool, IBlockDevice[] Opened)[] _pools;   // every pool holding a segment: a flush asks each once
    private readonly Lock _gate = new();
    private int _writing;                           // writes and trims in flight
    private TaskCompletionSource? _paused;          // set while paused: new writes wait for it
    private TaskCompletionSource? _drained;         // completed when the last write in flight leaves

    /// <summary>Serves <paramref name="volume"/> from pools in this process.</summary>
    /// <param name="volume">The catalogue record.</param>
    /// <param name="pools">The pools by name (every pool the record names).</param>
    /// <param name="readPolicy">How mirrored reads choose a copy.</param>
    /// <param name="snapshot">Serve this snapshot of every segment (read-only, as the pools' snapshots are) instead of the live volume.</param>
    /// <exception cref="VolumeException">A pool the record names is not given, or lacks the segment.</exception>
    public SpannedVolumeDevice(SpannedVolume volume, IReadOnlyDictionary<string, Pool> pools, ReadPolicy readPolicy = ReadPolicy.LeastQueueDepth, string? snapshot = null)
        : this(volume ?? throw new ArgumentNullException(nameof(volume)), OpenLocal(volume, pools, snapshot), readPolicy, snapshot)
    {
    }

    private SpannedVolumeDevice(SpannedVolume volume, (IBlockDevice[][] Copies, (ISegmentPool, IBlockDevice[])[] Pools) opened, ReadPolicy readPolicy, string? snapshot)
        : base(volume.Name + (snapshot is null ? "" : "@" + snapshot), volume.SizeBytes, 512)
    {
        _volume = volume;
        _copies = opened.Copies;
        _pools = opened.Pools;
        _balancers = [.. Enumerable.Range(0, volume.Segments.Count).Select(i => new ReadBalancer(readPolicy, _copies[i].Length, seed: i))];
    }

    /// <summary>Serves <paramref name="volume"/> from its pools, wherever they are.</summary>
    /// <exception cref="VolumeException">A pool the record names is not given, or lacks the segment.</exception>
    /// <exception cref="IOException">A pool cannot be reached.</exception>
    public static async Task<SpannedVolumeDevice> OpenAsync(SpannedVolume volume, IReadOnlyDictionary<string, ISegmentPool> pools, ReadPolicy readPolicy = ReadPolicy.LeastQueueDepth,
        string? snapshot = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(volume);
        ArgumentNullException.ThrowIfNull(pools);
        return new SpannedVolumeDevice(volume, await OpenAllAsync(volume, pools, snapshot, cancellationToken).ConfigureAwait(false), readPolicy, snapshot);
    }

    private static (IBlockDevice[][], (ISegmentPool, IBlockDevice[])[]) OpenLocal(SpannedVolume volume, IReadOnlyDictionary<string, Pool> pools, string? snapshot)
    {
        ArgumentNullException.ThrowIfNull(pools);
        var local = pools.ToDictionary(p => p.Key, p => (ISegmentPool)new LocalSegmentPool(p.Key, p.Value), StringComparer.Ordinal);
        // A local pool opens without waiting: the task is complete when it returns.
        return OpenAllAsync(volume, local, snapshot, CancellationToken.None).GetAwaiter().GetResult();
    }

    /// <summary>Opens every copy of every segment; on a failure closes what it opened.</summary>
    private static async Task<(IBlockDevice[][], (ISegmentPool, IBlockDevice[])[])> OpenAllAsync(SpannedVolume volume, IReadOnlyDictionary<string, ISegmentPool> pools,
        string? snapshot, CancellationToken cancellationToken)
    {
        var copies = new IBlockDevice[volume.Segments.Count][];
        var opened = new List<(string Pool, IBlockDevice Device)>();
        try
        {
            for (int i = 0; i < volume.Segments.Count; i++)
            {
                copies[i] = new IBlockDevice[volume.Segments[i].Length];
                for (int c = 0; c < copies[i].Length; c++)
                {
                    string name = volume.Segments[i][c];
                    var pool = pools.GetValueOrDefault(name) ?? throw Missing(volume, i, name);
                    copies[i][c] = await pool.OpenAsync(SpannedVolume.SegmentName(volume.Name, i), snapshot, cancellationToken).ConfigureAwait(false);
                    opened.Add((name, copies[i][c]));
                }
            }
        }
        catch
        {
            foreach (var (_, device) in opened)
                device.Dispose();
            throw;
        }
        return (copies, Group(opened, pools));
    }

    private static VolumeException Missing(SpannedVolume volume, int index, string pool)
        => new($"Volume '{volume.Name}' has segment {index} on pool '{pool}', which is not here.");

    private static (ISegmentPool, IBlockDevice[])[] Group(List<(string Pool, IBlockDevice Device)> opened, IReadOnlyDictionary<string, ISegmentPool> pools)
        => [.. opened.GroupBy(o => o.Pool, StringComparer.Ordinal).Select(g => (pools[g.Key], g.Select(o => o.Device).ToArray()))];

    /// <summary>Reads served by each copy of segment <paramref name="index"/> so far.</summary>
    public IReadOnlyList<long> ReadsServed(int index) => _balancers[index].Served;

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
        // One flush per pool makes every segment it holds durable (a local pool commits once).
        await Task.WhenAll(_pools.Select(p => p.Pool.FlushAsync(p.Opened, cancellationToken))).ConfigureAwait(false);
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
