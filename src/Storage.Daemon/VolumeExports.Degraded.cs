using Microsoft.Extensions.Logging;
using Storage.Metadata;
using Storage.Versioning;
using Storage.Volumes;

namespace Storage.Daemon;

// A mirrored volume goes on without a copy that is away: offered degraded after a grace period, its copies there
// recorded stale, and resynchronized in the background once that pool answers again.
internal sealed partial class VolumeExports
{
    private static readonly TimeSpan RetryAfter = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan LongestRetry = TimeSpan.FromMinutes(5);

    private readonly Dictionary<string, long> _awaySince = new(StringComparer.Ordinal);   // export → when a copy was first found away (ms ticks; under _gate)
    private readonly Dictionary<string, (Task Task, CancellationTokenSource Stop)> _resyncs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _resyncFailures = new(StringComparer.Ordinal);   // export → resyncs failed in a row (under _resyncs)
    private readonly Dictionary<string, long> _resyncDue = new(StringComparer.Ordinal);       // export → when its failed resync may run again (under _resyncs)
    private readonly CancellationTokenSource _stopping = new();
    private long _wakeAt = long.MaxValue;   // when the next retry sync is due (under _resyncs)

    /// <summary>The first pool of a copy of <paramref name="volume"/> that is written (not stale) and not in <paramref name="hosted"/>, or null.</summary>
    private static string? MissingPool(SpannedVolume volume, IReadOnlyDictionary<string, ISegmentPool> hosted)
        => volume.Segments.SelectMany((pools, i) => pools.Where(p => volume.Written(i, p))).FirstOrDefault(p => !hosted.ContainsKey(p));

    /// <summary>
    /// Opens the device of export <paramref name="name"/>: as the record has it; or, for a mirrored volume whose copies
    /// on some pool have not answered for <c>degradeAfter</c>, without them (recorded stale first, for a live volume).
    /// Null: not now; the reason is logged once, and a sync is due again when the grace period ends.
    /// </summary>
    private async Task<(SpannedVolumeDevice Device, long Version, SpannedVolume Volume)?> OpenAsync(string name, long version, SpannedVolume volume,
        SpannedSnapshot? snapshot, IReadOnlyDictionary<string, ISegmentPool> hosted, CancellationToken cancellationToken)
    {
        if (MissingPool(volume, hosted) is { } missing)
        {
            if (volume.Copies < 2)
            {
                if (_warned.Add($"{name} {missing}"))
                    _log.ExportWithoutPool(name, missing);
                return null;
            }
        }
        else
        {
            try
            {
                var device = await OpenDeviceAsync(volume, snapshot, hosted, cancellationToken).ConfigureAwait(false);
                _awaySince.Remove(name);
                return (device, version, volume);
            }
            catch (Exception e) when (e is VolumeException || (e is IOException && volume.Copies < 2))
            {
                // Catalogue and pools disagree for a moment (a transaction is finishing), or another node's pool does
                // not answer: the next sync offers it.
                NotReady(name, e.Message);
                return null;
            }
            catch (IOException)
            {
                // A copy does not answer: the mirror may go on without it.
            }
        }

        var away = await SpannedVolumeDevice.UnavailableAsync(volume, hosted, cancellationToken).ConfigureAwait(false);
        if (away.Count == 0)
        {
            NotReady(name, "a copy failed to open, and every copy answers now");
            Later(TimeSpan.FromSeconds(1));
            return null;
        }
        SpannedVolume degraded;
        try
        {
            degraded = StaleCopies.Marked(volume, away);
        }
        catch (VolumeException e)
        {
            if (_warned.Add($"{name} no copy"))
                _log.ExportWithoutCopy(name, e.Message);
            return null;
        }
        long now = Environment.TickCount64;
        if (!_awaySince.TryGetValue(name, out long since))
            _awaySince[name] = since = now;
        var wait = _degradeAfter - TimeSpan.FromMilliseconds(now - since);
        if (wait > TimeSpan.Zero)
        {
            if (_warned.Add($"{name} waits"))
                _log.ExportWaits(name, Describe(away), _degradeAfter.TotalSeconds);
            Later(wait);
            return null;
        }
        try
        {
            if (snapshot is null)
            {
                (degraded, version) = await _recorder.MarkAsync(volume.Name, away, cancellationToken).ConfigureAwait(false);
                _log.CopiesStale(name, Describe(away), $"not answering for {_degradeAfter.TotalSeconds:0.#} s when the volume was opened");
            }
            var device = await OpenDeviceAsync(degraded, snapshot, hosted, cancellationToken).ConfigureAwait(false);
            _awaySince.Remove(name);
            _warned.Remove($"{name} waits");
            return (device, version, degraded);
        }
        catch (Exception e) when (e is VolumeException or IOException)
        {
            NotReady(name, e.Message);
            return null;
        }
    }

