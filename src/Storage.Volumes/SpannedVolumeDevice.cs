using Storage.Devices;
using Storage.Versioning;

namespace Storage.Volumes;

/// <summary>
/// A <see cref="SpannedVolume"/> as one block device: each request is split at segment boundaries and sent to the
/// segment's volume in its pool. Writes, trims and flushes go to every copy of a mirrored segment (a copy that fails
/// fails the request); reads go to one copy chosen by the segment's <see cref="ReadBalancer"/>, and to the other when
/// that one fails. When one copy of a mirror fails a write, the write still succeeds on the other once the failed copy
/// is recorded stale (<see cref="Recorder"/>); <see cref="ResyncAsync"/> fills it again later.
/// </summary>
public sealed partial class SpannedVolumeDevice : BlockDevice
{
    private volatile Layout _layout;
    private readonly ReadPolicy _readPolicy;
    private readonly string? _snapshot;
    private readonly Lock _gate = new();
    private readonly SemaphoreSlim _adopting = new(1, 1);   // one AdoptAsync at a time: each builds on the layout the last one left
    private int _writing;                           // writes and trims in flight
    private int _reading;                           // reads in flight
    private TaskCompletionSource? _paused;          // set while paused: new writes (and, while _readsHeld, reads) wait for it
    private bool _readsHeld;                        // the pause holds reads too (a switch of copies)
    private TaskCompletionSource? _drained;         // completed when the last write (or read, while held) in flight leaves

    /// <summary>The catalogue record this device serves.</summary>
    public SpannedVolume Volume => _layout.Volume;

    /// <summary>The copies of one segment: every one is written; those in <see cref="Readable"/> are read.</summary>
    private sealed record SegmentCopies(IBlockDevice[] All, string[] Pools, int[] Readable, ReadBalancer Balancer, CopyWindow? Window);

    /// <summary>What the device serves now; replaced whole when a record moves a copy (<see cref="AdoptAsync"/>).</summary>
    private sealed record Layout(SpannedVolume Volume, SegmentCopies[] Segments, (ISegmentPool Pool, IBlockDevice[] Opened)[] Pools);

    /// <summary>Serves <paramref name="volume"/> from pools in this process.</summary>
    /// <param name="volume">The catalogue record.</param>
    /// <param name="pools">The pools by name (every pool the record names).</param>
    /// <param name="readPolicy">How mirrored reads choose a copy.</param>
    /// <param name="snapshot">Serve this snapshot of every segment (read-only, as the pools' snapshots are) instead of the live volume.</param>
    /// <exception cref="VolumeException">A pool the record names is not given, or lacks the segment.</exception>
    public SpannedVolumeDevice(SpannedVolume volume, IReadOnlyDictionary<string, Pool> pools, ReadPolicy readPolicy = ReadPolicy.LeastQueueDepth, string? snapshot = null)
        : this(volume ?? throw new ArgumentNullException(nameof(volume)), Local(pools), readPolicy, snapshot)
    {
    }

    private SpannedVolumeDevice(SpannedVolume volume, IReadOnlyDictionary<string, ISegmentPool> pools, ReadPolicy readPolicy, string? snapshot)
        : this(volume, readPolicy, snapshot, OpenAllAsync(volume, pools, [], readPolicy, snapshot, CancellationToken.None).GetAwaiter().GetResult())
    {
        // Local pools open without waiting: the task is complete when it returns.
    }

    private SpannedVolumeDevice(SpannedVolume volume, ReadPolicy readPolicy, string? snapshot, Layout layout)
        : base(volume.Name + (snapshot is null ? "" : "@" + snapshot), volume.SizeBytes, 512)
    {
        _layout = layout;
        _readPolicy = readPolicy;
        _snapshot = snapshot;
    }

    /// <summary>Serves <paramref name="volume"/> from its pools, wherever they are.</summary>
    /// <exception cref="VolumeException">A pool the record names is not given, or lacks the segment.</exception>
    /// <exception cref="IOException">A pool cannot be reached.</exception>
    public static async Task<SpannedVolumeDevice> OpenAsync(SpannedVolume volume, IReadOnlyDictionary<string, ISegmentPool> pools, ReadPolicy readPolicy = ReadPolicy.LeastQueueDepth,
        string? snapshot = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(volume);
        ArgumentNullException.ThrowIfNull(pools);
        var layout = await OpenAllAsync(volume, pools, [], readPolicy, snapshot, cancellationToken).ConfigureAwait(false);
        return new SpannedVolumeDevice(volume, readPolicy, snapshot, layout);
    }

    private static Dictionary<string, ISegmentPool> Local(IReadOnlyDictionary<string, Pool> pools)
    {
        ArgumentNullException.ThrowIfNull(pools);
        return pools.ToDictionary(p => p.Key, p => (ISegmentPool)new LocalSegmentPool(p.Key, p.Value), StringComparer.Ordinal);
    }

