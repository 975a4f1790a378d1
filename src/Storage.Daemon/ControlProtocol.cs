using System.Text.Json.Serialization;
using Storage.Volumes;

namespace Storage.Daemon;

/// <summary>
/// A typed request on the daemon's control socket: one JSON line per request, answered by one <see cref="DaemonReply"/>
/// line. Every request that changes state goes through the daemon; none of them runs the CLI's parser.
/// </summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "op")]
[JsonDerivedType(typeof(AttachPoolRequest), "pool-attach")]
[JsonDerivedType(typeof(DetachPoolRequest), "pool-detach")]
[JsonDerivedType(typeof(ListPoolsRequest), "pool-list")]
[JsonDerivedType(typeof(CreateVolumeRequest), "volume-create")]
[JsonDerivedType(typeof(ResizeVolumeRequest), "volume-resize")]
[JsonDerivedType(typeof(DeleteVolumeRequest), "volume-delete")]
[JsonDerivedType(typeof(MoveVolumeRequest), "volume-move")]
[JsonDerivedType(typeof(ListVolumesRequest), "volume-list")]
[JsonDerivedType(typeof(CreateSnapshotRequest), "snapshot-create")]
[JsonDerivedType(typeof(ListSnapshotsRequest), "snapshot-list")]
[JsonDerivedType(typeof(ClusterStatusRequest), "cluster-status")]
[JsonDerivedType(typeof(StopRequest), "stop")]
public abstract record DaemonRequest;

/// <summary>Host the pool on these disks (one path: a pool on one device; several: the members of its array).</summary>
public sealed record AttachPoolRequest(IReadOnlyList<string> Disks) : DaemonRequest;

/// <summary>Stop hosting pool <paramref name="Name"/> and drop it from the catalogue (refused while a volume uses it).</summary>
public sealed record DetachPoolRequest(string Name) : DaemonRequest;

/// <summary>The pools of the cluster.</summary>
public sealed record ListPoolsRequest : DaemonRequest;

/// <summary>A volume across pools.</summary>
/// <param name="Name">Its name and NBD export name.</param>
/// <param name="SizeBytes">Its size.</param>
/// <param name="SegmentBytes">Bytes per segment.</param>
/// <param name="Pools">The pools its segments may go to (null: every pool).</param>
/// <param name="Policy">How segments are placed.</param>
/// <param name="Mirror">Two copies of each segment, on different pools.</param>
/// <param name="Reads">How mirrored reads choose a copy.</param>
/// <param name="Group">Its consistency group (snapshotted together), or null.</param>
public sealed record CreateVolumeRequest(string Name, long SizeBytes, long SegmentBytes, IReadOnlyList<string>? Pools, PlacementPolicy Policy, bool Mirror,
    ReadPolicy Reads, string? Group) : DaemonRequest;

/// <summary>Grow or shrink a volume.</summary>
public sealed record ResizeVolumeRequest(string Name, long SizeBytes) : DaemonRequest;

/// <summary>Delete a volume and its snapshots.</summary>
public sealed record DeleteVolumeRequest(string Name) : DaemonRequest;

/// <summary>
/// Move segment <paramref name="Segment"/> of a volume (or, when null, every segment with a copy on
/// <paramref name="From"/>) to pool <paramref name="To"/> while it is written; or, with <paramref name="Cancel"/>, undo
/// the move in progress.
/// </summary>
public sealed record MoveVolumeRequest(string Name, int? Segment, string? From, string? To, bool Cancel) : DaemonRequest;

/// <summary>The volumes of the cluster.</summary>
public sealed record ListVolumesRequest : DaemonRequest;

/// <summary>Snapshot <paramref name="Volumes"/> and every volume of <paramref name="Group"/> at one cut, all named <paramref name="Name"/>.</summary>
public sealed record CreateSnapshotRequest(string Name, IReadOnlyList<string> Volumes, string? Group) : DaemonRequest;

/// <summary>The snapshots (of one volume, or of all).</summary>
public sealed record ListSnapshotsRequest(string? Volume) : DaemonRequest;

/// <summary>Replicas, leader, pools, in-doubt transactions, exports.</summary>
public sealed record ClusterStatusRequest : DaemonRequest;

/// <summary>Stop the daemon cleanly (as SIGTERM does).</summary>
public sealed record StopRequest : DaemonRequest;

/// <summary>The answer: an exit code (0 ok, 1 failed, 2 refused: bad request, nothing changed), a message, and what was asked for.</summary>
public sealed record DaemonReply(int Code, string Message)
{
    /// <summary>Success.</summary>
    public const int Ok = 0;

    /// <summary>The operation ran and failed.</summary>
    public const int Failed = 1;

    /// <summary>Refused: bad request or state; nothing was changed.</summary>
    public const int Refused = 2;