    private async Task<SpannedVolumeDevice> OpenDeviceAsync(SpannedVolume volume, SpannedSnapshot? snapshot, IReadOnlyDictionary<string, ISegmentPool> hosted,
        CancellationToken cancellationToken)
    {
        var device = await SpannedVolumeDevice.OpenAsync(volume, hosted, volume.Reads ?? ReadPolicy.LeastQueueDepth, snapshot?.Name, cancellationToken).ConfigureAwait(false);
        if (snapshot is null)
            device.Recorder = _recorder;   // a copy that fails a write is recorded stale, and the mirror goes on
        return device;
    }

    private void NotReady(string name, string reason)
    {
        if (_warned.Add($"{name} {reason}"))
            _log.ExportNotReady(name, reason);
    }

    /// <summary>Forgets when the copies of exports that are offered now, or no longer wanted, went away.</summary>
    private void ForgetWaiting(IEnumerable<string> wanted)
    {
        var keep = wanted.ToHashSet(StringComparer.Ordinal);
        foreach (string name in _awaySince.Keys.Where(n => !keep.Contains(n) || _exported.ContainsKey(n)).ToList())
            _awaySince.Remove(name);
    }

    private static string Describe(IEnumerable<(int Segment, string Pool)> copies)
        => string.Join("; ", copies.GroupBy(c => c.Pool, StringComparer.Ordinal).Select(g => $"pool '{g.Key}' (segment{(g.Count() > 1 ? "s" : "")} {string.Join(", ", g.Select(c => c.Segment))})"));

    /// <summary>Logs the copies of <paramref name="name"/> that became stale, and those that are current again, between two of its records.</summary>
    private void LogStaleChanges(string name, SpannedVolume had, SpannedVolume now)
    {
        var stale = (now.Stale ?? []).Where(s => !s.Filling && had.StaleEntry(s.Segment, s.Pool) is not { Filling: false }).Select(s => (s.Segment, s.Pool)).ToList();
        var current = (had.Stale ?? []).Where(s => now.StaleEntry(s.Segment, s.Pool) is null).Select(s => (s.Segment, s.Pool)).ToList();
        if (stale.Count > 0)
            _log.CopiesStale(name, Describe(stale), "a write, trim or flush failed there");
        if (current.Count > 0)
            _log.CopiesCurrent(name, Describe(current));
    }

    /// <summary>Starts a background resync of every live export that has stale copies on pools online here (under _gate).</summary>
    private void StartResyncs(IReadOnlyDictionary<string, ISegmentPool> hosted)
    {
        List<(string, SpannedVolumeDevice)> due;
        lock (_exported)
        {
            due = [.. _exported.Where(e => e.Value.Device.Recorder is not null && e.Value.Device.Volume.Stale is { Count: > 0 } stale
                && stale.Any(s => hosted.ContainsKey(s.Pool))).Select(e => (e.Key, e.Value.Device))];
        }
        foreach (var (name, device) in due)
        {
            lock (_resyncs)
            {
                if (_closed || _resyncs.ContainsKey(name))
                    continue;
                long early = _resyncDue.GetValueOrDefault(name) - Environment.TickCount64;
                if (early > 0)
                {
                    Later(TimeSpan.FromMilliseconds(early + 1));   // a failed resync waits out its back-off
                    continue;
                }
                var stop = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
                var run = new Task<Task>(() => ResyncAsync(name, device, hosted, stop));
                _resyncs[name] = (run.Unwrap(), stop);
                run.Start(TaskScheduler.Default);
            }
        }
    }

