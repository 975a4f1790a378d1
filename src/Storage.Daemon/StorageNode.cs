using Microsoft.Extensions.Logging;
using Storage.Consensus;
using Storage.Metadata;
using Storage.Nbd;
using Storage.Versioning;
using Storage.Volumes;

namespace Storage.Daemon;

/// <summary>
/// One node, wired: the metadata replicas (in this process, each with its own log directory), the pools whose disks
/// the catalogue gives this node, volume transactions across them, and the NBD server of every volume and snapshot.
/// Requests from the control socket run one at a time (<see cref="HandleAsync"/>).
/// </summary>
internal sealed partial class StorageNode : IAsyncDisposable
{
    private readonly DaemonOptions _options;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _log;
    private readonly MetadataCluster? _meta;         // one process: its own replicas
    private readonly ReplicaHost? _replica;          // a cluster: this node's replica
    private readonly MetadataClient? _client;        // a cluster: the store, over TCP
    private readonly IMetadataStore _store;
    private readonly Dictionary<string, HostedPool> _pools = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _offline = new(StringComparer.Ordinal);   // pool → why it is not open here
    private readonly SemaphoreSlim _requests = new(1, 1);
    private NbdServer? _nbd;
    private VolumeExports? _exports;
    private IDisposable? _watch;
    private string? _tcp;

    private StorageNode(DaemonOptions options, ILoggerFactory loggers, MetadataCluster meta)
    {
        _options = options;
        _loggers = loggers;
        _log = loggers.CreateLogger("Storage.Daemon");
        _meta = meta;
        _store = meta;
    }

    private StorageNode(DaemonOptions options, ILoggerFactory loggers, ReplicaHost replica, MetadataClient client, ClusterKey? key)
    {
        _key = key;
        _options = options;
        _loggers = loggers;
        _log = loggers.CreateLogger("Storage.Daemon");
        _replica = replica;
        _client = client;
        _store = client;
        foreach (var node in options.Cluster!.Where(n => n.Name != options.Node))
            _peers[node.Name] = new PeerClient(options.Node, node, key?.ClientOptions());
    }

    /// <summary>Asked for by a stop request; the host stops the node.</summary>
    public Action? StopRequested { get; set; }

