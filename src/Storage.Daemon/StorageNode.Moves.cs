using System.Diagnostics;
using System.Globalization;
using Storage.Volumes;

namespace Storage.Daemon;

// Online segment moves: begin (a transaction adds the new copy), fill it while the export serves, finish (a
// transaction drops the old copy while the export holds its requests for the decision).
internal sealed partial class StorageNode
{
    private async Task<DaemonReply> MoveAsync(MoveVolumeRequest request, CancellationToken cancellationToken)
    {
        string name = request.Name;
        var volume = await VolumeAsync(name, cancellationToken).ConfigureAwait(false);
        if (request.Cancel)
        {
            if (request.Segment is not null || request.From is not null || request.To is not null)
                throw new DaemonRequestException("--cancel takes only the volume's name: it undoes the move in progress.");
            var move = volume.Move ?? throw new DaemonRequestException($"Volume '{name}' has no segment move in progress.");
            var undone = await LockedAsync(async () => await (await TransactionsAsync(cancellationToken).ConfigureAwait(false))
                .FinishMoveAsync(name, cancel: true, Switch, cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
            _log.VolumeChanged(name, $"move of segment {move.Segment} to {move.To} cancelled");
            return new DaemonReply(DaemonReply.Ok, $"cancelled the move of segment {move.Segment} of volume '{name}' to pool '{move.To}'; it stays on pool '{move.From}'")
            {
                Volumes = [View(undone)],
            };
        }
        string to = request.To ?? throw new DaemonRequestException($"Give the pool to move to: storage volume move {name} --to POOL (--segment N, or --from POOL for every segment there).");
        List<int> segments = request.Segment is { } one ? [one]
            : request.From is { } from ? [.. Enumerable.Range(0, volume.Segments.Count).Where(i => volume.Segments[i].Contains(from, StringComparer.Ordinal))]
            : throw new DaemonRequestException($"Say what moves: --segment N, or --from POOL for every segment of volume '{name}' on that pool.");
        if (segments.Count == 0)
            throw new DaemonRequestException($"Volume '{name}' has no segment on pool '{request.From}'; its pools are {string.Join(", ", PoolsOf(volume))}.");
        if (request.From is { } lost && segments.Any(i => volume.StaleEntry(i, lost) is not null))
            return await ReplaceAsync(volume, segments, lost, to, cancellationToken).ConfigureAwait(false);
        if (volume.Move is { } running && segments.Remove(running.Segment))
            segments.Insert(0, running.Segment);   // the move cut short goes first (a resume)
        var clock = Stopwatch.StartNew();
        long copied = 0;
        var last = volume;
        foreach (int index in segments)
        {
            var started = await LockedAsync(async () => await (await TransactionsAsync(cancellationToken).ConfigureAwait(false))
                .BeginMoveAsync(name, index, request.From, to, cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
            await _exports!.SyncAsync(cancellationToken).ConfigureAwait(false);   // the export takes the new copy in place
            if (_exports.Device(name) is not { } device || device.Volume.Move != started.Move)
            {
                throw new DaemonRequestException($"Volume '{name}' is not served here now (is one of its pools offline?). The move of segment {index} stays in " +
                    $"progress (the new copy on '{to}' is written, not read): run the same command again once it is served, or cancel it with 'storage volume move {name} --cancel'.");
            }
            var began = Stopwatch.GetTimestamp();
            try
            {
                copied += await device.FillAsync(null, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or Devices.BlockDeviceException)
            {
                throw new IOException($"The copy of segment {index} of volume '{name}' to pool '{to}' stopped: {e.Message}. Nothing is lost; the move stays in progress: " +
                    $"run the same command again to copy it again, or cancel it with 'storage volume move {name} --cancel'.", e);
            }
            last = await LockedAsync(async () => await (await TransactionsAsync(cancellationToken).ConfigureAwait(false))
                .FinishMoveAsync(name, cancel: false, Switch, cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
            _log.VolumeChanged(name, string.Create(CultureInfo.InvariantCulture,
                $"segment {index} moved from {started.Move!.From} to {to} while served ({Stopwatch.GetElapsedTime(began).TotalSeconds:F2} s)"));
        }
        await _exports!.SyncAsync(cancellationToken).ConfigureAwait(false);
        double seconds = clock.Elapsed.TotalSeconds;
        return new DaemonReply(DaemonReply.Ok, string.Create(CultureInfo.InvariantCulture,
            $"moved {segments.Count} segment(s) of volume '{name}' to pool '{to}' while it served: {Bytes(copied)} of data copied in {seconds:F2} s"))
        {
            Volumes = [View(last)],
        };

        Task Switch(SpannedVolume done, Func<Task<bool>> decide) => _exports!.SwitchAsync(done, decide, cancellationToken);
    }

    /// <summary>
    /// Replaces the stale copies of <paramref name="segments"/> on pool <paramref name="lost"/> by new copies on
    /// <paramref name="to"/>, which the export then resynchronizes in the background; the old copies are deleted when
    /// that pool is online on its node (now, if it is here).
    /// </summary>
    private async Task<DaemonReply> ReplaceAsync(SpannedVolume volume, List<int> segments, string lost, string to, CancellationToken cancellationToken)
    {
        string name = volume.Name;
        if (segments.FirstOrDefault(i => volume.StaleEntry(i, lost) is not { Filling: false }, -1) is var busy and >= 0)
        {
            throw new DaemonRequestException(volume.StaleEntry(busy, lost) is null
                ? $"Segment {busy} of volume '{name}' has a current copy on pool '{lost}' while others there are stale; move it on its own (--segment {busy}) once the rest are replaced."
                : $"The copy of segment {busy} of volume '{name}' on pool '{lost}' is being resynchronized; wait for the resync to end or fail, then try again.");
        }
        var last = volume;
        foreach (int index in segments)
        {
            last = await LockedAsync(async () => await (await TransactionsAsync(cancellationToken).ConfigureAwait(false))
                .ReplaceStaleCopyAsync(name, index, lost, to, cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
        }
        HostedPool? here;
        lock (_pools)
            _pools.TryGetValue(lost, out here);
        if (here is not null)
            await CollectLeftoversAsync(lost, here, cancellationToken).ConfigureAwait(false);
        await _exports!.SyncAsync(cancellationToken).ConfigureAwait(false);   // the export takes the new copies and resynchronizes them
        _log.VolumeChanged(name, $"stale copies of segment(s) {string.Join(", ", segments)} on {lost} replaced by new copies on {to}, to be resynchronized");
        return new DaemonReply(DaemonReply.Ok, $"replaced the {segments.Count} stale copy(ies) of volume '{name}' on pool '{lost}' by new copies on pool '{to}'; " +
            $"they are resynchronized in the background from the other copy ('storage volume list' shows when they are current)")
        {
            Volumes = [View(last)],
        };
    }

    /// <summary>Deletes the old copies left on pool <paramref name="name"/> (open here) when they were replaced elsewhere; a failure is logged, and the next open tries again.</summary>
    private async Task CollectLeftoversAsync(string name, HostedPool pool, CancellationToken cancellationToken)
    {
        try
        {
            foreach (string segment in await Leftovers.CollectAsync(_store, name, pool.Pool, cancellationToken).ConfigureAwait(false))
                _log.LeftoverDeleted(name, segment);
        }
        catch (Exception e) when (e is VolumeException or IOException or Metadata.MetadataUnavailableException)
        {
            _log.LeftoversKept(name, e.Message);
        }
    }

    /// <summary>Runs <paramref name="work"/> as one control request (no other request's transaction runs meanwhile).</summary>
    private async Task<T> LockedAsync<T>(Func<Task<T>> work, CancellationToken cancellationToken)
    {
        await _requests.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await work().ConfigureAwait(false);
        }
        finally
        {
            _requests.Release();
        }
    }
}
