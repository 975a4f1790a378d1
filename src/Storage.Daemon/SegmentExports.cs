using Storage.Nbd;
using Storage.Versioning;

namespace Storage.Daemon;

/// <summary>
/// The segments of this node's pools that other nodes read and write, on the segment NBD port: each offered when a
/// node asks (<see cref="OfferAsync"/>) as <c>POOL/SEGMENT#NODE</c> or <c>POOL/SEGMENT@SNAP#NODE</c> (read-only), NODE
/// being the node that serves the segment's volume; withdrawn when the segment goes (<see cref="SweepAsync"/>), before
/// a transaction deletes it, or when the volume moves to another node (and not offered again to the old one).
/// </summary>
/// <param name="pools">The pools open here.</param>
/// <param name="ownerOf">The node serving the volume of a segment: false when the catalogue has no such volume.</param>
internal sealed class SegmentExports(Func<IReadOnlyDictionary<string, Pool>> pools, SegmentOwner ownerOf) : IAsyncDisposable
{
    private NbdServer? _server;

    /// <summary>The server the exports are offered on (set once, before any request).</summary>
    public NbdServer Server
    {
        get => _server ?? throw new InvalidOperationException("No segment server yet.");
        set => _server = value;
    }

    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Dictionary<string, Offered> _offered = new(StringComparer.Ordinal);

    public static string ExportName(string pool, string segment, string? snapshot, string? owner) =>
        $"{pool}/{segment}{(snapshot is null ? "" : "@" + snapshot)}{(owner is null ? "" : "#" + owner)}";

    /// <summary>Offers the segment (if not yet) to node <paramref name="owner"/> and returns its export name.</summary>
    /// <exception cref="PoolConfigurationException">The pool is not here, or has no such segment or snapshot.</exception>
    public async Task<string> OfferAsync(string pool, string segment, string? snapshot, string? owner)
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            return Offer(pool, segment, snapshot, owner);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// For <see cref="NbdServerOptions.OfferOnDemand"/>: a client asks for <c>POOL/SEGMENT[@SNAP]#NODE</c> that is not
    /// offered (a node reconnecting after this one restarted); offers it if the pool holds it and NODE still serves
    /// the segment's volume.
    /// </summary>
    public bool OfferByName(string name)
    {
        int hash = name.LastIndexOf('#');
        string? owner = hash > 0 ? name[(hash + 1)..] : null;
        string rest = hash > 0 ? name[..hash] : name;
        int slash = rest.IndexOf('/', StringComparison.Ordinal), at = rest.IndexOf('@', StringComparison.Ordinal);
        if (slash <= 0)
            return false;
        string pool = rest[..slash], segment = at > slash ? rest[(slash + 1)..at] : rest[(slash + 1)..];
        if (!ownerOf(segment, out string? current) || (current is not null && current != owner))
            return false;   // the volume is gone, or served by another node now: the old one is fenced off
        _gate.Wait();
        try
        {
            Offer(pool, segment, at > slash ? rest[(at + 1)..] : null, owner);
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

    private string Offer(string pool, string segment, string? snapshot, string? owner)
    {
        string name = ExportName(pool, segment, snapshot, owner);
        if (_offered.ContainsKey(name))
            return name;
        var open = pools().GetValueOrDefault(pool) ?? throw new PoolConfigurationException($"Pool '{pool}' is not online on this node.");
        var device = snapshot is null ? open.OpenVolume(segment) : open.OpenSnapshot(segment, snapshot);
        Server.AddExport(new NbdExport(name, device, snapshot is not null, $"segment of pool '{pool}'"));
        _offered[name] = new Offered(pool, segment, snapshot, owner, device);
        return name;
    }

    /// <summary>Withdraws segment <paramref name="segment"/> of <paramref name="pool"/> and its snapshots (before it is deleted).</summary>
    public Task WithdrawAsync(string pool, string segment) => WithdrawWhereAsync(o => o.Pool == pool && o.Segment == segment);

    /// <summary>Withdraws what is gone: pools no longer here, segments and snapshots no longer in their pool.</summary>
    public Task SweepAsync()
    {
        var open = pools();
        var live = open.ToDictionary(p => p.Key, p => (Volumes: p.Value.ListVolumes().ToDictionary(v => v.Name, v => v.Size, StringComparer.Ordinal),
            Snapshots: p.Value.ListSnapshots(countSpace: false).Select(s => (s.Volume, s.Name)).ToHashSet()), StringComparer.Ordinal);
        return WithdrawWhereAsync(o => !live.TryGetValue(o.Pool, out var pool) || !pool.Volumes.TryGetValue(o.Segment, out long size)
            || (o.Snapshot is { } snapshot ? !pool.Snapshots.Contains((o.Segment, snapshot)) : size != o.Device.Capacity));
    }

    /// <summary>Withdraws the exports <paramref name="gone"/> picks (their clients are disconnected).</summary>
    public async Task WithdrawWhereAsync(Func<Offered, bool> gone)
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

/// <summary>An export: which segment (or snapshot of it), offered to which node, and the open device.</summary>
internal sealed record Offered(string Pool, string Segment, string? Snapshot, string? Owner, PoolVolume Device);

/// <summary>The node that serves the volume of <paramref name="segment"/> (null: any); false when there is no such volume.</summary>
internal delegate bool SegmentOwner(string segment, out string? owner);
