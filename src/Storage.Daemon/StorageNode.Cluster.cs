using System.Diagnostics;
using System.Net.Sockets;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Storage.Metadata;
using Storage.Nbd;
using Storage.Versioning;
using Storage.Volumes;

namespace Storage.Daemon;

// A node of a cluster: one metadata replica here, the others on the other nodes; the other nodes' pools reached
// through their peer ports (transactions) and segment NBD ports (data).
internal sealed partial class StorageNode
{
    private readonly Dictionary<string, PeerClient> _peers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _undecidedSince = new(StringComparer.Ordinal);   // transaction → when first seen undecided
    private readonly HashSet<string> _reported = new(StringComparer.Ordinal);   // resolutions logged (a node down repeats them until it is back)
    private readonly ClusterKey? _key;
    private LineServer? _peerServer;
    private NbdServer? _segmentNbd;
    private SegmentExports? _segments;
    private BackgroundLoop? _resolver;
    private BackgroundLoop? _leases;

    /// <summary>How often a cluster node looks for transactions in doubt (and exports that could not be opened).</summary>
    private static readonly TimeSpan ResolveEvery = TimeSpan.FromSeconds(2);

    private static async Task<StorageNode> StartInClusterAsync(DaemonOptions options, ILoggerFactory loggers, CancellationToken cancellationToken)
    {
        var self = options.Self ?? throw new DaemonRequestException($"--node {options.Node} is not one of the cluster's nodes ({string.Join(", ", options.Cluster!.Select(n => n.Name))}).");
        if (options.ClusterKeyPath is null && options.Cluster!.FirstOrDefault(n => !System.Net.IPAddress.IsLoopback(n.Address)) is { } wide)
            throw new DaemonRequestException($"Node '{wide.Name}' is at {wide.Address}, not a loopback address: a cluster beyond this machine needs a cluster key (--cluster-key).");
        CheckClusterFile(options);
        string dir = Path.Combine(options.Directory, "meta", self.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
        DaemonRecords.CreateOwnerOnly(dir);
        bool bootstrap = !File.Exists(Path.Combine(dir, Storage.Consensus.DurableLog.LogFileName));
        var key = options.ClusterKeyPath is null ? null : ClusterKey.Load(options.ClusterKeyPath);
        var peers = options.Cluster!.ToDictionary(n => n.Id, n => n.Consensus);
        ReplicaHost replica;
        try
        {
            replica = ReplicaHost.Start(new MetadataReplicaOptions { Id = self.Id, Directory = dir, InitialConfig = ReplicaHost.ConfigurationOf(peers), Bootstrap = bootstrap },
                peers, self.Metadata, key?.ServerOptions(), key?.ClientOptions());
        }
        catch
        {
            key?.Dispose();
            throw;
        }
        var client = new MetadataClient(options.Cluster!.ToDictionary(n => n.Id, n => n.Metadata)) { Tls = key?.ClientOptions() };
        var node = new StorageNode(options, loggers, replica, client, key);
        try
        {
            await node.WaitForMajorityAsync(cancellationToken).ConfigureAwait(false);
            int leader = (await node.ReplicaViewsAsync(cancellationToken).ConfigureAwait(false)).FirstOrDefault(r => r.Role == "leader")?.Id ?? 0;
            node._log.ClusterReplicaStarted(self.Id, string.Join(",", options.Cluster!), self.Consensus.ToString(), dir, leader,
                key is null ? "plain TCP on loopback" : $"TLS 1.3, cluster key {key.Fingerprint[..16]}");
            await node.OpenPoolsAsync(cancellationToken).ConfigureAwait(false);
            await node.RefreshOwnersAsync(cancellationToken).ConfigureAwait(false);
            node.ServePeers(self);
            await node.RecoverAsync(cancellationToken).ConfigureAwait(false);
            await node.ServeAsync(cancellationToken).ConfigureAwait(false);
            node._resolver = new BackgroundLoop(node.ResolveLoopAsync);
            node._leases = new BackgroundLoop(node.LeaseLoopAsync);
            return node;
        }
        catch
        {
            await node.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// The cluster a directory was first started with is written in it (<c>cluster</c>); a later start with another
    /// list is refused: replica ids are positions in the list, and a changed list would give a log to another replica.
    /// </summary>
    private static void CheckClusterFile(DaemonOptions options)
    {
        string path = Path.Combine(options.Directory, "cluster"), wanted = string.Join(",", options.Cluster!) + $" node={options.Node}";
        if (!File.Exists(path))
        {
            File.WriteAllText(path, wanted + "\n");
            return;
        }
        string had = File.ReadAllText(path).Trim();
        if (had != wanted)
            throw new DaemonRequestException($"{options.Directory} belongs to cluster '{had}', not '{wanted}'; start it with the same --cluster and --node, or use a new directory.");
    }

    private async Task WaitForMajorityAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            try
            {
                await _store.ListAsync("pools/", cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (MetadataUnavailableException e)
            {
                _log.WaitingForMajority(e.Message);   // the other nodes are not up yet: start them
            }
        }
    }

    private void ServePeers(ClusterNode self)
    {
        var listener = new Socket(self.Peer.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            listener.Bind(self.Peer);
            listener.Listen(64);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
        _segments = new SegmentExports(OpenPools, OwnerOfSegment);
        _segmentNbd = new NbdServer(new NbdServerOptions { Log = _loggers.CreateLogger("Storage.Nbd.Segments").Event, OfferOnDemand = _segments.OfferByName });
        _segments.Server = _segmentNbd;
        _segmentNbd.ListenTcp(self.Segments, _key?.NbdOptions(_options.Cluster!.Select(n => n.Address)));
        _peerServer = new LineServer(listener, AnswerPeerAsync, _key?.ServerOptions());
        _log.PeerListening(self.Peer.ToString(), self.Segments.ToString());
    }

    private async Task<string> AnswerPeerAsync(string line, CancellationToken cancellationToken)
    {
        PeerReply reply;
        try
        {
            var request = JsonSerializer.Deserialize(line, PeerJson.Default.PeerRequest);
            reply = request is null ? new PeerReply(DaemonReply.Refused, "An empty request.")
                : !_peers.ContainsKey(request.From) ? new PeerReply(DaemonReply.Refused, $"'{request.From}' is not a node of this cluster.")
                : await HandlePeerAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch (JsonException e)
        {
            reply = new PeerReply(DaemonReply.Refused, $"Not a peer request: {e.Message}");
        }
        catch (ParticipantUnavailableException e)
        {
            reply = new PeerReply(DaemonReply.Failed, e.Message);   // the pool is not online here: not a vote
        }
        catch (Exception e) when (e is PoolConfigurationException or PoolFullException or IOException or VolumeException)
        {
            reply = new PeerReply(DaemonReply.Refused, e.Message);   // for a prepare: a no vote
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            reply = new PeerReply(DaemonReply.Failed, $"Node '{_options.Node}' failed on this request ({e.GetType().Name}: {e.Message}); see its log.");
        }
        return JsonSerializer.Serialize(reply, PeerJson.Default.PeerReply);
    }

    private async Task<PeerReply> HandlePeerAsync(PeerRequest request, CancellationToken cancellationToken)
    {
        switch (request)
        {
            case PeerFreeRequest r:
                return new PeerReply(DaemonReply.Ok, "") { Free = Hosted(r.Pool).Pool.GetStatus().FreeBytes };
            case PeerPrepareRequest r:
                foreach (string segment in r.Work.Delete.Concat(r.Work.Grow.Select(g => g.Name)))
                    await _segments!.WithdrawAsync(r.Pool, segment).ConfigureAwait(false);   // deleted, or offered again at the new size
                await Participant(r.Pool).PrepareAsync(r.Transaction, new SegmentWork([.. r.Work.Create.Select(c => (c.Name, c.Size))])
                {
                    Delete = r.Work.Delete,
                    Snapshot = [.. r.Work.Snapshot.Select(s => (s.Segment, s.Name))],
                    Grow = [.. r.Work.Grow.Select(g => (g.Name, g.Size))],
                }, null, cancellationToken).ConfigureAwait(false);
                return new PeerReply(DaemonReply.Ok, "prepared");
            case PeerResolveRequest r:
                var participant = Participant(r.Pool);
                if (r.Commit)
                    await participant.CommitAsync(r.Transaction, cancellationToken).ConfigureAwait(false);
                else
                    await participant.AbortAsync(r.Transaction, cancellationToken).ConfigureAwait(false);
                await SweepAsync().ConfigureAwait(false);   // the coordinator reconciles sizes (PeerReconcileRequest) for what it resized
                return new PeerReply(DaemonReply.Ok, r.Commit ? "committed" : "aborted");
            case PeerPreparedRequest r:
                return new PeerReply(DaemonReply.Ok, "") { Transactions = Participant(r.Pool).Prepared() };
            case PeerReconcileRequest r:
                var read = await _store.ReadAsync(SpannedVolume.Key(r.Volume), cancellationToken).ConfigureAwait(false);
                if (read.IsOk)
                    await Participant(r.Pool).ReconcileAsync(SpannedVolume.Decode(read.Value.Span), cancellationToken).ConfigureAwait(false);
                return new PeerReply(DaemonReply.Ok, "");
            case PeerExportRequest r:
                await RefreshOwnersAsync(cancellationToken).ConfigureAwait(false);
                if (OwnerOfSegment(r.Segment, out string? owner) && owner is not null && owner != r.From)
                    return new PeerReply(DaemonReply.Refused, $"Volume of segment '{r.Segment}' is served by node '{owner}' now, not '{r.From}'.");
                if (owner is not null && owner != _options.Node && _exports is not null)
                    await _exports.WithdrawUnservedAsync().ConfigureAwait(false);   // the volume moved from here: stop writing it before another node does
                return new PeerReply(DaemonReply.Ok, "") { Export = await _segments!.OfferAsync(r.Pool, r.Segment, r.Snapshot, r.From).ConfigureAwait(false) };
            case PeerPoolsRequest:
                return new PeerReply(DaemonReply.Ok, "") { Pools = [.. (await PoolViewsAsync(cancellationToken, askPeers: false).ConfigureAwait(false)).Where(v => v.Node == _options.Node)] };
            case PeerForwardRequest when _exports is null:
                return new PeerReply(DaemonReply.Ok, "") { Reply = new DaemonReply(DaemonReply.Failed, $"Node '{_options.Node}' is still starting; try again in a moment.") };
            case PeerForwardRequest r:
                return new PeerReply(DaemonReply.Ok, "") { Reply = await ControlServer.HandleAsync(r.Request, HandleAsync, _log, cancellationToken).ConfigureAwait(false) };
            default:
                return new PeerReply(DaemonReply.Refused, $"Unknown peer request {request.GetType().Name}.");
        }
    }

    /// <summary>Withdraws exports of segments that are gone or changed size; best effort (the next sweep tries again).</summary>
    private async Task SweepAsync()
    {
        try
        {
            await _segments!.SweepAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or PoolConfigurationException or ObjectDisposedException)
        {
            _log.ResolveFailed($"withdrawing stale segment exports: {e.Message}");
        }
    }

    private HostedPool Hosted(string pool)
    {
        lock (_pools)
            return _pools.GetValueOrDefault(pool) ?? throw new ParticipantUnavailableException($"Pool '{pool}' is not online on node '{_options.Node}'.");
    }

    private PoolParticipant Participant(string pool)
    {
        var participant = Hosted(pool).Participant;
        if (_options.KillAtStep is not null)
            participant.Step = KillAt;
        return participant;
    }

    private async Task ReconcileHereAsync(CancellationToken cancellationToken)
        => await new VolumeTransactions(_store, LocalParticipants()).ReconcileAllAsync(cancellationToken).ConfigureAwait(false);

    private List<ITransactionParticipant> LocalParticipants()
    {
        lock (_pools)
            return [.. _pools.Values.Select(p => p.Participant)];
    }

    /// <summary>
    /// Whether an undecided transaction may be aborted: once it has been undecided for <see cref="DaemonOptions.InDoubtAfter"/>
    /// since this node first saw it so, its coordinator is presumed dead.
    /// </summary>
    private bool MayAbort(string transaction)
    {
        long now = Stopwatch.GetTimestamp();
        lock (_undecidedSince)
        {
            if (!_undecidedSince.TryGetValue(transaction, out long since))
            {
                _undecidedSince[transaction] = now;
                return false;
            }
            return Stopwatch.GetElapsedTime(since, now) >= _options.InDoubtAfter;
        }
    }

    /// <summary>
    /// A cluster node's background work: resolves transactions in doubt that touch any pool (a prepared participant
    /// with no word asks the metadata service; an undecided one is aborted after <see cref="DaemonOptions.InDoubtAfter"/>),
    /// and offers exports that could not be opened before (a node was down).
    /// </summary>
    private async Task ResolveLoopAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(ResolveEvery);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                await _requests.WaitAsync(cancellationToken).ConfigureAwait(false);   // no transaction of this node's is under way meanwhile
                try
                {
                    var resolved = await (await TransactionsAsync(cancellationToken).ConfigureAwait(false)).RecoverAsync(MayAbort, reconcile: false, cancellationToken).ConfigureAwait(false);
                    foreach (var (transaction, committed) in resolved.Where(r => _reported.Add(r.Transaction)))
                        _log.Recovered(transaction, committed ? "committed" : "aborted");
                    if (resolved.Count > 0)
                    {
                        await SweepAsync().ConfigureAwait(false);
                        await ReconcileHereAsync(cancellationToken).ConfigureAwait(false);
                    }
                    // Forget the clocks and log marks of transactions that are gone from the catalogue.
                    var open = (await _store.ListAsync("tx/", cancellationToken).ConfigureAwait(false)).Select(k => k.Key["tx/".Length..]).ToHashSet(StringComparer.Ordinal);
                    lock (_undecidedSince)
                    {
                        foreach (string gone in _undecidedSince.Keys.Where(t => !open.Contains(t)).ToList())
                            _undecidedSince.Remove(gone);
                    }
                    _reported.RemoveWhere(t => !open.Contains(t));
                }
                catch (Exception e) when (e is MetadataUnavailableException or IOException or VolumeException or PoolConfigurationException or InvalidDataException)
                {
                    _log.ResolveFailed(e.Message);
                }
                finally
                {
                    _requests.Release();
                }
                _exports?.Changed();
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task StopLoopsAsync()
    {
        foreach (var loop in new[] { _leases, _resolver })
        {
            if (loop is not null)
                await loop.DisposeAsync().ConfigureAwait(false);
        }
        _leases = _resolver = null;
    }

    /// <summary>Stops answering other nodes (before the pools close).</summary>
    private async Task StopPeersAsync()
    {
        _peerServer?.Dispose();
        if (_segmentNbd is not null)
            await _segmentNbd.StopAsync().ConfigureAwait(false);
        if (_segments is not null)
            await _segments.DisposeAsync().ConfigureAwait(false);
    }
}
