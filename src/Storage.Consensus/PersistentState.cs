namespace Storage.Consensus;

/// <summary>What a replica recovered from its disk: the input to <see cref="PaxosCore"/> on restart.</summary>
public sealed class PersistentState
{
    /// <summary>The state of a replica that has never written anything.</summary>
    public static PersistentState Empty { get; } = new();

    /// <summary>The last hard state written.</summary>
    public HardState HardState { get; init; }

    /// <summary>The latest accepted record of every slot after the snapshot, in any order.</summary>
    public IReadOnlyList<LogRecord> Records { get; init; } = [];

    /// <summary>The latest snapshot, or null.</summary>
    public Snapshot? Snapshot { get; init; }
}

/// <summary>A replica's role in the current ballot.</summary>
public enum Role
{
    /// <summary>Accepts what a leader proposes; campaigns when the leader goes quiet.</summary>
    Follower,

    /// <summary>Running phase 1 for its own ballot.</summary>
    Candidate,

    /// <summary>Completed phase 1; proposes in phase 2.</summary>
    Leader,
}

/// <summary>A leader's view of one peer, for status and catch-up decisions.</summary>
/// <param name="Id">The peer's replica id.</param>
/// <param name="Incarnation">The incarnation the peer last reported.</param>
/// <param name="Commit">The commit index the peer last reported.</param>
/// <param name="TicksSinceHeard">Ticks since the peer last acknowledged anything (long.MaxValue: never).</param>
public readonly record struct PeerStatus(int Id, long Incarnation, long Commit, long TicksSinceHeard);

/// <summary>A point-in-time summary of a core, for monitoring.</summary>
public sealed record ConsensusStatus
{
    /// <summary>This replica.</summary>
    public required Member Self { get; init; }

    /// <summary>Its role.</summary>
    public required Role Role { get; init; }

    /// <summary>The leader it follows (itself when leader), or -1.</summary>
    public required int LeaderId { get; init; }

    /// <summary>The highest ballot promised.</summary>
    public required Ballot Promised { get; init; }

    /// <summary>The commit index.</summary>
    public required long Commit { get; init; }

    /// <summary>The last slot handed to the application and acknowledged.</summary>
    public required long Applied { get; init; }

    /// <summary>The snapshot index (slots up to it are compacted away).</summary>
    public required long SnapshotIndex { get; init; }

    /// <summary>The committed configuration.</summary>
    public required Configuration Config { get; init; }

    /// <summary>Whether it holds a valid read lease right now.</summary>
    public required bool HasLease { get; init; }

    /// <summary>Leader only: what it knows of each peer.</summary>
    public required IReadOnlyList<PeerStatus> Peers { get; init; }
}
