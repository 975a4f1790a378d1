using Microsoft.Extensions.Logging;
using Storage.Metadata;
using Storage.Nbd;
using Storage.Versioning;
using Storage.Volumes;

namespace Storage.Daemon;

/// <summary>
/// Keeps the NBD exports equal to the catalogue: every volume across pools as <c>VOL</c> (writable) and every snapshot
/// as <c>VOL@SNAP</c> (read-only), each a <see cref="SpannedVolumeDevice"/> over the pools this node hosts. A record
/// whose version changed (a resize) is withdrawn and offered again; a volume with a segment on a pool that is not
/// online here is left out, with a warning, unless it is mirrored: then, once the pool has stayed away for
/// <c>degradeAfter</c>, it is offered without the copies there, which are recorded stale and resynchronized in the
/// background when the pool answers again. <see cref="SyncAsync"/> runs one at a time.
/// </summary>
internal sealed partial class VolumeExports(IMetadataStore store, NbdServer server, Func<CancellationToken, Task<IReadOnlyDictionary<string, ISegmentPool>>> pools,
    Func<SpannedVolume, bool> servedHere, TimeSpan degradeAfter, ILogger log) : IAsyncDisposable
{
    private readonly IMetadataStore _store = store;
    private readonly StaleCopies _recorder = new(store);
    private readonly TimeSpan _degradeAfter = degradeAfter;
    private readonly ILogger _log = log;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Dictionary<string, (long Version, SpannedVolumeDevice Device, SpannedVolume Volume)> _exported = new(StringComparer.Ordinal);
    private readonly HashSet<string> _warned = new(StringComparer.Ordinal);
    private readonly HashSet<string> _held = new(StringComparer.Ordinal);   // withdrawn for a resize or delete: not offered until released
    private bool _closed;
    private int _queued;   // 1 while a background sync is queued and has not started reading

    public int Count
    {
        get
        {
            lock (_exported)
                return _exported.Count;
        }
    }

    /// <summary>The live devices of <paramref name="volumes"/> that are exported (a group snapshot holds their writes).</summary>
    public IReadOnlyList<SpannedVolumeDevice> Live(IEnumerable<string> volumes)
    {
        lock (_exported)
            return [.. volumes.Where(_exported.ContainsKey).Select(v => _exported[v].Device)];
    }

    /// <summary>Reads the export of <paramref name="volume"/> has sent to each pool, or null when it is not exported.</summary>
    public IReadOnlyDictionary<string, long>? ReadsByPool(string volume)
    {
        SpannedVolumeDevice device;
        lock (_exported)
        {
            if (!_exported.TryGetValue(volume, out var exported))
                return null;
            device = exported.Device;
        }
        var reads = new SortedDictionary<string, long>(StringComparer.Ordinal);
        for (int i = 0; i < device.Volume.Segments.Count; i++)
        {
            var served = device.ReadsServed(i);
            for (int copy = 0; copy < served.Count; copy++)
                reads[device.Volume.Segments[i][copy]] = reads.GetValueOrDefault(device.Volume.Segments[i][copy]) + served[copy];
        }
        return reads;
    }

    /// <summary>
    /// For catalogue watches: syncs in the background. A transaction changes several keys at once; the events that
    /// arrive while a sync is queued share it, since that sync reads the catalogue as it is when it runs.
    /// </summary>
    public void Changed()
    {
        if (Interlocked.Exchange(ref _queued, 1) == 0)
            _ = Task.Run(SyncQueuedAsync);
    }

    private async Task SyncQueuedAsync()
    {
        try
        {
            await _gate.WaitAsync().ConfigureAwait(false);
            _gate.Release();
            Volatile.Write(ref _queued, 0);   // changes from here on queue another sync
            await SyncAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is ObjectDisposedException or MetadataUnavailableException or OperationCanceledException)
        {
            // Stopping, or the metadata service is between leaders: the next change or request syncs again.
        }
    }

    /// <summary>
    /// Withdraws <paramref name="volume"/> and its snapshots (before they are deleted or resized) and keeps them out,
    /// whatever a background sync sees meanwhile, until <see cref="ReleaseAsync"/>.
    /// </summary>
    public async Task WithdrawAsync(string volume)
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            _held.Add(volume);
            foreach (string name in _exported.Keys.Where(n => n == volume || n.StartsWith(volume + "@", StringComparison.Ordinal)).ToList())
                await RemoveAsync(name).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Lets the next sync offer <paramref name="volume"/> (and its snapshots) again, as the catalogue then has them.</summary>
    public async Task ReleaseAsync(string volume)
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            _held.Remove(volume);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Withdraws every export this node no longer serves, without asking the catalogue (a node fenced off from the
    /// metadata majority could not read it): for volumes, whether it serves one is known here.
    /// </summary>
    public async Task WithdrawUnservedAsync()
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            List<string> names;
            lock (_exported)
                names = [.. _exported.Where(e => !servedHere(e.Value.Volume)).Select(e => e.Key)];
            foreach (string name in names)
                await RemoveAsync(name).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    public async Task SyncAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_closed)
                return;
            var volumes = (await _store.ReadAllAsync("spanned/", SpannedVolume.Decode, cancellationToken).ConfigureAwait(false))
                .ToDictionary(r => r.Record.Name, r => (r.Version, Volume: r.Record), StringComparer.Ordinal);
            var wanted = new Dictionary<string, (long Version, SpannedVolume Volume, SpannedSnapshot? Snapshot)>(StringComparer.Ordinal);
            foreach (var (name, (version, volume)) in volumes)
                wanted[name] = (version, volume, null);
            foreach (var (_, version, snapshot) in await _store.ReadAllAsync("spanned-snapshots/", SpannedSnapshot.Decode, cancellationToken).ConfigureAwait(false))
            {
                if (volumes.TryGetValue(snapshot.Volume, out var of))
                    wanted[$"{snapshot.Volume}@{snapshot.Name}"] = (version, AsTaken(of.Volume, snapshot), snapshot);
            }

            var hosted = await pools(cancellationToken).ConfigureAwait(false);
            foreach (var (name, (version, device, volume)) in _exported.ToList())
            {
                if (!wanted.TryGetValue(name, out var want) || !servedHere(want.Volume))
                    await RemoveAsync(name).ConfigureAwait(false);
                else if (want.Version != version && !await AdoptedAsync(name, device, volume, want.Version, want.Volume, hosted, cancellationToken).ConfigureAwait(false))
                    await RemoveAsync(name).ConfigureAwait(false);
            }
            ForgetWaiting(wanted.Keys);
            foreach (var (name, want) in wanted)
            {
                if (_exported.ContainsKey(name) || _held.Contains(want.Snapshot?.Volume ?? name) || !servedHere(want.Volume))
                    continue;
                if (await OpenAsync(name, want.Version, want.Volume, want.Snapshot, hosted, cancellationToken).ConfigureAwait(false) is not var (device, version, volume))
                    continue;
                string description = want.Snapshot is null
                    ? $"volume over {string.Join(", ", want.Volume.Segments.SelectMany(s => s).Distinct(StringComparer.Ordinal))}, {want.Volume.SizeBytes} bytes"
                    : $"snapshot of volume '{want.Snapshot.Volume}' taken {DateTimeOffset.FromUnixTimeSeconds(want.Snapshot.Time):yyyy-MM-dd HH:mm:ss}Z, read-only";
                server.AddExport(new NbdExport(name, device, want.Snapshot is not null, description));
                lock (_exported)
                    _exported[name] = (version, device, volume);
                _log.ExportOffered(name, want.Snapshot is null ? "" : volume.Stale is null ? " read-only" : " read-only, without the copies on pools that do not answer");
            }
            StartResyncs(hosted);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Takes a changed record of an exported volume in place when only its copies differ (a segment move): the clients
    /// stay connected. False when the export must be withdrawn and offered again instead (a resize).
    /// </summary>
    private async Task<bool> AdoptedAsync(string name, SpannedVolumeDevice device, SpannedVolume had, long version, SpannedVolume volume,
        IReadOnlyDictionary<string, ISegmentPool> hosted, CancellationToken cancellationToken)
    {
        if (!device.CanAdopt(volume))
            return false;
        LogStaleChanges(name, had, volume);
        if (!device.Volume.Encode().AsSpan().SequenceEqual(volume.Encode()))   // not what the device itself recorded
        {
            if (MissingPool(volume, hosted) is { } missing)
            {
                _log.ExportWithoutPool(name, missing);
                return false;
            }
            try
            {
                await device.AdoptAsync(volume, hosted, cancellationToken: cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is VolumeException or IOException)
            {
                _log.ExportNotReady(name, e.Message);
                return false;
            }
        }
        lock (_exported)
            _exported[name] = (version, device, volume);
        return true;
    }

    /// <summary>The live device of exported volume <paramref name="volume"/>, or null.</summary>
    public SpannedVolumeDevice? Device(string volume)
    {
        lock (_exported)
            return _exported.TryGetValue(volume, out var exported) ? exported.Device : null;
    }

    /// <summary>
    /// Runs <paramref name="decide"/> (the commit decision of a transaction that drops copies) while the export of
    /// <paramref name="volume"/>'s name holds its requests, and switches it to <paramref name="volume"/> if the
    /// decision is made; without an export here, just decides. Returns whether the decision was made.
    /// </summary>
    public async Task<bool> SwitchAsync(SpannedVolume volume, Func<Task<bool>> decide, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(volume);
        ArgumentNullException.ThrowIfNull(decide);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (Device(volume.Name) is not { } device || !device.CanAdopt(volume))
                return await decide().ConfigureAwait(false);
            var hosted = await pools(cancellationToken).ConfigureAwait(false);
            bool switched = await device.AdoptAsync(volume, hosted, decide, cancellationToken).ConfigureAwait(false);
            if (switched)
            {
                lock (_exported)
                    _exported[volume.Name] = (-1, device, volume);   // the next sync reads its version
            }
            return switched;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>A volume as a snapshot saw it: its size then, and the segments that size covers.</summary>
    public static SpannedVolume AsTaken(SpannedVolume volume, SpannedSnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(volume);
        ArgumentNullException.ThrowIfNull(snapshot);
        if (snapshot.SizeBytes <= 0 || snapshot.SizeBytes >= volume.SizeBytes)
            return volume;
        int count = (int)((snapshot.SizeBytes + volume.SegmentBytes - 1) / volume.SegmentBytes);
        return volume with { SizeBytes = snapshot.SizeBytes, Segments = [.. volume.Segments.Take(count)] };
    }

    private async Task RemoveAsync(string name)
    {
        await server.RemoveExportAsync(name).ConfigureAwait(false);
        await StopResyncAsync(name).ConfigureAwait(false);
        SpannedVolumeDevice device;
        lock (_exported)
        {
            device = _exported[name].Device;
            _exported.Remove(name);
        }
        await FlushAsync(device).ConfigureAwait(false);
        device.Dispose();
        _log.ExportWithdrawn(name);
    }

    /// <summary>
    /// Makes what clients wrote durable before a device closes: segments on other nodes keep writes not yet flushed
    /// only in this process. Best effort: a pool that cannot be reached is logged.
    /// </summary>
    private async Task FlushAsync(SpannedVolumeDevice device)
    {
        try
        {
            using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await device.FlushAsync(limit.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
        {
            _log.ExportNotReady(device.Name, $"could not be flushed before it closed: {e.Message}");
        }
    }

    /// <summary>Stops syncing and closes the devices (after the server has stopped using them).</summary>
    public async ValueTask DisposeAsync()
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            _closed = true;
            await _stopping.CancelAsync().ConfigureAwait(false);
            foreach (string name in _exported.Keys.ToList())
                await StopResyncAsync(name).ConfigureAwait(false);
            List<SpannedVolumeDevice> devices;
            lock (_exported)
            {
                devices = [.. _exported.Values.Select(e => e.Device)];
                _exported.Clear();
            }
            foreach (var device in devices)
            {
                await FlushAsync(device).ConfigureAwait(false);
                device.Dispose();
            }
        }
        finally
        {
            _gate.Release();
        }
        _gate.Dispose();
        _stopping.Dispose();
    }
}
