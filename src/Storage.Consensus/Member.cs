namespace Storage.Consensus;

/// <summary>
/// One acceptor of the replica group: a replica id plus the incarnation of its durable state.
/// </summary>
/// <remarks>
/// A replica that loses or corrupts its disk forgets what it promised and accepted, so it must not
/// vote as the acceptor it was. It restarts with a fresh incarnation: a different acceptor that only
/// counts towards quorums once a configuration entry names it (see <see cref="Configuration"/>).
/// </remarks>
/// <param name="Id">The replica id (routing address), unique within a configuration.</param>
/// <param name="Incarnation">Which life of the replica's durable state; 0 for the founding members.</param>
public readonly record struct Member(int Id, long Incarnation)
{
    /// <inheritdoc />
    public override string ToString() => Incarnation == 0 ? $"{Id}" : $"{Id}#{Incarnation:x}";
}
