using Microsoft.Extensions.Logging;
using Storage.Metadata;
using Storage.Versioning;
using Storage.Volumes;

namespace Storage.Daemon;

// The control requests, one at a time.
internal sealed partial class StorageNode
{
    /// <summary>Longest accepted volume or segment size: 2^56 bytes, as thin pool volumes allow.</summary>
    private const long MaxBytes = 1L << 56;

    /// <summary>Runs <paramref name="request"/>; a refusal or failure is a reply with its code and message, never an exception.</summary>
    public async Task<DaemonReply> HandleAsync(DaemonRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request is ClusterStatusRequest)   // answers even while a request waits for a metadata leader
            return new DaemonReply(DaemonReply.Ok, "") { Cluster = await ClusterAsync(cancellationToken).ConfigureAwait(false) };
        if (_options.Cluster is not null && await ForwardAsync(request, cancellationToken).ConfigureAwait(false) is { } forwarded)
            return forwarded;
        if (request is MoveVolumeRequest move)   // takes the request lock for its transactions only: the copy runs beside other requests
            return await GuardAsync(() => MoveAsync(move, cancellationToken)).ConfigureAwait(false);
        await _requests.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await GuardAsync(async () => request switch
            {
                AttachPoolRequest r => await AttachAsync(r, cancellationToken).ConfigureAwait(false),
                DetachPoolRequest r => await DetachAsync(r, cancellationToken).ConfigureAwait(false),
                ListPoolsRequest => new DaemonReply(DaemonReply.Ok, "") { Pools = await PoolViewsAsync(cancellationToken).ConfigureAwait(false) },
                CreateVolumeRequest r => await CreateVolumeAsync(r, cancellationToken).ConfigureAwait(false),
                ResizeVolumeRequest r => await ResizeVolumeAsync(r, cancellationToken).ConfigureAwait(false),
                DeleteVolumeRequest r => await DeleteVolumeAsync(r, cancellationToken).ConfigureAwait(false),
                ListVolumesRequest => new DaemonReply(DaemonReply.Ok, "")
                {
                    Volumes = [.. (await VolumesAsync(cancellationToken).ConfigureAwait(false)).Select(v => View(v) with { ReadsByPool = _exports!.ReadsByPool(v.Name) })],
                },
                CreateSnapshotRequest r => await SnapshotAsync(r, cancellationToken).ConfigureAwait(false),
                ListSnapshotsRequest r => new DaemonReply(DaemonReply.Ok, "") { Snapshots = await SnapshotViewsAsync(r.Volume, cancellationToken).ConfigureAwait(false) },
                StopRequest => Stop(),
                _ => new DaemonReply(DaemonReply.Refused, $"Unknown request {request.GetType().Name}."),
            }).ConfigureAwait(false);
        }
        finally
        {
            _requests.Release();
        }
    }

    /// <summary>Runs a request; a refusal or failure becomes a reply.</summary>
    private static async Task<DaemonReply> GuardAsync(Func<Task<DaemonReply>> run)
    {
        try
        {
            return await run().ConfigureAwait(false);
        }
        catch (Exception e) when (e is DaemonRequestException or PoolConfigurationException or PlacementException or ArgumentException or VolumeException)
        {
            // A volume transaction that fails leaves nothing behind (VolumeException's contract): refused, nothing changed.
            return new DaemonReply(DaemonReply.Refused, e.Message);
        }
        catch (Exception e) when (e is PoolFullException or IOException or MetadataUnavailableException or TimeoutException or InvalidDataException)
        {
            return new DaemonReply(DaemonReply.Failed, e.Message);
        }
    }

    private DaemonReply Stop()
    {
        StopRequested?.Invoke();
        return new DaemonReply(DaemonReply.Ok, $"stopping node '{_options.Node}': connections closed, pools committed, arrays marked clean");
    }

    private async Task<DaemonReply> AttachAsync(AttachPoolRequest request, CancellationToken cancellationToken)
    {
        var paths = request.Disks.Select(Path.GetFullPath).ToList();
        if (_pools.Values.FirstOrDefault(p => p.Members.Intersect(paths, StringComparer.Ordinal).Any()) is { } holder)
            throw new DaemonRequestException($"{string.Join(",", paths.Intersect(holder.Members, StringComparer.Ordinal))} already belongs to pool '{holder.Name}' on this node.");
        var pool = await HostedPool.OpenAsync(paths, _loggers, cancellationToken).ConfigureAwait(false);
        try
        {
            if (_pools.ContainsKey(pool.Name))
                throw new DaemonRequestException($"A pool named '{pool.Name}' is online here already; pool names are unique in the cluster.");
            var read = await _store.ReadAsync(MetadataStateMachine.PoolKey(pool.Name), cancellationToken).ConfigureAwait(false);
            if (read.IsOk)
            {
                var (node, members) = HostedPool.Locate(MetadataCodec.DecodePool(read.Value.Span));
                if (node != _options.Node || !members.SequenceEqual(pool.Members, StringComparer.Ordinal))
                    throw new DaemonRequestException($"The catalogue has pool '{pool.Name}' on node '{node}' ({string.Join(",", members)}); detach it there first, or rename one of them.");
            }
            else
            {
                var record = pool.Record(_options.Node);
                var created = await _store.ExecuteAsync(new CreatePoolCommand(record.Name, record.Arrays), cancellationToken).ConfigureAwait(false);
                if (!created.IsOk)
                    throw new DaemonRequestException($"The catalogue refused pool '{pool.Name}': {created.Message}");
            }
        }
        catch
        {
            await pool.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        lock (_pools)
            _pools[pool.Name] = pool;
        _offline.Remove(pool.Name);
        _log.PoolOnline(pool.Name, "attached", pool.Layout, string.Join(",", pool.Members));
        await CollectLeftoversAsync(pool.Name, pool, cancellationToken).ConfigureAwait(false);
        await RecoverAsync(cancellationToken).ConfigureAwait(false);   // it may hold a transaction prepared before it was detached
        await _exports!.SyncAsync(cancellationToken).ConfigureAwait(false);
        var view = (await PoolViewsAsync(cancellationToken).ConfigureAwait(false)).Single(v => v.Name == pool.Name);
        return new DaemonReply(DaemonReply.Ok, $"pool '{pool.Name}' is online on node '{_options.Node}' ({pool.Layout}, {Bytes(view.FreeBytes)} free)") { Pools = [view] };
    }

    private async Task<DaemonReply> DetachAsync(DetachPoolRequest request, CancellationToken cancellationToken)
    {
        _pools.TryGetValue(request.Name, out var pool);
        if (pool is null && !_offline.ContainsKey(request.Name))
            throw new DaemonRequestException($"Pool '{request.Name}' is not on node '{_options.Node}'; 'storage pool list' shows the pools.");
        var users = (await VolumesAsync(cancellationToken).ConfigureAwait(false)).Where(v => v.Segments.Any(s => s.Contains(request.Name))).Select(v => v.Name).ToList();
        if (users.Count > 0)
            throw new DaemonRequestException($"Pool '{request.Name}' holds segments of volume(s) {string.Join(", ", users)}; delete them, or move their segments (storage volume move VOL --from {request.Name} --to OTHER), first.");
        var deleted = await _store.ExecuteAsync(new DeletePoolCommand(request.Name), cancellationToken).ConfigureAwait(false);
        if (!deleted.IsOk)
            throw new DaemonRequestException($"The catalogue refused to drop pool '{request.Name}': {deleted.Message}");
        _offline.Remove(request.Name);   // an offline pool (its disks moved or gone) can leave the catalogue too
        if (pool is null)
            return new DaemonReply(DaemonReply.Ok, $"offline pool '{request.Name}' dropped from the catalogue; attach it again from wherever its disks are now");
        lock (_pools)
            _pools.Remove(request.Name);
        await pool.DisposeAsync().ConfigureAwait(false);
        _log.PoolClosed(request.Name, "detached");
        return new DaemonReply(DaemonReply.Ok, $"pool '{request.Name}' detached: closed cleanly and dropped from the catalogue (its data stays on {string.Join(",", pool.Members)})");
    }

    private async Task<DaemonReply> CreateVolumeAsync(CreateVolumeRequest request, CancellationToken cancellationToken)
    {
        if (request.SizeBytes is < 1 or > MaxBytes || request.SizeBytes % 512 != 0)
            throw new DaemonRequestException($"A volume's size must be a multiple of 512 bytes from 512 to 64 PiB; {request.SizeBytes} is not.");
        if (request.SegmentBytes is < 1 << 20 or > MaxBytes || request.SegmentBytes % (1 << 20) != 0)
            throw new DaemonRequestException($"The segment size must be a whole number of MiB; {request.SegmentBytes} bytes is not.");
        var known = (await PoolRecordsAsync(cancellationToken).ConfigureAwait(false)).Select(r => r.Name).Where(p => _pools.ContainsKey(p) || _options.Cluster is not null).ToList();
        if (known.Count == 0)
            throw new DaemonRequestException($"No pool is online on node '{_options.Node}'; attach one with 'storage pool attach --disks …'.");
        if (request.Group is { } group && (group.Length is 0 or > 64 || group.Contains('/', StringComparison.Ordinal)))
            throw new DaemonRequestException($"'{group}' is not a valid group name: 1 to 64 characters, no '/'.");
        if (request.Pools?.FirstOrDefault(p => !known.Contains(p)) is { } unknown)
            throw new DaemonRequestException($"There is no pool '{unknown}' {(_options.Cluster is null ? $"online on node '{_options.Node}'" : "in the cluster")}; the pools are {string.Join(", ", known.Order(StringComparer.Ordinal))}.");
        var template = new SpannedVolume(request.Name, request.SizeBytes, request.SegmentBytes, [])
        {
            Group = request.Group,
            Policy = request.Policy,
            Pools = request.Pools is { Count: > 0 } pools ? [.. pools.Distinct(StringComparer.Ordinal)] : null,
            Reads = request.Reads,
            Node = _options.Node,
        };
        var volume = await (await TransactionsAsync(cancellationToken).ConfigureAwait(false)).CreateVolumeAsync(template, new Placement(request.Policy, Random.Shared.Next()), request.Mirror ? 2 : 1, cancellationToken).ConfigureAwait(false);
        await _exports!.SyncAsync(cancellationToken).ConfigureAwait(false);
        _log.VolumeCreated(volume.Name, volume.SizeBytes, volume.Segments.Count, string.Join(",", PoolsOf(volume)));
        return new DaemonReply(DaemonReply.Ok, $"created volume '{volume.Name}' of {Bytes(volume.SizeBytes)}: {volume.Segments.Count} segment(s) of {Bytes(volume.SegmentBytes)}{(request.Mirror ? ", mirrored" : "")} over {string.Join(", ", PoolsOf(volume))}; export '{volume.Name}'")
        {
            Volumes = [View(volume)],
        };
    }

    private async Task<DaemonReply> ResizeVolumeAsync(ResizeVolumeRequest request, CancellationToken cancellationToken)
    {
        if (request.SizeBytes is < 1 or > MaxBytes || request.SizeBytes % 512 != 0)
            throw new DaemonRequestException($"A volume's size must be a multiple of 512 bytes from 512 to 64 PiB; {request.SizeBytes} is not.");
        var volume = await VolumeAsync(request.Name, cancellationToken).ConfigureAwait(false);
        RefuseWhileConnected(request.Name, "resize");
        await _exports!.WithdrawAsync(request.Name).ConfigureAwait(false);
        try
        {
            var resized = await (await TransactionsAsync(cancellationToken).ConfigureAwait(false)).ResizeVolumeAsync(request.Name, request.SizeBytes, new Placement(volume.Policy ?? PlacementPolicy.RoundRobin, Random.Shared.Next()),
                volume.Copies, cancellationToken).ConfigureAwait(false);
            return new DaemonReply(DaemonReply.Ok, $"volume '{request.Name}' is now {Bytes(resized.SizeBytes)} ({resized.Segments.Count} segment(s)); clients see the new size when they reconnect")
            {
                Volumes = [View(resized)],
            };
        }
        finally
        {
            await _exports.ReleaseAsync(request.Name).ConfigureAwait(false);
            await _exports.SyncAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task<DaemonReply> DeleteVolumeAsync(DeleteVolumeRequest request, CancellationToken cancellationToken)
    {
        var volume = await VolumeAsync(request.Name, cancellationToken).ConfigureAwait(false);
        RefuseWhileConnected(request.Name, "delete");
        await _exports!.WithdrawAsync(request.Name).ConfigureAwait(false);
        try
        {
            await (await TransactionsAsync(cancellationToken).ConfigureAwait(false)).DeleteVolumeAsync(request.Name, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await _exports.ReleaseAsync(request.Name).ConfigureAwait(false);
            await _exports.SyncAsync(cancellationToken).ConfigureAwait(false);
        }
        _log.VolumeChanged(request.Name, "deleted");
        return new DaemonReply(DaemonReply.Ok, $"deleted volume '{request.Name}' ({volume.Segments.Count} segment(s) on {string.Join(", ", PoolsOf(volume))}) and its snapshots");
    }

    private async Task<DaemonReply> SnapshotAsync(CreateSnapshotRequest request, CancellationToken cancellationToken)
    {
        var names = request.Volumes.ToList();
        if (request.Group is { } group)
        {
            var members = (await VolumesAsync(cancellationToken).ConfigureAwait(false)).Where(v => v.Group == group).Select(v => v.Name).ToList();
            if (members.Count == 0)
                throw new DaemonRequestException($"No volume is in group '{group}'; give volumes a group with 'storage volume create NAME --group {group} …'.");
            names.AddRange(members);
        }
        names = [.. names.Distinct(StringComparer.Ordinal)];
        if (names.Count == 0)
            throw new DaemonRequestException("Name the volumes to snapshot (VOL@SNAP, or SNAP --volumes A,B) or their group (--group G).");
        if (_options.Cluster is not null
            && (await VolumesAsync(cancellationToken).ConfigureAwait(false)).FirstOrDefault(v => names.Contains(v.Name) && v.Node is { } node && node != _options.Node) is { } moved)
        {
            // Its writes are held on the node that serves it, not here: a cut taken here would not be consistent.
            throw new DaemonRequestException($"Volume '{moved.Name}' is served by node '{moved.Node}' now, not '{_options.Node}'; ask again (the request goes there).");
        }
        var held = await (await TransactionsAsync(cancellationToken).ConfigureAwait(false)).SnapshotGroupAsync(request.Name, names, _exports!.Live(names), cancellationToken).ConfigureAwait(false);
        await _exports.SyncAsync(cancellationToken).ConfigureAwait(false);
        _log.SnapshotTaken(request.Name, string.Join(",", names), Math.Round(held.TotalMilliseconds, 2));
        var taken = (await SnapshotViewsAsync(null, cancellationToken).ConfigureAwait(false)).Where(s => s.Name == request.Name && names.Contains(s.Volume)).ToList();
        return new DaemonReply(DaemonReply.Ok, string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"took snapshot '{request.Name}' of {string.Join(", ", names)} at one cut (writes held {held.TotalMilliseconds:F2} ms); exports {string.Join(", ", taken.Select(s => s.FullName))}"))
        {
            Snapshots = taken,
        };
    }

    /// <summary>A resize or delete withdraws the export; refused while an NBD client (a mount) uses it or one of its snapshots.</summary>
    private void RefuseWhileConnected(string volume, string verb)
    {
        var busy = _nbd!.Exports.Select(e => e.Name).Where(n => n == volume || n.StartsWith(volume + "@", StringComparison.Ordinal))
            .Where(n => _nbd.GetConnectionCount(n) > 0).ToList();
        if (busy.Count > 0)
            throw new DaemonRequestException($"Cannot {verb} volume '{volume}' while NBD clients use {string.Join(", ", busy)}: unmount it ('storage umount DIR') or disconnect them first.");
    }

    private async Task<SpannedVolume> VolumeAsync(string name, CancellationToken cancellationToken)
    {
        var read = await _store.ReadAsync(SpannedVolume.Key(name), cancellationToken).ConfigureAwait(false);
        return read.IsOk ? SpannedVolume.Decode(read.Value.Span) : throw new DaemonRequestException($"There is no volume '{name}'; 'storage volume list' shows them.");
    }

    private async Task<IReadOnlyList<SpannedVolume>> VolumesAsync(CancellationToken cancellationToken)
        => [.. (await _store.ReadAllAsync("spanned/", SpannedVolume.Decode, cancellationToken).ConfigureAwait(false)).Select(r => r.Record)];

    private async Task<IReadOnlyList<SnapshotView>> SnapshotViewsAsync(string? volume, CancellationToken cancellationToken)
    {
        string prefix = volume is null ? "spanned-snapshots/" : SpannedSnapshot.Key(volume, "");
        var views = (await _store.ReadAllAsync(prefix, SpannedSnapshot.Decode, cancellationToken).ConfigureAwait(false)).Select(r => r.Record)
            .Select(s => new SnapshotView(s.Volume, s.Name, $"{s.Volume}@{s.Name}", s.SizeBytes, s.Group, DateTimeOffset.FromUnixTimeSeconds(s.Time)));
        return [.. views.OrderBy(v => v.Created).ThenBy(v => v.FullName, StringComparer.Ordinal)];
    }

    /// <summary>Every pool in the catalogue; with <paramref name="askPeers"/>, the other nodes report theirs (a peer asking gets only this node's).</summary>
    private async Task<IReadOnlyList<PoolView>> PoolViewsAsync(CancellationToken cancellationToken, bool askPeers = true)
    {
        var volumes = await VolumesAsync(cancellationToken).ConfigureAwait(false);
        var views = new List<PoolView>();
        Dictionary<string, IReadOnlyList<PoolView>?>? remote = null;   // the pools each other node reports, asked once
        foreach (var record in await PoolRecordsAsync(cancellationToken).ConfigureAwait(false))
        {
            var (node, members) = HostedPool.Locate(record);
            int segments = volumes.Sum(v => v.Segments.Count(s => s.Contains(record.Name)));
            string layout = record.Arrays[0].Level;
            if (_pools.TryGetValue(record.Name, out var pool))
            {
                var status = pool.Pool.GetStatus();
                views.Add(new PoolView(record.Name, node, layout, members, "online", status.TotalBytes, status.FreeBytes, segments));
            }
            else if (node != _options.Node && askPeers && _peers.TryGetValue(node, out var peer))
            {
                remote ??= new Dictionary<string, IReadOnlyList<PoolView>?>(StringComparer.Ordinal);
                if (!remote.TryGetValue(node, out var theirs))
                    remote[node] = theirs = await PeerPoolsAsync(peer, cancellationToken).ConfigureAwait(false);
                views.Add(theirs?.FirstOrDefault(v => v.Name == record.Name) is { } view ? view with { Segments = segments }
                    : new PoolView(record.Name, node, layout, members, theirs is null ? $"node '{node}' does not answer" : $"offline on node '{node}'", 0, 0, segments));
            }
            else
            {
                string state = node != _options.Node ? $"on node '{node}'" : $"offline: {_offline.GetValueOrDefault(record.Name, "not open")}";
                views.Add(new PoolView(record.Name, node, layout, members, state, 0, 0, segments));
            }
        }
        return views;
    }

    private async Task<ClusterView> ClusterAsync(CancellationToken cancellationToken)
    {
        var replicas = await ReplicaViewsAsync(cancellationToken).ConfigureAwait(false);
        int? leader = replicas.FirstOrDefault(r => r.Role == "leader")?.Id;
        if (leader is null)   // the catalogue is read at the leader: without one, say so rather than wait
            return new ClusterView(_options.Node, null, replicas, [], [], _options.NbdSocket, _tcp, _exports?.Count ?? 0);
        var inDoubt = (await _store.ReadAllAsync("tx/", MetadataCodec.DecodeTransaction, cancellationToken).ConfigureAwait(false))
            .Select(r => new TransactionView(r.Record.Id, r.Record.State.ToString().ToLowerInvariant(), r.Record.Participants)).ToList();
        return new ClusterView(_options.Node, leader, replicas, await PoolViewsAsync(cancellationToken).ConfigureAwait(false), inDoubt, _options.NbdSocket, _tcp, _exports?.Count ?? 0);
    }

    private static async Task<IReadOnlyList<PoolView>?> PeerPoolsAsync(PeerClient peer, CancellationToken cancellationToken)
    {
        try
        {
            return (await peer.SendAsync(new PeerPoolsRequest(), cancellationToken).ConfigureAwait(false)).Pools;
        }
        catch (ParticipantUnavailableException)
        {
            return null;
        }
    }

    /// <summary>
    /// In a cluster, a resize, delete or snapshot runs on the node that serves the volumes (it withdraws the export, or
    /// holds its writes for the cut): the reply of that node, or null when it is this one.
    /// </summary>
    private async Task<DaemonReply?> ForwardAsync(DaemonRequest request, CancellationToken cancellationToken)
    {
        IReadOnlyList<string> names = request switch
        {
            ResizeVolumeRequest r => [r.Name],
            DeleteVolumeRequest r => [r.Name],
            MoveVolumeRequest r => [r.Name],
            CreateSnapshotRequest r => [.. r.Volumes],
            _ => [],
        };
        if (names.Count == 0 && request is not CreateSnapshotRequest { Group: not null })
            return null;
        var volumes = await VolumesAsync(cancellationToken).ConfigureAwait(false);
        var homes = volumes.Where(v => names.Contains(v.Name) || (request is CreateSnapshotRequest { Group: { } group } && v.Group == group))
            .Select(v => v.Node ?? _options.Node).Distinct(StringComparer.Ordinal).ToList();
        if (homes.Count > 1)
        {
            return new DaemonReply(DaemonReply.Refused, $"The volumes are served by nodes {string.Join(", ", homes.Order(StringComparer.Ordinal))}; a snapshot at one cut holds " +
                "the writes of one node's exports. Snapshot each node's volumes separately, or create a group's volumes on one node.");
        }
        if (homes.Count == 0 || homes[0] == _options.Node)
            return null;
        if (!_peers.TryGetValue(homes[0], out var peer))
            return new DaemonReply(DaemonReply.Failed, $"The volume is served by node '{homes[0]}', which is not in this cluster.");
        try
        {
            return (await peer.SendAsync(new PeerForwardRequest(request), cancellationToken).ConfigureAwait(false)).Reply
                ?? new DaemonReply(DaemonReply.Failed, $"Node '{homes[0]}' did not answer the request.");
        }
        catch (ParticipantUnavailableException e)
        {
            return new DaemonReply(DaemonReply.Failed, $"The volume is served by node '{homes[0]}', which did not answer ({e.Message}). If it took the request " +
                "before it went away, the change finishes or is undone when it is back: check 'storage volume list' then, and try again if need be.");
        }
    }

    private static IEnumerable<string> PoolsOf(SpannedVolume volume) => volume.Segments.SelectMany(s => s).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal);

    private static VolumeView View(SpannedVolume v) => new(v.Name, v.SizeBytes, v.SegmentBytes, v.Segments.Count, v.Copies,
        Kebab((v.Policy ?? PlacementPolicy.RoundRobin).ToString()), Kebab((v.Reads ?? ReadPolicy.LeastQueueDepth).ToString()), v.Group, [.. PoolsOf(v)], v.Name)
    {
        Node = v.Node,
        Moving = v.Move is { } m ? $"segment {m.Segment}: {m.From} → {m.To}" : null,
        Stale = v.Stale is { } stale ? [.. stale.Select(s => new StaleCopyView(s.Segment, s.Pool, s.Filling ? "resyncing" : "stale"))] : null,
    };

    /// <summary>RoundRobin → round-robin: how the CLI spells policies.</summary>
    public static string Kebab(string name) => string.Concat(name.Select((c, i) => char.IsUpper(c) ? (i > 0 ? "-" : "") + char.ToLowerInvariant(c) : c.ToString()));

    private static string Bytes(long bytes) => Devices.ByteSizes.Format(bytes);
}
