namespace Storage.Consensus;

/// <summary>
/// An accepted proposal: this acceptor accepted <paramref name="Value"/> for <paramref name="Slot"/> in
/// <paramref name="Ballot"/>. The driver must persist it before sending the Accepted it supports.
/// </summary>
/// <param name="Slot">The log slot, at least 1.</param>
/// <param name="Ballot">The ballot it was accepted in.</param>
/// <param name="Value">The value.</param>
public readonly record struct LogRecord(long Slot, Ballot Ballot, Value Value);

/// <summary>
/// The acceptor's small durable state: the highest ballot promised, and the commit index (every slot up
/// to it is chosen and its chosen value is in the log or the snapshot).
/// </summary>
/// <param name="Promised">No ballot below this is accepted; must reach disk before a Promise is sent.</param>
/// <param name="Commit">The highest slot of the chosen prefix; persisted lazily (it only saves replay).</param>
public readonly record struct HardState(Ballot Promised, long Commit);

/// <summary>One chosen slot handed to the application, in slot order.</summary>
/// <param name="Slot">The slot.</param>
/// <param name="Value">The chosen value (no-ops and configurations included, so slots stay contiguous).</param>
public readonly record struct CommittedEntry(long Slot, Value Value);

/// <summary>
/// The application state after applying every slot up to <see cref="Index"/>, together with the
/// configuration in force after that slot. Lets the log before it be discarded.
/// </summary>
/// <param name="Index">The last slot the state includes.</param>
/// <param name="Config">The configuration after applying slots up to <paramref name="Index"/>.</param>
/// <param name="Data">The application's serialized state; not copied, must not change.</param>
public sealed record Snapshot(long Index, Configuration Config, ReadOnlyMemory<byte> Data);
