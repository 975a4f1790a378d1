using Microsoft.Extensions.Logging;

namespace Storage.Daemon;

/// <summary>Every line the daemon logs, one place (source-generated: no boxing or parsing when a level is off).</summary>
internal static partial class Log
{
    [LoggerMessage(Level = LogLevel.Warning, Message = "array {Array}: {Warning}")]
    public static partial void ArrayWarning(this ILogger log, string array, string warning);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Change}")]
    public static partial void ArrayChange(this ILogger log, string change);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Event}")]
    public static partial void Event(this ILogger log, string @event);

    [LoggerMessage(Level = LogLevel.Warning, Message = "export {Export} not offered: pool {Pool} is not online on this node")]
    public static partial void ExportWithoutPool(this ILogger log, string export, string pool);

    [LoggerMessage(Level = LogLevel.Debug, Message = "export {Export} not offered yet: {Reason}")]
    public static partial void ExportNotReady(this ILogger log, string export, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "export {Export} offered{ReadOnly}")]
    public static partial void ExportOffered(this ILogger log, string export, string readOnly);

    [LoggerMessage(Level = LogLevel.Information, Message = "export {Export} withdrawn")]
    public static partial void ExportWithdrawn(this ILogger log, string export);

    [LoggerMessage(Level = LogLevel.Information, Message = "metadata: {Count} replicas in {Dir}, replica {Leader} leads")]
    public static partial void MetadataStarted(this ILogger log, int count, string dir, int leader);

    [LoggerMessage(Level = LogLevel.Information, Message = "pool {Pool} {How} on {Layout} ({Members})")]
    public static partial void PoolOnline(this ILogger log, string pool, string how, string layout, string members);

    [LoggerMessage(Level = LogLevel.Error, Message = "pool {Pool} stays offline: {Reason}")]
    public static partial void PoolOffline(this ILogger log, string pool, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "pool {Pool} {How}")]
    public static partial void PoolClosed(this ILogger log, string pool, string how);

    [LoggerMessage(Level = LogLevel.Warning, Message = "transaction {Transaction} left by a crash: {Outcome}")]
    public static partial void Recovered(this ILogger log, string transaction, string outcome);

    [LoggerMessage(Level = LogLevel.Information, Message = "nbd: nbd+unix:///VOL?socket={Socket}{Tcp}")]
    public static partial void NbdListening(this ILogger log, string socket, string tcp);

    [LoggerMessage(Level = LogLevel.Information, Message = "volume {Volume} created: {Size} bytes in {Segments} segment(s) over {Pools}")]
    public static partial void VolumeCreated(this ILogger log, string volume, long size, int segments, string pools);

    [LoggerMessage(Level = LogLevel.Information, Message = "volume {Volume} {What}")]
    public static partial void VolumeChanged(this ILogger log, string volume, string what);

    [LoggerMessage(Level = LogLevel.Information, Message = "snapshot {Snapshot} of {Volumes}: writes held {HeldMs} ms")]
    public static partial void SnapshotTaken(this ILogger log, string snapshot, string volumes, double heldMs);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Request} {Outcome}: {Message}")]
    public static partial void RequestNotDone(this ILogger log, string request, string outcome, string message);

    [LoggerMessage(Level = LogLevel.Critical, Message = "cannot start node '{Node}': {Reason}")]
    public static partial void StartFailed(this ILogger log, string node, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "node '{Node}' ready: control {Control} (owner-only), {Pools} pool(s) online, {Exports} export(s)")]
    public static partial void Ready(this ILogger log, string node, string control, int pools, int exports);

    [LoggerMessage(Level = LogLevel.Warning, Message = "metadata: no leader (an election is under way)")]
    public static partial void NoLeader(this ILogger log);

    [LoggerMessage(Level = LogLevel.Information, Message = "metadata: replica {Leader} leads now")]
    public static partial void LeaderChanged(this ILogger log, int leader);

    [LoggerMessage(Level = LogLevel.Information, Message = "node '{Node}' {What}")]
    public static partial void Node(this ILogger log, string node, string what);

    [LoggerMessage(Level = LogLevel.Information, Message = "metadata replica {Id} of cluster {Cluster} on {Endpoint}, log in {Dir}; leader is replica {Leader}; between nodes: {Security}")]
    public static partial void ClusterReplicaStarted(this ILogger log, int id, string cluster, string endpoint, string dir, int leader, string security);

    [LoggerMessage(Level = LogLevel.Warning, Message = "waiting for a majority of the cluster's metadata replicas ({Reason})")]
    public static partial void WaitingForMajority(this ILogger log, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "peer requests on {Peer}, segments over NBD on {Segments}")]
    public static partial void PeerListening(this ILogger log, string peer, string segments);

    [LoggerMessage(Level = LogLevel.Warning, Message = "resolving transactions in doubt failed, will retry: {Reason}")]
    public static partial void ResolveFailed(this ILogger log, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "export {Export} waits up to {Seconds} s for the copies on {Copies} before it is offered without them (--degrade-after)")]
    public static partial void ExportWaits(this ILogger log, string export, string copies, double seconds);

    [LoggerMessage(Level = LogLevel.Error, Message = "export {Export} not offered: {Reason}")]
    public static partial void ExportWithoutCopy(this ILogger log, string export, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "volume {Volume}: the copies on {Copies} are stale ({Reason}); they are resynchronized when the pool answers again")]
    public static partial void CopiesStale(this ILogger log, string volume, string copies, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "volume {Volume}: the copies on {Copies} are current again")]
    public static partial void CopiesCurrent(this ILogger log, string volume, string copies);

    [LoggerMessage(Level = LogLevel.Information, Message = "volume {Volume}: resync {What}")]
    public static partial void Resync(this ILogger log, string volume, string what);

    [LoggerMessage(Level = LogLevel.Warning, Message = "volume {Volume}: resync stopped ({Reason}); trying again in {Seconds} s")]
    public static partial void ResyncFailed(this ILogger log, string volume, string reason, double seconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "pool {Pool}: deleted segment {Segment}, whose copy was replaced on another pool while this one was away")]
    public static partial void LeftoverDeleted(this ILogger log, string pool, string segment);

    [LoggerMessage(Level = LogLevel.Warning, Message = "pool {Pool}: the old copies replaced on other pools stay for now (the next open tries again): {Reason}")]
    public static partial void LeftoversKept(this ILogger log, string pool, string reason);
}
