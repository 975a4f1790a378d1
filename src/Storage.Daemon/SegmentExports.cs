using Storage.Nbd;
using Storage.Versioning;

namespace Storage.Daemon;

/// <summary>
/// The segments of this node's pools that other nodes read and write, on the segment NBD port: each offered when a
/// node asks (<see cref="OfferAsync"/>) as <c>POOL/SEGMENT</c> or <c>POOL/SEGMENT@SNAP</c> (read-only), withdrawn
/// when the segment goes (<see cref="SweepAsync"/>) or before a transaction deletes it.
/// </summary>
internal sealed class SegmentExports(Func<IReadOnlyDictionary<string, Pool>> pools) : IAsyncDisposable
{
    private NbdServer? _server;

    /// <summary>The server the exports are offered on (set once, before any request).</summary>
    public NbdServer Server
    {
        get => _server ?? throw new InvalidOperationException("No segment server yet.");
        set => _server = value;
    }

    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Dictionary<string, (string Pool, string Segment, string? Snapshot, PoolVolume Device)> _offered = new(StringComparer.Ordinal);

    public static string ExportName(string pool, string segment, string? snapshot) => $"{pool}/{segment}{(snapshot is null ? "" : "@" + snapshot)}";

    /// <summary>Offers the segment (if not yet) and returns its export name.</summary>
    /// <exception cref="PoolConfigurationException">The pool is not here, or has no such segment or snapshot.</exception>
    public async Task<string> OfferAsync(string pool, string segment, string? snapshot)
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            return Offer(pool, segment, snapshot);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// For <see cref="NbdServerOptions.OfferOnDemand"/>: a client asks for <c>POOL/SEGMENT[@SNAP]</c> that is not
    /// offered (a node reconnecting after this one restarted); offers it if the pool holds it.
    /// </summary>
    public bool OfferByName(string name)
    {
        int slash = name.IndexOf('/', StringComparison.Ordinal), at = name.IndexOf('@', StringComparison.Ordinal);
        if (slash <= 0)
            return false;
        string pool = name[..slash], segment = at > slash ? name[(slash + 1)..at] : name[(slash + 1)..];
        _gate.Wait();
        try
        {
            Offer(pool, segment, at > slash ? name[(at + 1)..] : null);
            return true;
        }
        catch (PoolConfigurationException)
        {
            return false;
        }
        finally
        {
            _gate.Release();
        }
    }

    private string Offer(string pool, string segment, string? snapshot)
    {
        string name = ExportName(pool, segment, snapshot);
        if (_offered.ContainsKey(name))
            return name;
        var open = pools().GetValueOrDefault(pool) ?? throw new PoolConfigurationException($"Pool '{pool}' is not online on this node.");
        var device = snapshot is null ? open.OpenVolume(segment) : open.OpenSnapshot(segment, snapshot);
        Server.AddExport(new NbdExport(name, device, snapshot is not null, $"segment of pool '{pool}'"));
        _offered[name] = (pool, segment, snapshot, device);
        return name;
    }

    /// <summary>Withdraws segment <paramref name="segment"/> of <paramref name="pool"/> and its snapshots (before it is deleted).</summary>
    public Task WithdrawAsync(string pool, string segment) => RemoveWhereAsync(o => o.Pool == pool && o.Segment == segment);

    /// <summary>Withdraws what is gone: pools no longer here, segments and snapshots no longer in their pool.</summary>
    public Task SweepAsync()
    {
        var open = pools();
        var live = open.ToDictionary(p => p.Key, p => (Volumes: p.Value.ListVolumes().ToDictionary(v => v.Name, v => v.Size, StringComparer.Ordinal),
            Snapshots: p.Value.ListSnapshots(countSpace: false).Select(s => (s.Volume, s.Name)).ToHashSet()), StringComparer.Ordinal);
        return RemoveWhereAsync(o => !live.TryGetValue(o.Pool, out var pool) || !pool.Volumes.TryGetValue(o.Segment, out long size)
            || (o.Snapshot is { } snapshot ? !pool.Snapshots.Contains((o.Segment, snapshot)) : size != o.Device.Capacity));
    }

    private async Task RemoveWhereAsync(Func<(string Pool, string Segment, string? Snapshot, PoolVolume Device), bool> gone)
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            foreach (var (name, offered) in _offered.Where(o => gone(o.Value)).ToList())
            {
                await Server.RemoveExportAsync(name).ConfigureAwait(false);
                offered.Device.Dispose();
                _offered.Remove(name);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Closes the devices (after the server has stopped).</summary>
    public async ValueTask DisposeAsync()
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        foreach (var offered in _offered.Values)
            offered.Device.Dispose();
        _offered.Clear();
        _gate.Release();
        _gate.Dispose();
    }
}
