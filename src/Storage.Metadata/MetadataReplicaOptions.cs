using Storage.Consensus;

namespace Storage.Metadata;

/// <summary>Settings of one metadata replica.</summary>
public sealed class MetadataReplicaOptions
{
    /// <summary>This replica's id (positive, unique in the group).</summary>
    public required int Id { get; init; }

    /// <summary>Its own log directory (ideally on its own disk).</summary>
    public required string Directory { get; init; }

    /// <summary>The founding configuration (every replica of a new group is given the same one).</summary>
    public required Configuration InitialConfig { get; init; }

    /// <summary>
    /// Whether an empty directory means a founding member (a new group) rather than a replica that lost its
    /// disk and must be re-admitted under a new incarnation.
    /// </summary>
    public bool Bootstrap { get; init; }

    /// <summary>The tick period of the consensus core.</summary>
    public TimeSpan TickInterval { get; init; } = TimeSpan.FromMilliseconds(10);

    /// <summary>Election timeout and promise guard, in ticks.</summary>
    public int ElectionTicks { get; init; } = 10;

    /// <summary>Heartbeat period in ticks.</summary>
    public int HeartbeatTicks { get; init; } = 2;

    /// <summary>Lease length in ticks (see <see cref="ConsensusOptions.MaxLeaseTicks"/>).</summary>
    public int LeaseTicks { get; init; } = 7;

    /// <summary>Whether queued commands share a slot (batching); off: one command per slot.</summary>
    public bool Batching { get; init; } = true;

    /// <summary>Pipeline depth: slots in flight at once.</summary>
    public int MaxInflightSlots { get; init; } = 64;

    /// <summary>Applied entries between snapshots (and log truncations).</summary>
    public int SnapshotEvery { get; init; } = 10_000;

    /// <summary>How long <see cref="MetadataReplica.ExecuteAsync(MetadataCommand, CancellationToken)"/> waits before giving up.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Replaces the directory on disk (tests: a fault-injecting memory directory).</summary>
    public ILogDirectory? LogDirectory { get; init; }
}

/// <summary>A replica's view of the group, for <c>storage meta status</c>.</summary>
/// <param name="Consensus">The consensus core's status.</param>
/// <param name="Revision">The metadata store's revision.</param>
/// <param name="Keys">Keys stored.</param>
/// <param name="Recovery">How its log directory was found at start.</param>
public sealed record ReplicaStatus(ConsensusStatus Consensus, long Revision, int Keys, RecoveryOutcome Recovery);
