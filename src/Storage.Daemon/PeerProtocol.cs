using System.Text.Json.Serialization;

namespace Storage.Daemon;

/// <summary>
/// A request from one node to another, on the peer port (<see cref="ClusterNode.Peer"/>): a pool's part in a
/// transaction the sender coordinates, an NBD export of a segment, the state of the pools hosted there, or a control
/// request for the volume's home node. One JSON line each way.
/// </summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "op")]
[JsonDerivedType(typeof(PeerFreeRequest), "free")]
[JsonDerivedType(typeof(PeerPrepareRequest), "prepare")]
[JsonDerivedType(typeof(PeerResolveRequest), "resolve")]
[JsonDerivedType(typeof(PeerPreparedRequest), "prepared")]
[JsonDerivedType(typeof(PeerReconcileRequest), "reconcile")]
[JsonDerivedType(typeof(PeerExportRequest), "export")]
[JsonDerivedType(typeof(PeerPoolsRequest), "pools")]
[JsonDerivedType(typeof(PeerForwardRequest), "forward")]
public abstract record PeerRequest
{
    /// <summary>The sending node's name.</summary>
    public string From { get; init; } = "";
}

/// <summary>Free bytes of a pool hosted there.</summary>
public sealed record PeerFreeRequest(string Pool) : PeerRequest;

/// <summary>Prepare transaction <paramref name="Transaction"/>'s work on <paramref name="Pool"/> (a yes vote when it succeeds).</summary>
public sealed record PeerPrepareRequest(string Pool, string Transaction, PeerWork Work) : PeerRequest;

/// <summary>Commit (or abort) what <paramref name="Transaction"/> staged on <paramref name="Pool"/>.</summary>
public sealed record PeerResolveRequest(string Pool, string Transaction, bool Commit) : PeerRequest;

/// <summary>The transactions <paramref name="Pool"/> holds prepared.</summary>
public sealed record PeerPreparedRequest(string Pool) : PeerRequest;

/// <summary>Give <paramref name="Volume"/>'s segments on <paramref name="Pool"/> the sizes the catalogue says.</summary>
public sealed record PeerReconcileRequest(string Pool, string Volume) : PeerRequest;

/// <summary>Offer segment <paramref name="Segment"/> of <paramref name="Pool"/> (or its snapshot) on the segment NBD port.</summary>
public sealed record PeerExportRequest(string Pool, string Segment, string? Snapshot) : PeerRequest;

/// <summary>The pools hosted there, with their state and space.</summary>
public sealed record PeerPoolsRequest : PeerRequest;

/// <summary>Run a control request there (the home node of the volumes it names).</summary>
public sealed record PeerForwardRequest(DaemonRequest Request) : PeerRequest;

/// <summary>A <see cref="Storage.Volumes.SegmentWork"/> on the wire.</summary>
public sealed record PeerWork(IReadOnlyList<PeerSegment> Create, IReadOnlyList<string> Delete, IReadOnlyList<PeerSnapshot> Snapshot, IReadOnlyList<PeerSegment> Grow);

/// <summary>A segment and its size.</summary>
public sealed record PeerSegment(string Name, long Size);

/// <summary>A snapshot of a segment.</summary>
public sealed record PeerSnapshot(string Segment, string Name);

/// <summary>The answer: <see cref="DaemonReply"/>'s codes (a refusal of a prepare is a no vote), and what was asked for.</summary>
public sealed record PeerReply(int Code, string Message)
{
    /// <summary>Free bytes.</summary>
    public long? Free { get; init; }

    /// <summary>Prepared transactions.</summary>
    public IReadOnlyList<string>? Transactions { get; init; }

    /// <summary>The NBD export name of a segment.</summary>
    public string? Export { get; init; }

    /// <summary>The pools hosted there.</summary>
    public IReadOnlyList<PoolView>? Pools { get; init; }

    /// <summary>A forwarded request's reply.</summary>
    public DaemonReply? Reply { get; init; }
}

/// <summary>The peer wire form.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, UseStringEnumConverter = true, WriteIndented = false,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(PeerRequest))]
[JsonSerializable(typeof(PeerReply))]
internal sealed partial class PeerJson : JsonSerializerContext;
