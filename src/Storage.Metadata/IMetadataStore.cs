namespace Storage.Metadata;

/// <summary>
/// The metadata service as its callers see it, the same in-process (<see cref="MetadataReplica"/>,
/// <see cref="MetadataCluster"/>) and over TCP (<see cref="MetadataClient"/>): commands through the Paxos log,
/// linearizable reads and listings at the leader, and watches of key prefixes.
/// </summary>
public interface IMetadataStore
{
    /// <summary>Applies <paramref name="command"/> through the log; retries under the same request id are applied once.</summary>
    Task<CommandResult> ExecuteAsync(MetadataCommand command, CancellationToken cancellationToken = default);

    /// <summary>The value and version of <paramref name="key"/>, linearizably.</summary>
    Task<CommandResult> ReadAsync(string key, CancellationToken cancellationToken = default);

    /// <summary>The keys under <paramref name="prefix"/> with their versions, in order, linearizably.</summary>
    Task<IReadOnlyList<KeyVersion>> ListAsync(string prefix, CancellationToken cancellationToken = default);

    /// <summary>
    /// Calls <paramref name="handler"/> for changes under <paramref name="prefix"/> from now on, in revision order, never
    /// on the caller's thread. In-process every change is reported; over TCP changes are polled and those between two
    /// polls of one key coalesce into the last. Dispose to stop.
    /// </summary>
    IDisposable Watch(string prefix, Action<WatchEvent> handler);
}

/// <summary>A key and the revision that last wrote it.</summary>
public readonly record struct KeyVersion(string Key, long Version);
