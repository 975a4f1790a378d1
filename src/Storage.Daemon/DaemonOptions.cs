namespace Storage.Daemon;

/// <summary>How a node daemon runs.</summary>
public sealed record DaemonOptions
{
    /// <summary>
    /// The daemon's directory: the metadata replicas' logs (<c>meta/1</c> … <c>meta/N</c>), the control socket
    /// (<c>control.sock</c>, owner-only) and the NBD socket (<c>nbd.sock</c>). Owner-only (0700).
    /// </summary>
    public required string Directory { get; init; }

    /// <summary>This node's name in the catalogue: the pools it hosts are recorded under it.</summary>
    public string Node { get; init; } = "n1";

    /// <summary>Metadata replicas run in this process, each with its own log directory (3 tolerates one lost).</summary>
    public int Replicas { get; init; } = 3;

    /// <summary>Also serve NBD on this TCP address (loopback unless TLS is configured), or null: the Unix socket only.</summary>
    public string? Listen { get; init; }

    /// <summary>
    /// Fault injection for crash tests: the daemon kills itself (SIGKILL, as kill -9) when a transaction reaches this
    /// step, e.g. <c>after-prepare</c>, <c>after-decide</c> or <c>POOL:after-prepare</c>; null in normal use.
    /// </summary>
    public string? KillAtStep { get; init; }

    /// <summary>
    /// The cluster this node belongs to (<see cref="ClusterNode.Parse"/>), one metadata replica per node, or null: this
    /// process runs <see cref="Replicas"/> replicas of its own.
    /// </summary>
    public IReadOnlyList<ClusterNode>? Cluster { get; init; }

    /// <summary>
    /// In a cluster, how long a transaction may stay undecided before a node presumes its coordinator dead and aborts
    /// it (through the Paxos log, so a coordinator still alive is refused its commit and aborts too).
    /// </summary>
    public TimeSpan InDoubtAfter { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// In a cluster, how long a node's lease may go unrenewed before another node takes over its volumes (a node that
    /// cannot renew stops serving them after a third of this).
    /// </summary>
    public TimeSpan FailoverAfter { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// How long the copies of a mirrored volume on a pool that is not online (or does not answer) are waited for when
    /// the volume is opened; then it is offered without them, and they are recorded stale and resynchronized once the
    /// pool is back. Long enough that a restart of the whole cluster does not cost resyncs.
    /// </summary>
    public TimeSpan DegradeAfter { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The cluster's key file (<see cref="ClusterKey"/>): every connection between nodes is then TLS with mutual
    /// authentication, and nodes may be on other machines. Null: plain TCP, loopback addresses only.
    /// </summary>
    public string? ClusterKeyPath { get; init; }

    /// <summary>This node in <see cref="Cluster"/>, or null outside one.</summary>
    public ClusterNode? Self => Cluster?.FirstOrDefault(n => n.Name == Node);

    /// <summary>The control socket.</summary>
    public string ControlSocket => Path.Combine(Directory, "control.sock");

    /// <summary>The NBD Unix socket.</summary>
    public string NbdSocket => Path.Combine(Directory, "nbd.sock");
}
