using System.Collections.ObjectModel;

namespace Storage.Consensus;

/// <summary>
/// An immutable set of voting members; decisions need a majority (<see cref="Quorum"/>) of them.
/// </summary>
/// <remarks>
/// A configuration entry in slot <c>s</c> governs slots after <c>s</c>. Leaders never propose past an
/// uncommitted configuration entry, and each entry changes one member only (add, remove, or replace
/// a member's incarnation), so the configuration of every slot is known exactly when it is proposed.
/// </remarks>
public sealed class Configuration : IEquatable<Configuration>
{
    private readonly Member[] _members;

    /// <summary>Creates a configuration from its members.</summary>
    /// <exception cref="ArgumentException">No members, or two members share an id.</exception>
    public Configuration(IEnumerable<Member> members)
    {
        ArgumentNullException.ThrowIfNull(members);
        _members = [.. members.OrderBy(m => m.Id)];
        if (_members.Length == 0)
            throw new ArgumentException("A configuration needs at least one member.", nameof(members));
        for (int i = 1; i < _members.Length; i++)
            if (_members[i].Id == _members[i - 1].Id)
                throw new ArgumentException($"Replica id {_members[i].Id} appears twice.", nameof(members));
        Members = new ReadOnlyCollection<Member>(_members);
    }

    /// <summary>A founding configuration: ids 1..<paramref name="count"/>, incarnation 0.</summary>
    public static Configuration Initial(int count) =>
        new(Enumerable.Range(1, count).Select(i => new Member(i, 0)));

    /// <summary>The members, ordered by id.</summary>
    public IReadOnlyList<Member> Members { get; }

    /// <summary>How many members make a majority: the quorum of accepts (phase 2) and of lease acknowledgements.</summary>
    public int Quorum => _members.Length / 2 + 1;

    /// <summary>
    /// How many promises complete phase 1: enough to meet every majority (Flexible Paxos). The same as
    /// <see cref="Quorum"/> for an odd number of members, one fewer for an even number — which keeps a
    /// two-member configuration with one dead member able to elect a leader.
    /// </summary>
    public int PromiseQuorum => _members.Length - Quorum + 1;

    /// <summary>Whether <paramref name="member"/> (id and incarnation) votes in this configuration.</summary>
    public bool Contains(Member member) => Array.IndexOf(_members, member) >= 0;

    /// <summary>Whether some incarnation of replica <paramref name="id"/> is a member.</summary>
    public bool ContainsId(int id) => TryGet(id, out _);

    /// <summary>The member with replica id <paramref name="id"/>, if any.</summary>
    public bool TryGet(int id, out Member member)
    {
        foreach (var m in _members)
            if (m.Id == id)
            {
                member = m;
                return true;
            }
        member = default;
        return false;
    }

    /// <summary>
    /// Whether <paramref name="next"/> differs from this configuration by exactly one member: one
    /// added, one removed, or one replaced by a new incarnation of the same id.
    /// </summary>
    public bool IsSingleChangeTo(Configuration next)
    {
        ArgumentNullException.ThrowIfNull(next);
        int onlyHere = _members.Count(m => !next.Contains(m));
        int onlyThere = next._members.Count(m => !Contains(m));
        if (onlyHere + onlyThere == 1)
            return true;
        if (onlyHere == 1 && onlyThere == 1)
        {
            var gone = _members.First(m => !next.Contains(m));
            var come = next._members.First(m => !Contains(m));
            return gone.Id == come.Id;
        }
        return false;
    }

    /// <inheritdoc />
    public bool Equals(Configuration? other) =>
        other is not null && _members.AsSpan().SequenceEqual(other._members);

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as Configuration);

    /// <inheritdoc />
    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (var m in _members)
            hash.Add(m);
        return hash.ToHashCode();
    }

    /// <inheritdoc />
    public override string ToString() => "{" + string.Join(",", _members) + "}";
}