    /// <summary>Starts the metadata replicas, opens this node's pools, resolves transactions left in doubt and serves NBD.</summary>
    public static async Task<StorageNode> StartAsync(DaemonOptions options, ILoggerFactory loggers, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggers);
        DaemonRecords.CreateOwnerOnly(options.Directory);
        if (options.Cluster is not null)
            return await StartInClusterAsync(options, loggers, cancellationToken).ConfigureAwait(false);
        var directories = Enumerable.Range(1, options.Replicas).Select(i => Path.Combine(options.Directory, "meta", i.ToString(System.Globalization.CultureInfo.InvariantCulture))).ToList();
        foreach (string dir in directories)
            DaemonRecords.CreateOwnerOnly(dir);
        var meta = MetadataCluster.Start(directories);
        var node = new StorageNode(options, loggers, meta);
        try
        {
            var leader = await meta.WaitForLeaderAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false);
            node._log.MetadataStarted(options.Replicas, Path.Combine(options.Directory, "meta"), leader.Id);
            await node.OpenPoolsAsync(cancellationToken).ConfigureAwait(false);
            await node.RecoverAsync(cancellationToken).ConfigureAwait(false);
            await node.ServeAsync(cancellationToken).ConfigureAwait(false);
            return node;
        }
        catch
        {
            await node.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private async Task ServeAsync(CancellationToken cancellationToken)
    {
        Serve();
        await _exports!.SyncAsync(cancellationToken).ConfigureAwait(false);
        _watch = _store.Watch("spanned", _ => _exports.Changed());
    }

    /// <summary>The disks of the pools open here.</summary>
    public IReadOnlyList<string> Disks => [.. _pools.Values.SelectMany(p => p.Members)];

    /// <summary>The NBD TCP endpoint, when listening on one.</summary>
    public string? NbdTcp => _tcp;

    private Dictionary<string, Pool> OpenPools()
    {
        lock (_pools)
            return _pools.ToDictionary(p => p.Key, p => p.Value.Pool, StringComparer.Ordinal);
    }

    /// <summary>Transactions over every pool: this node's, and in a cluster the other nodes' through their peer ports.</summary>
    private async Task<VolumeTransactions> TransactionsAsync(CancellationToken cancellationToken)
    {
        var participants = LocalParticipants();
        if (_options.Cluster is not null)
        {
            foreach (var (name, node) in await RemotePoolsAsync(cancellationToken).ConfigureAwait(false))
                participants.Add(new RemoteParticipant(name, _peers[node]));
        }
        var transactions = new VolumeTransactions(_store, participants);
        if (_options.KillAtStep is not null)
        {
            transactions.Step = KillAt;
            foreach (var pool in _pools.Values)
                pool.Participant.Step = KillAt;
        }
        return transactions;
    }

    /// <summary>Pools the catalogue places on the other nodes of the cluster: name → node.</summary>
    private async Task<IReadOnlyList<(string Pool, string Node)>> RemotePoolsAsync(CancellationToken cancellationToken)
        => [.. (await PoolRecordsAsync(cancellationToken).ConfigureAwait(false)).Select(r => (r.Name, HostedPool.Locate(r).Node)).Where(p => _peers.ContainsKey(p.Node))];

    /// <summary>The fault injection of <see cref="DaemonOptions.KillAtStep"/>: dies there, with no chance to clean up.</summary>
    private Task KillAt(string step)
    {
        if (step == _options.KillAtStep)
        {
            using var self = System.Diagnostics.Process.GetCurrentProcess();
            self.Kill();
        }
        return Task.CompletedTask;
    }

    /// <summary>Opens every pool the catalogue places on this node; one that fails stays offline, with the reason.</summary>
    private async Task OpenPoolsAsync(CancellationToken cancellationToken)
    {
        foreach (var record in await PoolRecordsAsync(cancellationToken).ConfigureAwait(false))
        {
            var (node, paths) = HostedPool.Locate(record);
            if (node != _options.Node)
                continue;
            try
            {
                var pool = await HostedPool.OpenAsync(paths, _loggers, cancellationToken).ConfigureAwait(false);
                if (pool.Name != record.Name)
                {
                    await pool.DisposeAsync().ConfigureAwait(false);
                    throw new DaemonRequestException($"{string.Join(",", paths)} now holds pool '{pool.Name}', not '{record.Name}'.");
                }
                lock (_pools)
                    _pools[record.Name] = pool;
                _log.PoolOnline(record.Name, "online", pool.Layout, string.Join(",", paths));
                await CollectLeftoversAsync(record.Name, pool, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is DaemonRequestException or PoolConfigurationException or IOException)
            {
                _offline[record.Name] = e.Message;
                _log.PoolOffline(record.Name, e.Message);
            }
        }
    }

    private async Task<IReadOnlyList<PoolRecord>> PoolRecordsAsync(CancellationToken cancellationToken)
        => [.. (await _store.ReadAllAsync("pools/", MetadataCodec.DecodePool, cancellationToken).ConfigureAwait(false)).Select(r => r.Record)];

    /// <summary>Finishes what a crash left: decided transactions are completed, undecided ones aborted.</summary>
    private async Task RecoverAsync(CancellationToken cancellationToken)
    {
        // One process coordinates everything here: what it left undecided is dead. In a cluster, another node may be
        // at work on what is undecided; the resolver aborts it only once it has stayed undecided too long.
        var transactions = await TransactionsAsync(cancellationToken).ConfigureAwait(false);
        foreach (var (transaction, committed) in await transactions.RecoverAsync(_options.Cluster is null ? null : MayAbort, reconcile: false, cancellationToken).ConfigureAwait(false))
            _log.Recovered(transaction, committed ? "committed" : "aborted");
        await new VolumeTransactions(_store, LocalParticipants()).ReconcileAllAsync(cancellationToken).ConfigureAwait(false);
    }

    private void Serve()
    {
        var nbdLog = _loggers.CreateLogger("Storage.Nbd");
        _nbd = new NbdServer(new NbdServerOptions { Log = nbdLog.Event });
        _exports = new VolumeExports(_store, _nbd, SegmentPoolsAsync, ServesHere, _options.DegradeAfter, _log);
        _nbd.ListenUnix(_options.NbdSocket);   // owner-only, as the server makes every Unix socket
        if (_options.Listen is { } listen)
            _tcp = _nbd.Listen(listen).ToString();
        _log.NbdListening(_options.NbdSocket, _tcp is null ? "" : $" and nbd://{_tcp}/VOL");
    }

    /// <summary>The pools a volume's export reads and writes: this node's, and in a cluster the other nodes' over NBD.</summary>
    private async Task<IReadOnlyDictionary<string, ISegmentPool>> SegmentPoolsAsync(CancellationToken cancellationToken)
    {
        var pools = OpenPools().ToDictionary(p => p.Key, p => (ISegmentPool)new LocalSegmentPool(p.Key, p.Value), StringComparer.Ordinal);
        if (_options.Cluster is not null)
        {
            foreach (var (name, node) in await RemotePoolsAsync(cancellationToken).ConfigureAwait(false))
                pools[name] = new RemoteSegmentPool(name, _peers[node]);
        }
        return pools;
    }

    /// <summary>The replicas' roles, for status and for logging leader changes.</summary>
    public async Task<IReadOnlyList<ReplicaView>> ReplicaViewsAsync(CancellationToken cancellationToken = default)
    {
        List<(int Id, string Role, int LeaderId, long Commit, long Applied, bool HasLease)> statuses;
        if (_meta is not null)
        {
            statuses = [.. _meta.Replicas.Select(r => r.Status.Consensus).Select(c => (c.Self.Id, Role(c.Role), c.LeaderId, c.Commit, c.Applied, c.HasLease))];
        }
        else
        {
            statuses = [];
            foreach (var node in _options.Cluster!)
            {
                if (node.Name == _options.Node)
                {
                    var c = _replica!.Replica.Status.Consensus;
                    statuses.Add((node.Id, Role(c.Role), c.LeaderId, c.Commit, c.Applied, c.HasLease));
                }
                else if (await _client!.StatusAsync(node.Id, cancellationToken).ConfigureAwait(false) is { } remote)
                {
                    statuses.Add((node.Id, Role(remote.Role), remote.LeaderId, remote.Commit, remote.Applied, remote.HasLease));
                }
                else
                {
                    statuses.Add((node.Id, "unreachable", 0, -1, -1, false));
                }
            }
        }
        statuses.Sort((a, b) => a.Id.CompareTo(b.Id));
        long leaderCommit = statuses.Where(s => s.Role == "leader").Select(s => s.Commit).DefaultIfEmpty(-1).Max();
        return [.. statuses.Select(s => new ReplicaView(s.Id, s.Role, s.LeaderId, s.Commit, s.Applied,
            leaderCommit < 0 || s.Commit < 0 ? -1 : Math.Max(0, leaderCommit - s.Commit), s.HasLease))];

        static string Role(Role role) => role.ToString().ToLowerInvariant();
    }

    /// <summary>Stops serving, commits and closes every pool (arrays marked clean), then the metadata replicas.</summary>
    public async ValueTask DisposeAsync()
    {
        await StopLoopsAsync().ConfigureAwait(false);
        await _requests.WaitAsync().ConfigureAwait(false);   // the request in flight finishes first; none starts after
        _watch?.Dispose();
        if (_nbd is not null)
            await _nbd.StopAsync().ConfigureAwait(false);
        if (_exports is not null)
            await _exports.DisposeAsync().ConfigureAwait(false);
        await StopPeersAsync().ConfigureAwait(false);
        foreach (var pool in _pools.Values)
        {
            try
            {
                await pool.DisposeAsync().ConfigureAwait(false);
                _log.PoolClosed(pool.Name, "closed cleanly");
            }
            catch (Exception e) when (e is IOException or PoolConfigurationException or ObjectDisposedException)
            {
                _log.PoolOffline(pool.Name, $"did not close cleanly: {e.Message}");   // the others still close
            }
        }
        lock (_pools)
            _pools.Clear();
        _client?.Dispose();
        _replica?.Dispose();
        _key?.Dispose();
        _meta?.Dispose();
    }
}
