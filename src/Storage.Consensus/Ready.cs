namespace Storage.Consensus;

/// <summary>
/// Work the core hands its driver, to be done in this order: persist (<see cref="Snapshot"/>, then
/// <see cref="Records"/>, then <see cref="HardState"/>) and fsync when <see cref="MustSync"/>; only then
/// send <see cref="Messages"/>; install <see cref="Snapshot"/> into the application when
/// <see cref="InstallSnapshot"/>; apply <see cref="Committed"/>; finally call <see cref="PaxosCore.Advance"/>.
/// </summary>
public sealed class Ready
{
    /// <summary>The hard state to persist, or null when it has not changed.</summary>
    public HardState? HardState { get; init; }

    /// <summary>Accepted records to append, in the order given (a later record for a slot replaces an earlier one).</summary>
    public required IReadOnlyList<LogRecord> Records { get; init; }

    /// <summary>
    /// A snapshot to persist; the log up to its index may then be discarded. Null when none.
    /// </summary>
    public Snapshot? Snapshot { get; init; }

    /// <summary>
    /// Whether <see cref="Snapshot"/> came from another replica and replaces the application state
    /// (otherwise the application produced it through <see cref="PaxosCore.Compact"/>).
    /// </summary>
    public bool InstallSnapshot { get; init; }

    /// <summary>Messages to send once the state above is durable. Never addressed to this replica.</summary>
    public required IReadOnlyList<Message> Messages { get; init; }

    /// <summary>Chosen entries to apply, contiguous and in slot order.</summary>
    public required IReadOnlyList<CommittedEntry> Committed { get; init; }

    /// <summary>
    /// Whether something must be written and fsynced before <see cref="Messages"/> go out: records, a
    /// snapshot, or a new promised ballot. A hard state that only moves the commit index may be written
    /// without an fsync of its own (losing it only costs replay).
    /// </summary>
    public required bool MustSync { get; init; }
}