    /// <summary>Pools, when asked for or changed.</summary>
    public IReadOnlyList<PoolView>? Pools { get; init; }

    /// <summary>Volumes, when asked for or changed.</summary>
    public IReadOnlyList<VolumeView>? Volumes { get; init; }

    /// <summary>Snapshots, when asked for or taken.</summary>
    public IReadOnlyList<SnapshotView>? Snapshots { get; init; }

    /// <summary>The cluster's state, for a status request.</summary>
    public ClusterView? Cluster { get; init; }
}

/// <summary>A pool as the daemon reports it.</summary>
/// <param name="Name">Its name.</param>
/// <param name="Node">The node that hosts it.</param>
/// <param name="Layout">"device", or the array's geometry.</param>
/// <param name="Members">Its devices.</param>
/// <param name="State">"online", or why it is not.</param>
/// <param name="SizeBytes">Capacity (0 when not online).</param>
/// <param name="FreeBytes">Free space (0 when not online).</param>
/// <param name="Segments">Volume segments it holds.</param>
public sealed record PoolView(string Name, string Node, string Layout, IReadOnlyList<string> Members, string State, long SizeBytes, long FreeBytes, int Segments);

/// <summary>A volume across pools.</summary>
public sealed record VolumeView(string Name, long SizeBytes, long SegmentBytes, int Segments, int Copies, string Policy, string Reads, string? Group,
    IReadOnlyList<string> Pools, string Export)
{
    /// <summary>The node that serves it, or null (any node: a record from before nodes were named).</summary>
    public string? Node { get; init; }

    /// <summary>The segment move in progress ("segment 2: p1 → p2"), or null.</summary>
    public string? Moving { get; init; }

    /// <summary>The copies that missed writes (a degraded mirror), or null when every copy is current.</summary>
    public IReadOnlyList<StaleCopyView>? Stale { get; init; }

    /// <summary>Reads its export has sent to each pool since it was offered (a mirror's read split), or null when not exported.</summary>
    public IReadOnlyDictionary<string, long>? ReadsByPool { get; init; }
}

/// <summary>A copy of a mirrored volume's segment that missed writes.</summary>
/// <param name="Segment">The segment.</param>
/// <param name="Pool">The pool of the copy.</param>
/// <param name="State">"stale" (neither read nor written), or "resyncing" (written, being filled, not read yet).</param>
public sealed record StaleCopyView(int Segment, string Pool, string State);

/// <summary>A snapshot of a volume across pools.</summary>
public sealed record SnapshotView(string Volume, string Name, string FullName, long SizeBytes, IReadOnlyList<string> Group, DateTimeOffset Created);

/// <summary>The state of the node and its metadata service.</summary>
/// <param name="Node">This node's name.</param>
/// <param name="Leader">The metadata leader's replica id, or null when there is none.</param>
/// <param name="Replicas">The metadata replicas this node runs.</param>
/// <param name="Pools">Every pool in the catalogue.</param>
/// <param name="InDoubt">Transactions begun and not yet forgotten.</param>
/// <param name="NbdSocket">The NBD Unix socket.</param>
/// <param name="NbdTcp">The NBD TCP endpoint, or null.</param>
/// <param name="Exports">NBD exports offered.</param>
public sealed record ClusterView(string Node, int? Leader, IReadOnlyList<ReplicaView> Replicas, IReadOnlyList<PoolView> Pools, IReadOnlyList<TransactionView> InDoubt,
    string NbdSocket, string? NbdTcp, int Exports);

/// <summary>One metadata replica: its role, the leader it follows, and how far it is behind the leader's commit index.</summary>
public sealed record ReplicaView(int Id, string Role, int LeaderId, long Commit, long Applied, long Lag, bool HasLease);

/// <summary>A two-phase-commit transaction still in the catalogue.</summary>
public sealed record TransactionView(string Id, string State, IReadOnlyList<string> Participants);

/// <summary>
/// What a running daemon publishes in the run directory (<c>NODE.daemon</c>): where to reach it and which disks it
/// holds, so that offline commands leave those alone.
/// </summary>
public sealed record DaemonRecord(string Node, int Pid, string Dir, string Control, string NbdSocket, string? NbdTcp, IReadOnlyList<string> Disks);

/// <summary>The wire and record forms (camelCase, enums as strings).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, UseStringEnumConverter = true, WriteIndented = false,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(DaemonRequest))]
[JsonSerializable(typeof(DaemonReply))]
[JsonSerializable(typeof(DaemonRecord))]
[JsonSerializable(typeof(IReadOnlyList<PoolView>))]
[JsonSerializable(typeof(IReadOnlyList<VolumeView>))]
[JsonSerializable(typeof(IReadOnlyList<SnapshotView>))]
[JsonSerializable(typeof(ClusterView))]
public sealed partial class DaemonJson : JsonSerializerContext;
