namespace Storage.Consensus;

/// <summary>The kinds of message replicas exchange.</summary>
public enum MessageType : byte
{
    /// <summary>Phase 1a: "promise me <see cref="Message.Ballot"/> for every slot from <see cref="Message.Slot"/>".</summary>
    Prepare = 1,

    /// <summary>Phase 1b: the promise, with every accepted record from the prepared slot on.</summary>
    Promise = 2,

    /// <summary>Phase 2a: accept <see cref="Message.Entries"/> in the ballot; with no entries it is a heartbeat.</summary>
    Accept = 3,

    /// <summary>Phase 2b: the slots accepted (possibly none: a heartbeat acknowledgement).</summary>
    Accepted = 4,

    /// <summary>Refusal: the sender has promised the higher <see cref="Message.Ballot"/>.</summary>
    Nack = 5,

    /// <summary>A lagging replica asks for chosen entries from <see cref="Message.Slot"/> on.</summary>
    CatchupRequest = 6,

    /// <summary>Chosen entries, contiguous from the requested slot.</summary>
    CatchupResponse = 7,

    /// <summary>The sender's latest snapshot, for a replica behind the sender's truncated log.</summary>
    Snapshot = 8,
}

/// <summary>
/// A message between replicas. Immutable once built; fields a type does not use keep their defaults.
/// </summary>
public sealed class Message
{
    /// <summary>The kind of message.</summary>
    public required MessageType Type { get; init; }

    /// <summary>The sending replica id.</summary>
    public required int From { get; init; }

    /// <summary>The incarnation of the sender's durable state (votes only count for that incarnation).</summary>
    public long FromIncarnation { get; init; }

    /// <summary>The destination replica id.</summary>
    public required int To { get; init; }

    /// <summary>Prepare/Promise/Accept/Accepted: the ballot; Nack: the higher ballot promised.</summary>
    public Ballot Ballot { get; init; }

    /// <summary>Prepare: first slot covered; CatchupRequest: first slot wanted.</summary>
    public long Slot { get; init; }

    /// <summary>The sender's commit index (Accept: the leader's; CatchupResponse: the last slot included).</summary>
    public long Commit { get; init; }

    /// <summary>Promise: the acceptor's snapshot index (slots up to it are no longer in its log).</summary>
    public long SnapshotIndex { get; init; }

    /// <summary>Accept: the leader's tick when sent; Accepted echoes it (lease bookkeeping).</summary>
    public long LeaseTick { get; init; }

    /// <summary>Promise: accepted records; Accept: proposals (ballot = message ballot); CatchupResponse: chosen records.</summary>
    public IReadOnlyList<LogRecord> Entries { get; init; } = [];

    /// <summary>Accepted: the slots accepted.</summary>
    public IReadOnlyList<long> Slots { get; init; } = [];

    /// <summary>Snapshot: the snapshot.</summary>
    public Snapshot? Snapshot { get; init; }

    /// <inheritdoc />
    public override string ToString() => Type switch
    {
        MessageType.Accept => $"{Type} {From}->{To} b={Ballot} n={Entries.Count} commit={Commit}",
        MessageType.Accepted => $"{Type} {From}->{To} b={Ballot} slots={Slots.Count} commit={Commit}",
        MessageType.Promise => $"{Type} {From}->{To} b={Ballot} n={Entries.Count} commit={Commit} snap={SnapshotIndex}",
        MessageType.Prepare or MessageType.CatchupRequest => $"{Type} {From}->{To} b={Ballot} slot={Slot}",
        MessageType.CatchupResponse => $"{Type} {From}->{To} n={Entries.Count} commit={Commit}",
        MessageType.Snapshot => $"{Type} {From}->{To} index={Snapshot?.Index}",
        _ => $"{Type} {From}->{To} b={Ballot}",
    };
}
