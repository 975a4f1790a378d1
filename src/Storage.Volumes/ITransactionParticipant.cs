namespace Storage.Volumes;

/// <summary>
/// A pool's part in volume transactions, wherever the pool is: <see cref="PoolParticipant"/> in this process, or a
/// proxy that sends the same calls to the node hosting it. Prepare, commit and abort are idempotent, so recovery may
/// repeat them.
/// </summary>
public interface ITransactionParticipant
{
    /// <summary>The pool's name in transaction records.</summary>
    string Name { get; }

    /// <summary>Free bytes in the pool (placement weighs by it).</summary>
    /// <exception cref="ParticipantUnavailableException">The pool cannot be reached now.</exception>
    Task<long> FreeBytesAsync(CancellationToken cancellationToken = default);

    /// <summary>Makes the reservation durable; a participant that returns has voted yes (see <see cref="PoolParticipant.PrepareAsync"/>).</summary>
    Task PrepareAsync(string transaction, SegmentWork work, Action? cut = null, CancellationToken cancellationToken = default);

    /// <summary>Makes what <paramref name="transaction"/> staged final.</summary>
    Task CommitAsync(string transaction, CancellationToken cancellationToken = default);

    /// <summary>Undoes what <paramref name="transaction"/> staged, freeing what it reserved.</summary>
    Task AbortAsync(string transaction, CancellationToken cancellationToken = default);

    /// <summary>The transactions the pool holds prepared (staged) work for.</summary>
    Task<IReadOnlyList<string>> PreparedAsync(CancellationToken cancellationToken = default);

    /// <summary>Gives each segment of <paramref name="volume"/> the pool holds the size the record says.</summary>
    Task ReconcileAsync(SpannedVolume volume, CancellationToken cancellationToken = default);
}

/// <summary>
/// A participant could not be reached (its node is down or unreachable): not a vote. A transaction it is part of
/// stays in the catalogue until the participant is back and has resolved it.
/// </summary>
public sealed class ParticipantUnavailableException(string message, Exception? inner = null) : IOException(message, inner);