    /// <summary>
    /// Opens every copy of every segment of <paramref name="volume"/>, taking those <paramref name="reuse"/> has open
    /// already (segment, pool → device); on a failure closes what it opened.
    /// </summary>
    private static async Task<Layout> OpenAllAsync(SpannedVolume volume, IReadOnlyDictionary<string, ISegmentPool> pools,
        Dictionary<(int, string), IBlockDevice> reuse, ReadPolicy readPolicy, string? snapshot, CancellationToken cancellationToken)
    {
        var segments = new SegmentCopies[volume.Segments.Count];
        var opened = new List<(string Pool, IBlockDevice Device)>();
        var fresh = new List<IBlockDevice>();
        try
        {
            for (int i = 0; i < segments.Length; i++)
            {
                string[] names = [.. volume.Segments[i].Where(p => volume.Written(i, p))];   // a stale copy is left closed
                var copies = new IBlockDevice[names.Length];
                for (int c = 0; c < copies.Length; c++)
                {
                    string name = names[c];
                    var pool = pools.GetValueOrDefault(name) ?? throw Missing(volume, i, name);   // its flushes go there, opened now or before
                    if (!reuse.TryGetValue((i, name), out var device))
                    {
                        device = await pool.OpenAsync(SpannedVolume.SegmentName(volume.Name, i), snapshot, cancellationToken).ConfigureAwait(false);
                        fresh.Add(device);
                    }
                    copies[c] = device;
                    opened.Add((name, device));
                }
                segments[i] = Copies(volume, i, copies, names, readPolicy, snapshot is null ? new CopyWindow() : null);
            }
        }
        catch
        {
            foreach (var device in fresh)
                device.Dispose();
            throw;
        }
        var grouped = opened.GroupBy(o => o.Pool, StringComparer.Ordinal).Select(g => (pools[g.Key], g.Select(o => o.Device).ToArray())).ToArray();
        return new Layout(volume, segments, grouped);
    }

    /// <summary>
    /// The copies <paramref name="all"/> (on <paramref name="pools"/>) of segment <paramref name="index"/> as
    /// <paramref name="volume"/> says they are read; <paramref name="window"/> guards writes while one is being filled.
    /// </summary>
    private static SegmentCopies Copies(SpannedVolume volume, int index, IBlockDevice[] all, string[] pools, ReadPolicy readPolicy, CopyWindow? window)
    {
        int[] readable = [.. Enumerable.Range(0, pools.Length).Where(c => volume.Readable(index, pools[c]))];
        return new SegmentCopies(all, pools, readable, new ReadBalancer(readPolicy, readable.Length, seed: index), readable.Length < pools.Length ? window : null);
    }

    private static VolumeException Missing(SpannedVolume volume, int index, string pool)
        => new($"Volume '{volume.Name}' has segment {index} on pool '{pool}', which is not here.");

    /// <summary>Reads served by each copy of segment <paramref name="index"/> so far (in the record's order of copies).</summary>
    public IReadOnlyList<long> ReadsServed(int index)
    {
        var layout = _layout;
        var segment = layout.Segments[index];
        string[] pools = layout.Volume.Segments[index];
        var served = new long[pools.Length];
        for (int r = 0; r < segment.Readable.Length; r++)
            served[Array.IndexOf(pools, segment.Pools[segment.Readable[r]])] = segment.Balancer.Served[r];
        return served;
    }

    /// <inheritdoc />
    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var layout = await EnterAsync(read: true).ConfigureAwait(false);
        try
        {
            foreach (var (index, inSegment, position, length) in Pieces(layout.Volume, offset, buffer.Length))
            {
                var piece = buffer.Slice(position, length);
                var segment = layout.Segments[index];
                int choice = segment.Balancer.Begin();
                try
                {
                    await segment.All[segment.Readable[choice]].ReadAsync(inSegment, piece, cancellationToken).ConfigureAwait(false);
                }
                catch (IOException) when (segment.Readable.Length > 1)
                {
                    // The other copy holds the same bytes.
                    await segment.All[segment.Readable[(choice + 1) % segment.Readable.Length]].ReadAsync(inSegment, piece, cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    segment.Balancer.End(choice);
                }
            }
        }
        finally
        {
            Exit(read: true);
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
            if (_paused is not null && !_readsHeld)
                throw new InvalidOperationException($"Writes to volume '{Name}' are paused already.");
        }
        return HoldAsync(reads: false);
    }

    /// <summary>Lets held and new writes (and reads) go on.</summary>
    public void ResumeWrites()
    {
        TaskCompletionSource? paused;
        lock (_gate)
        {
            paused = _paused;
            (_paused, _drained, _readsHeld) = (null, null, false);
        }
        paused?.TrySetResult();
    }

