namespace Storage.Raid;

/// <summary>
/// Sequence numbers and slot reuse of the journal ring. Record n goes to slot n mod S on every member it
/// writes. Two rules make replay safe:
/// <list type="number">
/// <item>Records journal strictly in sequence order: n starts writing its parts only after n-1's parts are
/// durable (or n-1 was abandoned). So the journalled records form a contiguous range.</item>
/// <item>A slot is reused only after the record in it reached its home location durably: its in-place writes
/// finished and a flush of all members started after that.</item>
/// </list>
/// After a crash, with H the highest sequence found on the surviving members, every record at or below H-S is
/// already home (skip it: its parts may be stale), and replaying the complete records above it in order is
/// correct — none of them can have been overtaken by a newer update that left the ring.
/// </summary>
internal sealed class JournalRing
{
    private readonly object _gate = new();
    private readonly TaskCompletionSource<long>?[] _slotDone;
    private TaskCompletionSource? _lastJournalled;
    private long _next = 1;
    private long _completions;
    private long _flushedCompletions;

    public JournalRing(int slots) => _slotDone = new TaskCompletionSource<long>?[Math.Max(slots, 1)];

    public int Slots => _slotDone.Length;

    /// <summary>Sets the next sequence after a replay saw <paramref name="highest"/>.</summary>
    public void StartAfter(long highest)
    {
        lock (_gate)
            _next = Math.Max(_next, highest + 1);
    }

    /// <summary>
    /// Takes the next sequence and its slot. <c>PreviousInSlot</c> completes, with its completion number, when the
    /// slot's last record got home; <c>PreviousJournalled</c> when record n-1's parts are durable.
    /// Complete <c>Journalled</c> with <see cref="Journalled"/> and <c>Done</c> with <see cref="Complete"/>.
    /// </summary>
    public JournalTicket Begin()
    {
        var done = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        var journalled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            long sequence = _next++;
            int slot = (int)(sequence % _slotDone.Length);
            var ticket = new JournalTicket(sequence, slot, _slotDone[slot]?.Task, _lastJournalled?.Task, done, journalled);
            _slotDone[slot] = done;
            _lastJournalled = journalled;
            return ticket;
        }
    }

    /// <summary>The record's parts are durable (or it gave up): the next record may journal.</summary>
    public static void Journalled(JournalTicket ticket) => ticket.JournalledSource.TrySetResult();

    /// <summary>The record finished its in-place writes (or was abandoned).</summary>
    public void Complete(JournalTicket ticket)
    {
        ticket.JournalledSource.TrySetResult();
        ticket.DoneSource.TrySetResult(Interlocked.Increment(ref _completions));
    }

    /// <summary>Completions covered by the last full flush.</summary>
    public long FlushedCompletions => Interlocked.Read(ref _flushedCompletions);

    /// <summary>Call before a flush of all members: the completions it will cover.</summary>
    public long CompletionsNow => Interlocked.Read(ref _completions);

    public void Flushed(long completions)
    {
        long seen;
        do
        {
            seen = Interlocked.Read(ref _flushedCompletions);
            if (seen >= completions)
                return;
        }
        while (Interlocked.CompareExchange(ref _flushedCompletions, completions, seen) != seen);
    }
}

/// <summary>One record's place in the journal ring.</summary>
internal sealed record JournalTicket(long Sequence, int Slot, Task<long>? PreviousInSlot, Task? PreviousJournalled, TaskCompletionSource<long> DoneSource, TaskCompletionSource JournalledSource);
