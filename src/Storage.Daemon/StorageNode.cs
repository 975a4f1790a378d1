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
    private readonly MetadataCluster _meta;
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

    /// <summary>Asked for by a stop request; the host stops the node.</summary>
    public Action? StopRequested { get; set; }

    /// <summary>Starts the metadata replicas, opens this node's pools, resolves transactions left in doubt and serves NBD.</summary>
    public static async Task<StorageNode> StartAsync(DaemonOptions options, ILoggerFactory loggers, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggers);
        DaemonRecords.CreateOwnerOnly(options.Directory);
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
            node.Serve();
            await node._exports!.SyncAsync(cancellationToken).ConfigureAwait(false);
            node._watch = node._store.Watch("spanned", _ => node._exports.Changed());
            return node;
        }
        catch
        {
            await node.DisposeAsync().ConfigureAwait(false);
            throw;
        }
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

    private VolumeTransactions Transactions()
    {
        var transactions = new VolumeTransactions(_store, [.. _pools.Values.Select(p => p.Participant)]);
        if (_options.KillAtStep is not null)
        {
            transactions.Step = KillAt;
            foreach (var pool in _pools.Values)
                pool.Participant.Step = KillAt;
        }
        return transactions;
    }

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
        foreach (var (transaction, committed) in await Transactions().RecoverAsync(cancellationToken).ConfigureAwait(false))
            _log.Recovered(transaction, committed ? "committed" : "aborted");
    }

    private void Serve()
    {
        var nbdLog = _loggers.CreateLogger("Storage.Nbd");
        _nbd = new NbdServer(new NbdServerOptions { Log = nbdLog.Event });
        _exports = new VolumeExports(_store, _nbd, OpenPools, _log);
        _nbd.ListenUnix(_options.NbdSocket);   // owner-only, as the server makes every Unix socket
        if (_options.Listen is { } listen)
            _tcp = _nbd.Listen(listen).ToString();
        _log.NbdListening(_options.NbdSocket, _tcp is null ? "" : $" and nbd://{_tcp}/VOL");
    }

    /// <summary>The replicas' roles, for status and for logging leader changes.</summary>
    public IReadOnlyList<ReplicaView> ReplicaViews()
    {
        var statuses = _meta.Replicas.Select(r => (r.Id, Status: r.Status.Consensus)).OrderBy(r => r.Id).ToList();
        long leaderCommit = statuses.Where(s => s.Status.Role == Role.Leader).Select(s => s.Status.Commit).DefaultIfEmpty(-1).Max();
        return [.. statuses.Select(s => new ReplicaView(s.Id, s.Status.Role.ToString().ToLowerInvariant(), s.Status.LeaderId, s.Status.Commit, s.Status.Applied,
            leaderCommit < 0 ? -1 : Math.Max(0, leaderCommit - s.Status.Commit), s.Status.HasLease))];
    }

    /// <summary>Stops serving, commits and closes every pool (arrays marked clean), then the metadata replicas.</summary>
    public async ValueTask DisposeAsync()
    {
        await _requests.WaitAsync().ConfigureAwait(false);   // the request in flight finishes first; none starts after
        _watch?.Dispose();
        if (_nbd is not null)
            await _nbd.StopAsync().ConfigureAwait(false);
        if (_exports is not null)
            await _exports.DisposeAsync().ConfigureAwait(false);
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
        _meta.Dispose();
    }
}