    /// <summary>Waits for any other hold to end, then holds writes (and reads) and waits for those in flight to leave.</summary>
    private async Task HoldAsync(bool reads)
    {
        Task drained;
        while (true)
        {
            Task other;
            lock (_gate)
            {
                if (_paused is null)
                {
                    _paused = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    _readsHeld = reads;
                    if (Drained())
                        return;
                    _drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    drained = _drained.Task;
                    break;
                }
                other = _paused.Task;
            }
            await other.ConfigureAwait(false);
        }
        await drained.ConfigureAwait(false);
    }

    private bool Drained() => _writing == 0 && (!_readsHeld || _reading == 0);

    /// <summary>Counts a request in flight once no hold stops it; returns the layout it uses throughout.</summary>
    private async ValueTask<Layout> EnterAsync(bool read)
    {
        while (true)
        {
            Task wait;
            lock (_gate)
            {
                if (_paused is null || (read && !_readsHeld))
                {
                    if (read)
                        _reading++;
                    else
                        _writing++;
                    return _layout;
                }
                wait = _paused.Task;
            }
            await wait.ConfigureAwait(false);
        }
    }

    private void Exit(bool read)
    {
        TaskCompletionSource? drained = null;
        lock (_gate)
        {
            if (read)
                _reading--;
            else
                _writing--;
            if (_drained is not null && Drained())
                (drained, _drained) = (_drained, null);
        }
        drained?.TrySetResult();
    }

    /// <inheritdoc />
    protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        var layout = await EnterAsync(read: false).ConfigureAwait(false);
        try
        {
            foreach (var (index, inSegment, position, length) in Pieces(layout.Volume, offset, buffer.Length))
            {
                var piece = buffer.Slice(position, length);
                var segment = layout.Segments[index];
                if (segment.Window is { } window)
                    await window.EnterAsync(inSegment, inSegment + length).ConfigureAwait(false);
                try
                {
                    await OnEveryCopyAsync(index, segment, c => c.WriteAsync(inSegment, piece, forceUnitAccess, cancellationToken), cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    segment.Window?.Exit(inSegment, inSegment + length);
                }
            }
        }
        finally
        {
            Exit(read: false);
        }
    }

    /// <inheritdoc />
    protected override async ValueTask TrimCoreAsync(long offset, long length, CancellationToken cancellationToken)
    {
        var layout = await EnterAsync(read: false).ConfigureAwait(false);
        try
        {
            var volume = layout.Volume;
            for (long done = 0; done < length;)
            {
                int index = (int)((offset + done) / volume.SegmentBytes);
                long inSegment = offset + done - index * volume.SegmentBytes;
                long piece = Math.Min(length - done, volume.SegmentSize(index) - inSegment);
                var segment = layout.Segments[index];
                if (segment.Window is { } window)
                    await window.EnterAsync(inSegment, inSegment + piece).ConfigureAwait(false);
                try
                {
                    await OnEveryCopyAsync(index, segment, c => c.TrimAsync(inSegment, piece, cancellationToken), cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    segment.Window?.Exit(inSegment, inSegment + piece);
                }
                done += piece;
            }
        }
        finally
        {
            Exit(read: false);
        }
    }

    /// <inheritdoc />
    protected override async ValueTask FlushCoreAsync(CancellationToken cancellationToken)
    {
        // One flush per pool makes every segment it holds durable (a local pool commits once).
        var layout = await EnterAsync(read: true).ConfigureAwait(false);
        try
        {
            var flushes = layout.Pools.Select(p => p.Pool.FlushAsync(p.Opened, cancellationToken)).ToArray();
            try
            {
                await Task.WhenAll(flushes).ConfigureAwait(false);
            }
            catch (Exception) when (layout.Volume.Copies > 1)
            {
                await SurviveFlushAsync(layout, flushes, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            Exit(read: true);
        }
    }

    /// <summary>The segment pieces of [offset, offset + length): segment, offset in it, offset in the buffer, length.</summary>
    private static IEnumerable<(int Index, long InSegment, int Position, int Length)> Pieces(SpannedVolume volume, long offset, int length)
    {
        for (int position = 0; position < length;)
        {
            int index = (int)((offset + position) / volume.SegmentBytes);
            long inSegment = offset + position - index * volume.SegmentBytes;
            int piece = (int)Math.Min(length - position, volume.SegmentSize(index) - inSegment);
            yield return (index, inSegment, position, piece);
            position += piece;
        }
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            foreach (var copy in _layout.Segments.SelectMany(s => s.All).Concat(_retired))
                copy.Dispose();
            _adopting.Dispose();
        }
        base.Dispose(disposing);
    }
}
