using System.Diagnostics;
using System.Text;
using Storage.Metadata;
using Storage.Volumes;

namespace Storage.Daemon;

// Export failover in a cluster. Every node renews a lease in the Paxos log (leases/NODE) every second. A node that has
// not renewed for a third of --failover-after stops serving its volumes (it may be cut off from the majority, and
// another node is about to take them). A node that sees another's lease unchanged for --failover-after presumes it
// dead; the first live node in the cluster list then moves that node's volumes to itself (SpannedVolume.Node, a
// compare-and-set on each record) and serves them. Segment exports are tagged with the node they were offered to;
// pools withdraw those whose volume moved and refuse reconnections from the old node, so a node that was only cut off
// cannot write a segment the new one serves.
internal sealed partial class StorageNode
{
    private static readonly TimeSpan LeaseEvery = TimeSpan.FromSeconds(1);
    private readonly Dictionary<string, (long Version, long Since)> _leasesSeen = new(StringComparer.Ordinal);   // other node → its lease's version, and when this node first saw it
    private volatile Dictionary<string, string?> _owners = new Dictionary<string, string?>(StringComparer.Ordinal);   // volume → the node that serves it
    private long _renewedAt = Stopwatch.GetTimestamp();   // when the last lease renewal that succeeded was sent
    private volatile bool _fenced;
    private readonly SemaphoreSlim _refreshing = new(1, 1);
    private readonly HashSet<string> _unservedReported = new(StringComparer.Ordinal);   // lease loop only

    private static string LeaseKey(string node) => "leases/" + node;

    /// <summary>Whether this node serves <paramref name="volume"/>: it is the volume's node, and its lease is current.</summary>
    private bool ServesHere(SpannedVolume volume)
    {
        if (_fenced)
            return false;
        // The latest owner this node has read, over the record an export was opened with (it may have moved since).
        string? node = _owners.TryGetValue(volume.Name, out string? owner) ? owner : volume.Node;
        return node is null || node == _options.Node;
    }

    /// <summary>The node serving the volume whose segment is <paramref name="segment"/>, if the catalogue has the volume.</summary>
    private bool OwnerOfSegment(string segment, out string? owner)
    {
        int dot = segment.LastIndexOf('.');
        owner = null;
        return dot > 0 && _owners.TryGetValue(segment[..dot], out owner);
    }

    private async Task LeaseLoopAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(LeaseEvery);
        var failover = _options.FailoverAfter;
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                long started = Stopwatch.GetTimestamp();
                // The whole round is bounded, so the fence check below runs within a third of the failover time of
                // the last renewal that succeeded, whatever the metadata service does.
                using (var round = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
                {
                    round.CancelAfter(failover / 3);
                    try
                    {
                        using (var renewal = CancellationTokenSource.CreateLinkedTokenSource(round.Token))
                        {
                            renewal.CancelAfter(failover / 6);
                            await _store.ExecuteAsync(new PutCommand(LeaseKey(_options.Node), Encoding.UTF8.GetBytes(_options.Node)), renewal.Token).ConfigureAwait(false);
                        }
                        Volatile.Write(ref _renewedAt, started);
                        if (_fenced)
                        {
                            _fenced = false;
                            _log.Node(_options.Node, "lease renewed again: serving this node's volumes");
                            _exports?.Changed();
                        }
                        await RefreshOwnersAsync(round.Token).ConfigureAwait(false);
                        await TakeOverAsync(failover, round.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                    {
                        throw;
                    }
#pragma warning disable CA1031 // Whatever failed, the loop must go on: a node that stops renewing and fencing is worse.
                    catch (Exception e)
#pragma warning restore CA1031
                    {
                        _log.ResolveFailed($"lease round: {e.Message}");
                    }
                }
                if (!_fenced && Stopwatch.GetElapsedTime(Volatile.Read(ref _renewedAt)) > failover / 3)
                {
                    _fenced = true;
                    _log.Node(_options.Node, $"lease not renewed for {failover.TotalSeconds / 3:0.#} s (cut off from the metadata majority?): no longer serving volumes, another node may take them");
                    if (_exports is { } exports)
                        _ = exports.WithdrawUnservedAsync();   // needs no catalogue; flushes are bounded there
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Reads which node serves each volume, and withdraws segment exports offered to a node that no longer does.</summary>
    private async Task RefreshOwnersAsync(CancellationToken cancellationToken)
    {
        // One at a time: a read that began before a takeover must not install its older view after a later one.
        await _refreshing.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var volumes = await _store.ReadAllAsync("spanned/", SpannedVolume.Decode, cancellationToken).ConfigureAwait(false);
            _owners = volumes.ToDictionary(v => v.Record.Name, v => v.Record.Node, StringComparer.Ordinal);
            if (_segments is not null)
                await _segments.WithdrawWhereAsync(o => o.Owner is not null && OwnerOfSegment(o.Segment, out string? owner) && owner is not null && owner != o.Owner).ConfigureAwait(false);
        }
        finally
        {
            _refreshing.Release();
        }
    }

    /// <summary>
    /// Moves the volumes of nodes whose lease has not changed for <paramref name="failover"/> to this node, if this is
    /// the first live node in the cluster list (any other live node leaves it to that one; a compare-and-set on each
    /// volume keeps two from both taking one).
    /// </summary>
    private async Task TakeOverAsync(TimeSpan failover, CancellationToken cancellationToken)
    {
        var versions = (await _store.ListAsync("leases/", cancellationToken).ConfigureAwait(false)).ToDictionary(k => k.Key, k => k.Version, StringComparer.Ordinal);
        long now = Stopwatch.GetTimestamp();
        var dead = new HashSet<string>(StringComparer.Ordinal);
        foreach (var node in _options.Cluster!.Where(n => n.Name != _options.Node))
        {
            long version = versions.GetValueOrDefault(LeaseKey(node.Name));
            if (!_leasesSeen.TryGetValue(node.Name, out var seen) || seen.Version != version)
                _leasesSeen[node.Name] = (version, now);
            else if (Stopwatch.GetElapsedTime(seen.Since, now) >= failover)
                dead.Add(node.Name);
        }
        if (dead.Count == 0 || _options.Cluster!.First(n => !dead.Contains(n.Name)).Name != _options.Node)
            return;
        bool moved = false;
        var lostPools = (await RemotePoolsAsync(cancellationToken).ConfigureAwait(false)).Where(p => dead.Contains(p.Node)).Select(p => p.Pool).ToHashSet(StringComparer.Ordinal);
        foreach (var (key, version, volume) in await _store.ReadAllAsync("spanned/", SpannedVolume.Decode, cancellationToken).ConfigureAwait(false))
        {
            if (volume.Node is not { } from || !dead.Contains(from))
                continue;
            if (volume.Segments.SelectMany(s => s).FirstOrDefault(lostPools.Contains) is { } lost)
            {
                if (_unservedReported.Add(volume.Name))
                    _log.Node(_options.Node, $"volume '{volume.Name}' of lost node '{from}' stays there: its pool '{lost}' is on that node too, so no other node can serve it");
                continue;
            }
            var result = await _store.ExecuteAsync(new PutCommand(key, (volume with { Node = _options.Node }).Encode(), version), cancellationToken).ConfigureAwait(false);
            if (result.IsOk)
            {
                moved = true;
                _log.Node(_options.Node, $"took over volume '{volume.Name}' from node '{from}' (its lease unchanged for {failover.TotalSeconds:0.#} s); export '{volume.Name}' now here");
            }
        }
        if (moved)
        {
            await RefreshOwnersAsync(cancellationToken).ConfigureAwait(false);
            _exports?.Changed();
        }
    }
}
