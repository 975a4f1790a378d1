namespace Storage.Consensus;

/// <summary>
/// Settings of one replica's consensus core. All times are in ticks: the driver calls
/// <see cref="PaxosCore.Tick"/> at a fixed period of its local clock.
/// </summary>
public sealed class ConsensusOptions
{
    /// <summary>This replica's id (positive).</summary>
    public required int Id { get; init; }

    /// <summary>The incarnation of this replica's durable state (see <see cref="Member"/>).</summary>
    public long Incarnation { get; init; }

    /// <summary>
    /// The configuration before any configuration entry (the founding members). A replica that is not in
    /// it still learns the real configuration from the leader.
    /// </summary>
    public required Configuration InitialConfig { get; init; }

    /// <summary>
    /// Minimum election timeout; the actual timeout is drawn from [E, 2E). It is also the promise guard: an
    /// acceptor that heard from a leader refuses other proposers' prepares for this long, and a restarted
    /// replica refuses every prepare for this long — which is what makes leases safe.
    /// </summary>
    public int ElectionTicks { get; init; } = 10;

    /// <summary>How often a leader sends heartbeats (and retransmits unacknowledged accepts).</summary>
    public int HeartbeatTicks { get; init; } = 2;

    /// <summary>
    /// How long a leader's lease lasts after the send tick of a heartbeat round a quorum acknowledged.
    /// Must not exceed <see cref="MaxLeaseTicks"/>; 0 disables lease reads.
    /// </summary>
    public int LeaseTicks { get; init; } = 7;

    /// <summary>The bound on any replica clock's rate error (0.01 = 1 %), used to check <see cref="LeaseTicks"/>.</summary>
    public double MaxClockDrift { get; init; } = 0.01;

    /// <summary>The most slots a leader keeps in flight (proposed, not yet chosen): the pipeline depth.</summary>
    public int MaxInflightSlots { get; init; } = 64;

    /// <summary>The most commands batched into one slot; 1 turns batching off.</summary>
    public int MaxBatchCommands { get; init; } = 256;

    /// <summary>The most command bytes batched into one slot (a single larger command still gets a slot).</summary>
    public int MaxBatchBytes { get; init; } = 1 << 20;

    /// <summary>The most entries in one catch-up response or retransmission.</summary>
    public int MaxCatchupEntries { get; init; } = 256;

    /// <summary>Seed of the deterministic election-timeout jitter (give each replica a different one).</summary>
    public ulong JitterSeed { get; init; }

    /// <summary>
    /// The longest lease that stays safe: a leader's lease of L ticks ends, in real time, no later than
    /// L/(1-ρ) after the heartbeat was sent, and an acceptor's guard of E ticks lasts at least
    /// (E-1)/(1+ρ) after it was received (one tick is lost to discretization), so L ≤ (E-1)(1-ρ)/(1+ρ).
    /// </summary>
    public int MaxLeaseTicks => (int)Math.Floor((ElectionTicks - 1) * (1 - MaxClockDrift) / (1 + MaxClockDrift));

    /// <summary>Checks the settings.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range, or the lease is unsafe.</exception>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(Id);
        ArgumentNullException.ThrowIfNull(InitialConfig);
        ArgumentOutOfRangeException.ThrowIfLessThan(ElectionTicks, 2);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(HeartbeatTicks);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(HeartbeatTicks, ElectionTicks);
        ArgumentOutOfRangeException.ThrowIfNegative(MaxClockDrift);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(MaxClockDrift, 1.0);
        ArgumentOutOfRangeException.ThrowIfNegative(LeaseTicks);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(LeaseTicks, MaxLeaseTicks);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxInflightSlots);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxBatchCommands);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxBatchBytes);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxCatchupEntries);
    }
}
