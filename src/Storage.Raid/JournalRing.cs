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
    private readonly Lock _gate = new();
    private readonly JournalTicket?[] _records;   // the last record begun in each slot
    private readonly Stack<JournalTicket> _free = new();
    private readonly SemaphoreSlim _inFlight;
    private JournalTicket? _lastBegun;
    private long _next = 1;
    private long _completions;
    private long _flushedCompletions;
    private long _partFlushesStarted;
    private long _partFlushesDone;

    public JournalRing(int slots)
    {
        _records = new JournalTicket?[Math.Max(slots, 2)];   // 0 slots (no journal): never used
        _inFlight = new SemaphoreSlim(Batch, Batch);
    }

    public int Slots => _records.Length;

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

    /// <summary>
    /// Takes the next sequence and its slot, with what it must wait for before issuing its parts. Tickets are pooled:
    /// a task to wait on is made only when the record waited for has not got there yet, so a record that finds its
    /// predecessors done allocates nothing. The ticket is the caller's until <see cref="Complete"/>.
    /// </summary>
    public JournalTicket Begin()
    {
        lock (_gate)
        {
            long sequence = _next++;
            int slot = (int)(sequence % _records.Length);
            var ticket = _free.Count > 0 ? _free.Pop() : new JournalTicket();
            ticket.Start(sequence, slot);
            long home = sequence - (Slots - Batch);   // must be home before this one issues its parts
            if (home >= 1 && _records[(int)(home % _records.Length)] is { } homeRecord && homeRecord.Sequence == home)
                ticket.WaitUntilHome(homeRecord);
            if (_lastBegun is { } previous)
            {
                ticket.WaitUntilIssued(previous);
                Release(previous);
            }
            if (_records[slot] is { } replaced)
                Release(replaced);
            _records[slot] = ticket;
            _lastBegun = ticket;
            return ticket;
        }
    }

    /// <summary>Waits for a free place among the B records in flight.</summary>
    public Task EnterAsync() => _inFlight.WaitAsync();

    /// <summary>The record issued its part writes: the next may issue its own.</summary>
    public void Issued(JournalTicket ticket)
    {
        TaskCompletionSource? waiter;
        lock (_gate)
            waiter = ticket.SetIssued();
        waiter?.TrySetResult();
    }

    /// <summary>The record's parts are durable (or it gave up): frees its place among the B in flight.</summary>
    public void Leave() => _inFlight.Release();

    /// <summary>The record finished its in-place writes (or was abandoned). The caller must not use the ticket after this.</summary>
    public void Complete(JournalTicket ticket)
    {
        TaskCompletionSource? issued;
        TaskCompletionSource<long>? done;
        long completion;
        lock (_gate)
        {
            issued = ticket.SetIssued();
            completion = Interlocked.Increment(ref _completions);
            done = ticket.SetDone(completion);
            Release(ticket);
        }
        issued?.TrySetResult();
        done?.TrySetResult(completion);
    }

    /// <summary>Drops one of a ticket's three holders (its writer, its slot, the next record's Begin); the last pools it. Under the gate.</summary>
    private void Release(JournalTicket ticket)
    {
        if (ticket.Release() && _free.Count < 2 * _records.Length)
            _free.Push(ticket);
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

/// <summary>
/// One record's place in the journal ring, and what it must wait for. Pooled by <see cref="JournalRing"/>: it has three
/// holders (the writer until <see cref="JournalRing.Complete"/>, its slot until the record S later replaces it, and
/// the ring until the next record begins), and goes back to the pool when the last lets go. Its state changes only
/// under the ring's gate.
/// </summary>
internal sealed class JournalTicket
{
    private int _holders;
    private bool _issued;
    private bool _done;
    private long _completion;
    private TaskCompletionSource? _issuedWaiter;
    private TaskCompletionSource<long>? _doneWaiter;

    public long Sequence { get; private set; }

    public int Slot { get; private set; }

    /// <summary>Completes with <see cref="HomeCompletion"/>'s value once the record S-B earlier is home; null when it already was (or there is none).</summary>
    public Task<long>? MustBeHome { get; private set; }

    /// <summary>The completion number of the record S-B earlier when it was home at <see cref="JournalRing.Begin"/>; 0 when there is none or it was not.</summary>
    public long HomeCompletion { get; private set; }

    /// <summary>Completes once the previous record issued its parts; null when it already had (or there is none).</summary>
    public Task? PreviousIssued { get; private set; }

    internal void Start(long sequence, int slot)
    {
        Sequence = sequence;
        Slot = slot;
        _holders = 3;
        _issued = _done = false;
        _completion = 0;
        _issuedWaiter = null;
        _doneWaiter = null;
        MustBeHome = null;
        HomeCompletion = 0;
        PreviousIssued = null;
    }

    internal void WaitUntilHome(JournalTicket home)
    {
        if (home._done)
            HomeCompletion = home._completion;
        else
            MustBeHome = (home._doneWaiter ??= new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
    }

    internal void WaitUntilIssued(JournalTicket previous)
    {
        if (!previous._issued)
            PreviousIssued = (previous._issuedWaiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
    }

    /// <summary>Marks the parts issued; returns the waiter to wake, if any (the first time only).</summary>
    internal TaskCompletionSource? SetIssued()
    {
        if (_issued)
            return null;
        _issued = true;
        return _issuedWaiter;
    }

    /// <summary>Marks the record home; returns the waiter to wake with <paramref name="completion"/>, if any.</summary>
    internal TaskCompletionSource<long>? SetDone(long completion)
    {
        _done = true;
        _completion = completion;
        return _doneWaiter;
    }

    /// <summary>Drops one holder; true when it was the last.</summary>
    internal bool Release() => --_holders == 0;
}