    /// <summary>Resynchronizes the stale copies of <paramref name="device"/> on the pools that answer; tries again later what it could not.</summary>
    private async Task ResyncAsync(string name, SpannedVolumeDevice device, IReadOnlyDictionary<string, ISegmentPool> hosted, CancellationTokenSource stop)
    {
        try
        {
            var answering = new HashSet<string>(StringComparer.Ordinal);
            var away = new HashSet<string>(StringComparer.Ordinal);
            foreach (var copy in device.Volume.Stale ?? [])
            {
                if (answering.Contains(copy.Pool) || away.Contains(copy.Pool))
                    continue;
                bool answers = hosted.TryGetValue(copy.Pool, out var pool)
                    && await AnswersAsync(pool, SpannedVolume.SegmentName(device.Volume.Name, copy.Segment), stop.Token).ConfigureAwait(false);
                (answers ? answering : away).Add(copy.Pool);
            }
            if (answering.Count > 0)
            {
                var started = System.Diagnostics.Stopwatch.StartNew();
                _log.Resync(name, $"of the stale copies on {string.Join(", ", answering.Select(p => $"pool '{p}'"))} started");
                var pools = hosted.Where(p => !away.Contains(p.Key)).ToDictionary(StringComparer.Ordinal);   // the copies it reads and writes, and those it fills
                long copied = await device.ResyncAsync(pools, stop.Token).ConfigureAwait(false);
                _log.Resync(name, $"finished: {copied} bytes copied in {started.Elapsed.TotalSeconds:0.0} s");
                lock (_resyncs)
                    _resyncFailures.Remove(name);
            }
            if (device.Volume.Stale is { Count: > 0 })
                Later(RetryAfter);   // copies on pools that do not answer yet
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // The export was withdrawn, or the daemon stops.
        }
        catch (Exception e) when (e is IOException or VolumeException or MetadataUnavailableException or ObjectDisposedException or OperationCanceledException)
        {
            // Again after 10 s, then twice as long after each failure in a row (up to 5 min): a copy that keeps failing does not flood the log.
            TimeSpan wait;
            lock (_resyncs)
            {
                int failures = _resyncFailures[name] = _resyncFailures.GetValueOrDefault(name) + 1;
                wait = TimeSpan.FromTicks(Math.Min(LongestRetry.Ticks, RetryAfter.Ticks << Math.Min(failures - 1, 8)));
                _resyncDue[name] = Environment.TickCount64 + (long)wait.TotalMilliseconds;
            }
            _log.ResyncFailed(name, e.Message, wait.TotalSeconds);
            Later(wait);
        }
        finally
        {
            lock (_resyncs)
            {
                if (_resyncs.TryGetValue(name, out var entry) && entry.Stop == stop)
                    _resyncs.Remove(name);
            }
            stop.Dispose();
        }
    }

    private static async Task<bool> AnswersAsync(ISegmentPool pool, string segment, CancellationToken cancellationToken)
    {
        try
        {
            using var device = await pool.OpenAsync(segment, null, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is IOException or VolumeException)
        {
            return false;
        }
    }

    /// <summary>Stops the resync of <paramref name="name"/>, if one runs, and waits for it.</summary>
    private async Task StopResyncAsync(string name)
    {
        Task running;
        lock (_resyncs)
        {
            _resyncFailures.Remove(name);
            _resyncDue.Remove(name);
            if (!_resyncs.TryGetValue(name, out var entry))
                return;
            entry.Stop.Cancel();
            running = entry.Task;
        }
        await running.ConfigureAwait(false);
    }

    /// <summary>Syncs again after <paramref name="delay"/> (or sooner, when a sooner one is due already).</summary>
    private void Later(TimeSpan delay)
    {
        long at = Environment.TickCount64 + (long)Math.Ceiling(delay.TotalMilliseconds);
        lock (_resyncs)
        {
            if (_closed || _wakeAt <= at)
                return;
            _wakeAt = at;
        }
        _ = WakeAsync(delay, at);
    }

    private async Task WakeAsync(TimeSpan delay, long at)
    {
        try
        {
            await Task.Delay(delay, _stopping.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return;
        }
        lock (_resyncs)
        {
            if (_wakeAt == at)
                _wakeAt = long.MaxValue;
        }
        Changed();
    }
}
