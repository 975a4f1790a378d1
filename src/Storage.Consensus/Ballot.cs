namespace Storage.Consensus;

/// <summary>
/// A Paxos ballot number: a round that only grows, made unique per proposer by the replica id that
/// owns it. Ballots are ordered by round first and replica id second, so two proposers never share one.
/// </summary>
/// <param name="Round">The round, at least 1 for a real ballot; 0 only in <see cref="Zero"/>.</param>
/// <param name="ReplicaId">The replica that may propose in this ballot.</param>
public readonly record struct Ballot(long Round, int ReplicaId) : IComparable<Ballot>
{
    /// <summary>The ballot below every real ballot: nothing promised, nothing accepted.</summary>
    public static Ballot Zero => default;

    /// <inheritdoc />
    public int CompareTo(Ballot other) =>
        Round != other.Round ? Round.CompareTo(other.Round) : ReplicaId.CompareTo(other.ReplicaId);

    /// <summary>Whether <paramref name="left"/> orders before <paramref name="right"/>.</summary>
    public static bool operator <(Ballot left, Ballot right) => left.CompareTo(right) < 0;

    /// <summary>Whether <paramref name="left"/> orders after <paramref name="right"/>.</summary>
    public static bool operator >(Ballot left, Ballot right) => left.CompareTo(right) > 0;

    /// <summary>Whether <paramref name="left"/> orders before or equal to <paramref name="right"/>.</summary>
    public static bool operator <=(Ballot left, Ballot right) => left.CompareTo(right) <= 0;

    /// <summary>Whether <paramref name="left"/> orders after or equal to <paramref name="right"/>.</summary>
    public static bool operator >=(Ballot left, Ballot right) => left.CompareTo(right) >= 0;

    /// <inheritdoc />
    public override string ToString() => $"{Round}.{ReplicaId}";
}
