using System.Runtime.ExceptionServices;
using Storage.Devices;

namespace Storage.Volumes;

// A mirror goes on when one copy fails: the copy is recorded stale first, then left out; a resync fills it again.
public sealed partial class SpannedVolumeDevice
{
    private readonly List<IBlockDevice> _retired = [];   // copies left out while requests may still use them: closed with the device
    private SpannedVolume? _own;                          // the newest record this device's changes of stale copies left (under _gate)
    private long _ownVersion;                             // its version in the catalogue

    /// <summary>
    /// Where the device records a copy that failed a write, trim or flush as stale, before it acknowledges the request
    /// the other copy served; null: such a request fails instead.
    /// </summary>
    public StaleCopies? Recorder { get; set; }

    /// <summary>Runs <paramref name="operation"/> on every copy of a segment; a copy that fails is recorded stale when another succeeded.</summary>
    private async Task OnEveryCopyAsync(int index, SegmentCopies segment, Func<IBlockDevice, ValueTask> operation, CancellationToken cancellationToken)
    {
        if (segment.All.Length == 1)
        {
            await operation(segment.All[0]).ConfigureAwait(false);
            return;
        }
        var tasks = segment.All.Select(c => operation(c).AsTask()).ToArray();
        try
        {
            await Task.WhenAll(tasks).ConfigureAwait(false);
        }
        catch (Exception)
        {
            var failed = Enumerable.Range(0, tasks.Length).Where(t => !tasks[t].IsCompletedSuccessfully).ToList();
            await SurviveAsync(tasks, failed, [.. failed.Select(f => (index, segment.Pools[f]))], cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>When some flush of a mirrored volume fails, records every copy on those pools stale (what they hold may not be durable).</summary>
    private async Task SurviveFlushAsync(Layout layout, Task[] flushes, CancellationToken cancellationToken)
    {
        var failed = Enumerable.Range(0, flushes.Length).Where(t => !flushes[t].IsCompletedSuccessfully).ToList();
        var pools = failed.Select(f => layout.Pools[f].Opened).ToList();
        var copies = new List<(int, string)>();
        for (int i = 0; i < layout.Segments.Length; i++)
        {
            for (int c = 0; c < layout.Segments[i].All.Length; c++)
            {
                if (pools.Any(opened => opened.Contains(layout.Segments[i].All[c])))
                    copies.Add((i, layout.Segments[i].Pools[c]));
            }
        }
        await SurviveAsync(flushes, failed, copies, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Lets a request whose <paramref name="failed"/> tasks failed succeed once <paramref name="copies"/> are recorded
    /// stale, when each failure is an I/O error and another task succeeded; otherwise rethrows the first failure.
    /// </summary>
    private async Task SurviveAsync(Task[] tasks, List<int> failed, List<(int Segment, string Pool)> copies, CancellationToken cancellationToken)
    {
        var first = tasks[failed[0]].Exception?.InnerException ?? new OperationCanceledException(cancellationToken);
        var recorder = Recorder;
        if (recorder is null || failed.Count == tasks.Length || failed.Any(f => tasks[f].Exception?.InnerException is not IOException))
            ExceptionDispatchInfo.Throw(first);
        (SpannedVolume, long) record;
        try
        {
            record = await recorder.MarkAsync(_layout.Volume.Name, copies, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new IOException($"Volume '{Name}': the copy of {Describe(copies)} failed ({first.Message}), and it could not be recorded stale, " +
                $"so the request fails: {e.Message}", first);
        }
        LeaveOut(record);
    }

    private static string Describe(IEnumerable<(int Segment, string Pool)> copies)
        => string.Join(", ", copies.Select(c => $"segment {c.Segment} on pool '{c.Pool}'"));

    /// <summary>Keeps <paramref name="record"/> as the newest this device wrote, unless a newer one came back first (two failed writes racing); returns the newest.</summary>
    private SpannedVolume Own((SpannedVolume Volume, long Version) record)
    {
        lock (_gate)
        {
            if (_own is null || record.Version > _ownVersion)
                (_own, _ownVersion) = record;
            return _own;
        }
    }

    /// <summary>Serves without the copies the newest record this device wrote leaves unwritten; requests in flight may finish on them.</summary>
    private void LeaveOut((SpannedVolume, long) written)
    {
        Own(written);
        DropUnwritten();
    }

    /// <summary>
    /// Drops from the layout the copies this device's own newest record leaves unwritten (after <see cref="LeaveOut"/>,
    /// and after an adopt that may have raced one).
    /// </summary>
    private void DropUnwritten()
    {
        while (true)
        {
            var now = _layout;
            var volume = WithOwnStale(now.Volume);
            var segments = new SegmentCopies[now.Segments.Length];
            var dropped = new List<IBlockDevice>();
            for (int i = 0; i < segments.Length; i++)
            {
                var had = now.Segments[i];
                int[] keep = [.. Enumerable.Range(0, had.All.Length).Where(c => volume.Written(i, had.Pools[c]))];
                if (keep.Length == had.All.Length)
                {
                    segments[i] = had;
                    continue;
                }
                dropped.AddRange(had.All.Where((_, c) => !keep.Contains(c)));
                segments[i] = Copies(volume, i, [.. keep.Select(c => had.All[c])], [.. keep.Select(c => had.Pools[c])], _readPolicy, had.Window);
            }
            if (dropped.Count == 0 && (volume.Stale ?? []).SequenceEqual(now.Volume.Stale ?? []))
                return;
            var grouped = now.Pools.Select(p => (p.Pool, Opened: p.Opened.Where(d => !dropped.Contains(d)).ToArray())).Where(p => p.Opened.Length > 0).ToArray();
            if (Interlocked.CompareExchange(ref _layout, new Layout(volume, segments, grouped), now) == now)
            {
                lock (_retired)
                    _retired.AddRange(dropped.Where(d => !_retired.Contains(d)));   // an adopt may have kept one a failure had dropped before
                return;
            }
        }
    }

    /// <summary>
    /// <paramref name="volume"/> with the stale copies this device last recorded, when it has: a record read before
    /// that change (a sync racing a failed write) must not make a stale copy readable again. A copy that record does
    /// not have (a stale copy replaced on another pool since) keeps the state <paramref name="volume"/> gives it.
    /// </summary>
    private SpannedVolume WithOwnStale(SpannedVolume volume)
    {
        ArgumentNullException.ThrowIfNull(volume);
        lock (_gate)
        {
            if (_own is not { } own)
                return volume;
            var stale = new List<StaleCopy>();
            for (int i = 0; i < volume.Segments.Count; i++)
            {
                foreach (string pool in volume.Segments[i])
                {
                    bool known = i < own.Segments.Count && own.Segments[i].Contains(pool, StringComparer.Ordinal);
                    if ((known ? own.StaleEntry(i, pool) : volume.StaleEntry(i, pool)) is { } entry)
                        stale.Add(entry);
                }
            }
            return volume with { Stale = SpannedVolume.InOrder(stale) };
        }
    }

    /// <summary>
    /// Brings back every stale copy on <paramref name="pools"/>, one at a time: it is written again from the moment the
    /// record says it is being filled, is filled from the copy that is read (as a move fills its copy, writes going on),
    /// and is read again once full. Returns the bytes of data copied. A copy that fails again meanwhile, or whose fill
    /// fails, is recorded stale again (no longer being filled).
    /// </summary>
    /// <exception cref="InvalidOperationException">No <see cref="Recorder"/>.</exception>
    /// <exception cref="VolumeException">The record changed under the resync (the copy failed again), or the metadata service refused a change.</exception>
    /// <exception cref="IOException">A copy cannot be opened or failed; what was resynchronized so far stays so.</exception>
    public async Task<long> ResyncAsync(IReadOnlyDictionary<string, ISegmentPool> pools, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(pools);
        var recorder = Recorder ?? throw new InvalidOperationException($"Volume '{Name}' has no recorder of stale copies.");
        long copied = 0;
        while (_layout.Volume.Stale?.FirstOrDefault(s => pools.ContainsKey(s.Pool)) is { } stale)
        {
            var record = await recorder.BeginResyncAsync(Volume.Name, stale.Segment, stale.Pool, cancellationToken).ConfigureAwait(false);
            try
            {
                await AdoptOwnAsync(record, pools, cancellationToken).ConfigureAwait(false);
                copied += await FillAsync(stale.Segment, stale.Pool, null, cancellationToken).ConfigureAwait(false);
            }
            catch (IOException)
            {
                await StaleAgainAsync(recorder, stale.Segment, stale.Pool).ConfigureAwait(false);
                throw;
            }
            record = await recorder.EndResyncAsync(Volume.Name, stale.Segment, stale.Pool, cancellationToken).ConfigureAwait(false);
            await AdoptOwnAsync(record, pools, cancellationToken).ConfigureAwait(false);
        }
        return copied;
    }

    /// <summary>
    /// Records a copy whose fill failed as stale again (not written, not being filled), so the catalogue does not show
    /// a resync that stopped; best effort: when that fails too, the next write to the copy or the next resync finds it.
    /// </summary>
    private async Task StaleAgainAsync(StaleCopies recorder, int segment, string pool)
    {
        try
        {
            LeaveOut(await recorder.MarkAsync(Volume.Name, [(segment, pool)], CancellationToken.None).ConfigureAwait(false));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The fill's failure is the one to report.
        }
    }

    private Task<bool> AdoptOwnAsync((SpannedVolume, long) record, IReadOnlyDictionary<string, ISegmentPool> pools, CancellationToken cancellationToken)
        => AdoptAsync(Own(record), pools, cancellationToken: cancellationToken);

    /// <summary>
    /// The copies of <paramref name="volume"/> that are written (not stale) but cannot be opened now: their pool is not
    /// in <paramref name="pools"/> or does not answer. A segment a pool lacks is not counted (the catalogue and the pool
    /// disagree for a moment while a transaction finishes).
    /// </summary>
    public static async Task<IReadOnlyList<(int Segment, string Pool)>> UnavailableAsync(SpannedVolume volume, IReadOnlyDictionary<string, ISegmentPool> pools,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(volume);
        ArgumentNullException.ThrowIfNull(pools);
        var unavailable = new List<(int, string)>();
        for (int i = 0; i < volume.Segments.Count; i++)
        {
            foreach (string name in volume.Segments[i].Where(p => volume.Written(i, p)))
            {
                if (!pools.TryGetValue(name, out var pool))
                {
                    unavailable.Add((i, name));
                    continue;
                }
                try
                {
                    using var device = await pool.OpenAsync(SpannedVolume.SegmentName(volume.Name, i), null, cancellationToken).ConfigureAwait(false);
                }
                catch (IOException)
                {
                    unavailable.Add((i, name));
                }
                catch (VolumeException)
                {
                    // Not a failure of the pool.
                }
            }
        }
        return unavailable;
    }
}
