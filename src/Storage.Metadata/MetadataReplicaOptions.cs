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

    /// <summary>
    /// The tick period of the consensus core: the resolution of its timers (heartbeats, retransmits, lease
    /// expiry). It does not set the election timeout; see <see cref="ElectionTimeout"/>.
    /// </summary>
    public TimeSpan TickInterval { get; init; } = TimeSpan.FromMilliseconds(10);

    /// <summary>
    /// The minimum election timeout (the actual one is drawn from [T, 2T)), 1 s by default, as etcd's. It must
    /// outlast any stall of a loaded leader (a replica loop starved of CPU, a GC pause, an fsync behind a busy
    /// disk): a follower that hears nothing for this long starts an election, and every election costs a
    /// round of failed requests. 100 ms (the old default, 10 ticks of 10 ms) changed leaders every second or
    /// two under load on two shared cores. A shorter timeout only shortens failover after a real crash.
    /// Used when <see cref="ElectionTicks"/> is not set.
    /// </summary>
    public TimeSpan ElectionTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Election timeout and promise guard, in ticks; by default <see cref="ElectionTimeout"/> divided by
    /// <see cref="TickInterval"/> (at least 2).
    /// </summary>
    public int ElectionTicks
    {
        get => _electionTicks ?? Math.Max(2, (int)Math.Ceiling(ElectionTimeout / TickInterval));
        init => _electionTicks = value;
    }

    /// <summary>Heartbeat period in ticks; by default a tenth of <see cref="ElectionTicks"/> (at least 1), as etcd's.</summary>
    public int HeartbeatTicks
    {
        get => _heartbeatTicks ?? Math.Max(1, ElectionTicks / 10);
        init => _heartbeatTicks = value;
    }

    /// <summary>
    /// Lease length in ticks (see <see cref="ConsensusOptions.MaxLeaseTicks"/>); by default 70 % of
    /// <see cref="ElectionTicks"/> less one, which stays below that bound.
    /// </summary>
    public int LeaseTicks
    {
        get => _leaseTicks ?? (ElectionTicks - 1) * 7 / 10;
        init => _leaseTicks = value;
    }

    private readonly int? _electionTicks;
    private readonly int? _heartbeatTicks;
    private readonly int? _leaseTicks;

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
