using Storage.Consensus;

namespace Storage.Metadata;

/// <summary>
/// The single-machine default deployment: three (or more) replicas in one process, each with its own log
/// directory (ideally on different disks), joined by an in-process network; plus a client that finds the
/// leader and retries under one request id, so every command applies once.
/// </summary>
public sealed class MetadataCluster : IMetadataStore, IDisposable
{
    private readonly IReadOnlyList<string> _directories;
    private readonly Func<int, string, bool, MetadataReplicaOptions> _options;
    private readonly MetadataReplica?[] _replicas;
    private readonly SessionTracker _session = new();
    private int _leaderHint = 1;

    private MetadataCluster(IReadOnlyList<string> directories, Func<int, string, bool, MetadataReplicaOptions> options)
    {
        _directories = directories;
        _options = options;
        _replicas = new MetadataReplica?[directories.Count + 1];
        Network = new InProcessNetwork();
        Config = Configuration.Initial(directories.Count);
    }

    /// <summary>The network joining the replicas (tests cut links through it).</summary>
    public InProcessNetwork Network { get; }

    /// <summary>The founding configuration: ids 1..N.</summary>
    public Configuration Config { get; }

    /// <summary>
    /// Starts one replica per directory (ids 1..N). If every directory is empty this founds a new group;
    /// otherwise an empty directory is a replica that lost its disk and rejoins as a new incarnation.
    /// </summary>
    /// <param name="directories">One log directory per replica.</param>
    /// <param name="configure">Adjusts each replica's options (tick period, batching...); may be null.</param>
    public static MetadataCluster Start(IReadOnlyList<string> directories, Func<MetadataReplicaOptions, MetadataReplicaOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(directories);
        ArgumentOutOfRangeException.ThrowIfZero(directories.Count);
        bool bootstrap = directories.All(d => !File.Exists(Path.Combine(d, DurableLog.LogFileName)));
        var config = Configuration.Initial(directories.Count);
        var cluster = new MetadataCluster(directories, (id, dir, boot) =>
        {
            var o = new MetadataReplicaOptions { Id = id, Directory = dir, InitialConfig = config, Bootstrap = boot };
            return configure is null ? o : configure(o);
        });
        for (int id = 1; id <= directories.Count; id++)
            cluster.StartReplica(id, bootstrap);
        return cluster;
    }

    /// <summary>The running replica <paramref name="id"/>, or null when stopped.</summary>
    public MetadataReplica? Replica(int id) => _replicas[id];

    /// <summary>The running replicas.</summary>
    public IEnumerable<MetadataReplica> Replicas => _replicas.OfType<MetadataReplica>();

    /// <summary>Stops replica <paramref name="id"/> (its directory stays).</summary>
    public void StopReplica(int id)
    {
        _replicas[id]?.Dispose();
        _replicas[id] = null;
    }

    /// <summary>Starts replica <paramref name="id"/> again from its directory.</summary>
    public void StartReplica(int id) => StartReplica(id, bootstrap: false);

    private void StartReplica(int id, bool bootstrap)
    {
        var replica = new MetadataReplica(_options(id, _directories[id - 1], bootstrap), Network.Connect(id));
        replica.Start();
        _replicas[id] = replica;
    }

    /// <summary>Waits until some replica leads and holds a lease.</summary>
    /// <exception cref="TimeoutException">No leader within <paramref name="timeout"/>.</exception>
    public async Task<MetadataReplica> WaitForLeaderAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            foreach (var r in Replicas)
                if (r.Status.Consensus is { Role: Role.Leader, HasLease: true })
                    return r;
            await Task.Delay(5).ConfigureAwait(false);
        }
        throw new TimeoutException("No leader elected.");
    }

    /// <summary>
    /// Executes <paramref name="command"/> at the leader, following leader hints and retrying after
    /// failures under the same request id until <paramref name="timeout"/> (default 10 s).
    /// </summary>
    /// <exception cref="TimeoutException">No replica applied it in time (it may still be applied).</exception>
    public async Task<CommandResult> ExecuteAsync(MetadataCommand command, TimeSpan? timeout = null)
    {
        var (seq, acked) = _session.Next();
        try
        {
            var envelope = new Envelope(_session.Session, seq, command, acked);
            return await WithLeader((r, ct) => r.ExecuteAsync(envelope, ct), timeout).ConfigureAwait(false);
        }
        finally
        {
            _session.Done(seq);
        }
    }

    /// <summary>A linearizable read at the leader.</summary>
    public Task<CommandResult> ReadAsync(string key, TimeSpan? timeout = null) =>
        WithLeader((r, ct) => r.ReadAsync(key, ct), timeout);

    /// <summary>The keys under <paramref name="prefix"/> at the leader, following leadership changes for up to 10 s.</summary>
    /// <exception cref="TimeoutException">No leader answered in time.</exception>
    public async Task<IReadOnlyList<KeyVersion>> ListAsync(string prefix, CancellationToken cancellationToken = default)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            var leader = await WaitForLeaderAsync(deadline - DateTime.UtcNow).WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                return await leader.ListAsync(prefix, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is NotLeaderException or TimeoutException && DateTime.UtcNow < deadline)
            {
                await Task.Delay(5, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    Task<CommandResult> IMetadataStore.ExecuteAsync(MetadataCommand command, CancellationToken cancellationToken) => ExecuteAsync(command).WaitAsync(cancellationToken);

    Task<CommandResult> IMetadataStore.ReadAsync(string key, CancellationToken cancellationToken) => ReadAsync(key).WaitAsync(cancellationToken);

    IDisposable IMetadataStore.Watch(string prefix, Action<WatchEvent> handler) => Watch(prefix, handler);

    /// <summary>Watches changes under <paramref name="prefix"/> as replica <paramref name="replicaId"/> applies them.</summary>
    public IDisposable Watch(string prefix, Action<WatchEvent> handler, int replicaId = 1) =>
        (_replicas[replicaId] ?? throw new InvalidOperationException($"Replica {replicaId} is stopped.")).Watch(prefix, handler);

    private async Task<CommandResult> WithLeader(Func<MetadataReplica, CancellationToken, Task<CommandResult>> call, TimeSpan? timeout)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        int next = _leaderHint;
        while (true)
        {
            var replica = next >= 1 && next < _replicas.Length ? _replicas[next] : null;
            replica ??= Replicas.FirstOrDefault(r => r.IsLeader) ?? Replicas.FirstOrDefault();
            if (replica is not null)
            {
                using var attempt = new CancellationTokenSource(TimeSpan.FromSeconds(1));
                try
                {
                    var result = await call(replica, attempt.Token).ConfigureAwait(false);
                    _leaderHint = replica.Id;
                    return result;
                }
                catch (NotLeaderException e)
                {
                    next = e.LeaderId > 0 && e.LeaderId != replica.Id ? e.LeaderId : replica.Id % (_replicas.Length - 1) + 1;
                }
                catch (Exception e) when (e is TimeoutException or OperationCanceledException or ObjectDisposedException)
                {
                    next = replica.Id % (_replicas.Length - 1) + 1;
                }
            }
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException("No replica applied the request in time; it may still be applied.");
            await Task.Delay(5).ConfigureAwait(false);
        }
    }

    /// <summary>Stops every replica.</summary>
    public void Dispose()
    {
        for (int id = 1; id < _replicas.Length; id++)
            StopReplica(id);
    }
}
