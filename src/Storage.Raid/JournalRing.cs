namespace Storage.Raid;

/// <summary>
/// Sequence numbers, slot reuse and group commit of the journal ring. Record n goes to slot n mod S on every
/// member it writes. With B = S/2 records allowed between "parts issued" and "parts durable":
/// <list type="number">
/// <item>Records issue their part writes in sequence order (n after n-1 issued its own).</item>
/// <item>At most B records have parts issued but not yet durable; one flush of all members makes every
/// record whose parts had completed before it started durable (group commit).</item>
/// <item>Record n may issue its parts only after record n-(S-B) reached its home location durably (its
/// in-place writes finished and a flush of all members started after that).</item>
/// </list>
/// After a crash, with H the highest sequence found on the surviving members, at most B records above the
/// highest complete one had started, so every record at or below H+B-S is home already (skip it: its parts may
/// be stale), and replaying the complete records above it in order is correct — none of them can have been
/// overtaken by a newer update whose parts then left the ring.
/// </summary>
internal sealed class JournalRing : IDisposable
{
    private readonly object _gate = new();
    private readonly TaskCompletionSource<long>?[] _done;
    private readonly SemaphoreSlim _inFlight;
    private TaskCompletionSource? _lastIssued;
    private long _next = 1;
    private long _completions;
    private long _flushedCompletions;
    private long _partFlushesStarted;
    private long _partFlushesDone;

    public JournalRing(int slots)
    {
        _done = new TaskCompletionSource<long>?[Math.Max(slots, 2)];   // 0 slots (no journal): never used
        _inFlight = new SemaphoreSlim(Batch, Batch);
    }

    public int Slots => _done.Length;

    public void Dispose() => _inFlight.Dispose();

    /// <summary>B: records whose parts may be issued but not yet durable at once.</summary>
    public int Batch => Slots / 2;

    /// <summary>Records at or below <c>highest + Batch - Slots</c> are home already and never replayed.</summary>
    public long ReplayFloor(long highest) => highest + Batch - Slots;

    /// <summary>Sets the next sequence after a replay saw <paramref name="highest"/>.</summary>
    public void StartAfter(long highest)
    {
        lock (_gate)
            _next = Math.Max(_next, highest + 1);
    }

    /// <summary>Takes the next sequence and its slot, with what it must wait for before issuing its parts.</summary>
    public JournalTicket Begin()
    {
        var done = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        var issued = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            long sequence = _next++;
            int slot = (int)(sequence % _done.Length);
            long home = sequence - (Slots - Batch);   // must be home before this one issues its parts
            var mustBeHome = home >= 1 ? _done[(int)(home % _done.Length)]?.Task : null;
            var ticket = new JournalTicket(sequence, slot, mustBeHome, _lastIssued?.Task, done, issued);
            _done[slot] = done;
            _lastIssued = issued;
            return ticket;
        }
    }

    /// <summary>Waits for a free place among the B records in flight.</summary>
    public Task EnterAsync() => _inFlight.WaitAsync();

    /// <summary>The record issued its part writes: the next may issue its own.</summary>
    public static void Issued(JournalTicket ticket) => ticket.IssuedSource.TrySetResult();

    /// <summary>The record's parts are durable (or it gave up): frees its place among the B in flight.</summary>
    public void Leave() => _inFlight.Release();

    /// <summary>The record finished its in-place writes (or was abandoned).</summary>
    public void Complete(JournalTicket ticket)
    {
        ticket.IssuedSource.TrySetResult();
        ticket.DoneSource.TrySetResult(Interlocked.Increment(ref _completions));
    }

    /// <summary>Completions covered by the last full flush.</summary>
    public long FlushedCompletions => Interlocked.Read(ref _flushedCompletions);

    /// <summary>Call before a flush of all members: the completions it will cover.</summary>
    public long CompletionsNow => Interlocked.Read(ref _completions);

    public void Flushed(long completions) => Raise(ref _flushedCompletions, completions);

    /// <summary>The part flush a record whose part writes just completed needs: the next one to start.</summary>
    public long PartFlushNeeded => Interlocked.Read(ref _partFlushesStarted) + 1;

    /// <summary>True when a part flush numbered <paramref name="needed"/> or later has completed.</summary>
    public bool PartsDurable(long needed) => Interlocked.Read(ref _partFlushesDone) >= needed;

    /// <summary>Call under the flush gate before flushing for parts: the number of this flush.</summary>
    public long StartPartFlush() => Interlocked.Increment(ref _partFlushesStarted);

    public void PartFlushDone(long number) => Raise(ref _partFlushesDone, number);

    private static void Raise(ref long field, long value)
    {
        long seen;
        do
        {
            seen = Interlocked.Read(ref field);
            if (seen >= value)
                return;
        }
        while (Interlocked.CompareExchange(ref field, value, seen) != seen);
    }
}

/// <summary>One record's place in the journal ring.</summary>
internal sealed record JournalTicket(long Sequence, int Slot, Task<long>? MustBeHome, Task? PreviousIssued, TaskCompletionSource<long> DoneSource, TaskCompletionSource IssuedSource);
