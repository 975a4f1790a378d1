using Storage.Native;
using System.Buffers;
using Storage.Devices;

namespace Storage.Raid;

public sealed partial class RaidArray
{
    private readonly JournalRing _journal;
    private readonly SemaphoreSlim _flushGate = new(1, 1);

    /// <summary>
    /// Writes <paramref name="buffer"/> at <paramref name="offset"/> (sector-aligned). Full-stripe writes compute
    /// parity without reads; partial ones read whichever is fewer (read-modify-write or reconstruct-write).
    /// With the journal on, the call completes once the update is durable in the journal, so the bytes survive
    /// a crash with or without a later <see cref="FlushAsync"/>; <paramref name="forceUnitAccess"/> then costs
    /// nothing more. Without it, the bytes are durable after <see cref="FlushAsync"/> or with FUA.
    /// </summary>
    /// <exception cref="ArrayFailedException">Too many members are unavailable; the write was not done.</exception>
    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess = false, CancellationToken cancellationToken = default)
    {
        var data = buffer;
        CheckRange(offset, data.Length);
        ThrowIfFailed();
        long start = offset, end = offset + data.Length;
        int position = 0;
        List<Task>? pending = null;
        while (offset < end)
        {
            long stripe = offset / Geometry.StripeDataSize;
            int inStripe = (int)(offset - stripe * Geometry.StripeDataSize);
            int length = (int)Math.Min(end - offset, Geometry.StripeDataSize - inStripe);
            var write = WriteStripeAsync(stripe, inStripe, data.Slice(position, length), forceUnitAccess, cancellationToken);
            if (!write.IsCompletedSuccessfully)
                (pending ??= []).Add(write);
            offset += length;
            position += length;
        }
        if (pending is not null)
            await Task.WhenAll(pending).ConfigureAwait(false);
        await ClearBadBlocksAsync(start, end - start).ConfigureAwait(false);
    }

    /// <summary>Makes every completed write durable on every member.</summary>
    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_stopped, this);
        await FlushMembersAsync(long.MaxValue, cancellationToken).ConfigureAwait(false);
    }

    private async Task WriteStripeAsync(long stripe, int start, ReadOnlyMemory<byte> data, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        int chunk = Geometry.ChunkSize, k = Geometry.DataCount, m = Geometry.ParityCount;
        int first = start / chunk, last = (start + data.Length - 1) / chunk;
        int lo = first == last ? start % chunk : 0;
        int width = first == last ? data.Length : chunk;
        if (m == 0)
        {
            await WriteStripedAsync(stripe, start, data, forceUnitAccess, cancellationToken).ConfigureAwait(false);
            return;
        }

        var gate = StripeLock(stripe);
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        JournalTicket? journalled = null;
        try
        {
            using var segment = new StripeBuffer(Geometry.MemberCount, width);
            // Bytes of data row i that this write replaces, in segment coordinates.
            (int From, int To) Covered(int row)
            {
                if (row < first || row > last)
                    return (0, 0);
                int chunkStart = row * chunk;
                return (Math.Max(start, chunkStart) - chunkStart - lo, Math.Min(start + data.Length, chunkStart + chunk) - chunkStart - lo);
            }
            bool FullyCovered(int row) => row < k && Covered(row) == (0, width);
            void Overlay(int row)
            {
                var (from, to) = Covered(row);
                int source = row * chunk + lo + from - start;
                data.Span.Slice(source, to - from).CopyTo(segment.Row(row).Span[from..to]);
            }

            var lost = new List<int>(m + 1);
            var errors = new List<int>();
            int touched = last - first + 1;
            int unavailable = UnavailableAt(stripe);
            int fullRows = 0;
            for (int row = first; row <= last; row++)
                fullRows += FullyCovered(row) ? 1 : 0;

            bool updated = false;
            if (unavailable == 0 && touched + m < k - fullRows)
            {
                // Read-modify-write: old data of the touched rows and old parity; parity ^= f(old ^ new).
                await ReadRowsAsync(stripe, lo, segment, row => row >= k || (row >= first && row <= last), lost, errors, cancellationToken).ConfigureAwait(false);
                if (lost.Count == 0)
                {
                    byte[] old = ArrayPool<byte>.Shared.Rent(width);
                    try
                    {
                        for (int row = first; row <= last; row++)
                        {
                            segment.Row(row).Span.CopyTo(old);
                            Overlay(row);
                            _code.Update(row, old.AsSpan(0, width), segment.Row(row).Span, segment.RowsFrom(k, m));
                        }
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(old);
                    }
                    updated = true;
                }
            }
            if (!updated)
            {
                // Reconstruct-write: every data row the write does not fully replace, plus — when a row is
                // unavailable — every readable row, so the missing ones can be rebuilt first.
                bool rebuild = unavailable > 0 || lost.Count > 0;
                await ReadRowsAsync(stripe, lo, segment, row => rebuild || (row < k && !FullyCovered(row)), lost, errors, cancellationToken).ConfigureAwait(false);
                if (!rebuild && lost.Count > 0)
                {
                    rebuild = true;   // a read failed: read the rest to rebuild the failed rows
                    await ReadRowsAsync(stripe, lo, segment, AllRows, lost, errors, cancellationToken).ConfigureAwait(false);
                }
                if (rebuild)
                {
                    var needed = lost.Where(row => row < k && !FullyCovered(row)).ToArray();
                    if (needed.Length > 0)
                    {
                        if (lost.Count > m)
                            throw await UnreadableAsync(stripe, needed[0], lo, width, lost, errors).ConfigureAwait(false);
                        _code.Reconstruct(segment.Span, lost.ToArray());
                    }
                }
                for (int row = first; row <= last; row++)
                    Overlay(row);
                _code.Encode(segment.Span);
            }

            var targets = new List<(int Row, Member Member)>(touched + m);
            for (int row = 0; row < segment.Rows; row++)
            {
                if ((row >= first && row <= last) || row >= k || errors.Contains(row))
                {
                    if (WritableMember(stripe, row) is { } member)
                        targets.Add((row, member));
                }
            }
            if (JournalSlots > 0)
                journalled = await JournalAsync(stripe, lo, segment, targets, cancellationToken).ConfigureAwait(false);
            await WriteRowsAsync(stripe, lo, segment, targets, forceUnitAccess && JournalSlots == 0, cancellationToken).ConfigureAwait(false);
            ThrowIfFailed();
        }
        finally
        {
            if (journalled is not null)
                _journal.Complete(journalled);
            gate.Release();
        }
    }

    /// <summary>Writes rows to their home locations in parallel; a member that fails is failed (persisted) before this returns.</summary>
    private async Task WriteRowsAsync(long stripe, int inChunk, StripeBuffer segment, List<(int Row, Member Member)> targets, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        long memberOffset = _layout.MemberOffset(stripe, inChunk);
        var writes = new Task[targets.Count];
        for (int i = 0; i < targets.Count; i++)
            writes[i] = targets[i].Member.Device.WriteAsync(memberOffset, segment.Row(targets[i].Row), forceUnitAccess, cancellationToken).AsTask();
        for (int i = 0; i < writes.Length; i++)
        {
            try
            {
                await writes[i].ConfigureAwait(false);
            }
            catch (BlockDeviceException e)
            {
                await FailMemberAsync(targets[i].Member, $"write failed: {e.Message}").ConfigureAwait(false);
            }
        }
    }

    /// <summary>RAID-0: each piece goes straight to its member; there is no parity to keep consistent.</summary>
    private async Task WriteStripedAsync(long stripe, int start, ReadOnlyMemory<byte> data, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        int chunk = Geometry.ChunkSize;
        int position = 0;
        var writes = new List<Task>();
        while (position < data.Length)
        {
            int row = (start + position) / chunk, inChunk = (start + position) % chunk;
            int length = Math.Min(chunk - inChunk, data.Length - position);
            var member = WritableMember(stripe, row) ?? throw new ArrayFailedException($"Array '{Name}': member {_layout.MemberOf(stripe, row)} is gone and RAID-0 has no redundancy.");
            writes.Add(member.Device.WriteAsync(_layout.MemberOffset(stripe, inChunk), data.Slice(position, length), forceUnitAccess, cancellationToken).AsTask());
            position += length;
        }
        await Task.WhenAll(writes).ConfigureAwait(false);
    }

    /// <summary>
    /// Writes each target row, with a header, into journal slot (sequence mod S) of its member, then waits until a
    /// flush of all members covers those writes — one flush serves every record that got there meanwhile (group
    /// commit). Ordering and slot reuse follow <see cref="JournalRing"/>. Returns the record's ticket, completed once
    /// the home writes finish.
    /// </summary>
    private async Task<JournalTicket> JournalAsync(long stripe, int inChunk, StripeBuffer segment, List<(int Row, Member Member)> targets, CancellationToken cancellationToken)
    {
        var ticket = _journal.Begin();
        bool entered = false;
        try
        {
            if (ticket.MustBeHome is not null)
            {
                long completion = await ticket.MustBeHome.ConfigureAwait(false);
                if (_journal.FlushedCompletions < completion)
                    await FlushMembersAsync(completion, CancellationToken.None).ConfigureAwait(false);
            }
            if (ticket.PreviousIssued is not null)
                await ticket.PreviousIssued.ConfigureAwait(false);
            await _journal.EnterAsync().ConfigureAwait(false);
            entered = true;
            ulong roles = 0;
            var holders = new Guid[Geometry.MemberCount];
            foreach (var (row, member) in targets)
            {
                int role = _layout.MemberOf(stripe, row);
                roles |= 1UL << role;
                holders[role] = member.Id;
            }
            long slotOffset = JournalOffset + (long)ticket.Slot * JournalSlotSize;
            byte[] headers = ArrayPool<byte>.Shared.Rent(targets.Count * JournalRecord.HeaderSize);
            try
            {
                var writes = new Task[targets.Count * 2];
                for (int i = 0; i < targets.Count; i++)
                {
                    var (row, member) = targets[i];
                    var header = headers.AsMemory(i * JournalRecord.HeaderSize, JournalRecord.HeaderSize);
                    new JournalRecord(Id, ticket.Sequence, stripe, inChunk, segment.Width, _layout.MemberOf(stripe, row), roles, Crc32C.Compute(segment.Row(row).Span), holders).WriteTo(header.Span);
                    writes[2 * i] = member.Device.WriteAsync(slotOffset, header, cancellationToken: cancellationToken).AsTask();
                    writes[2 * i + 1] = member.Device.WriteAsync(slotOffset + JournalRecord.HeaderSize, segment.Row(row), cancellationToken: cancellationToken).AsTask();
                }
                JournalRing.Issued(ticket);
                for (int i = 0; i < writes.Length; i++)
                {
                    try
                    {
                        await writes[i].ConfigureAwait(false);
                    }
                    catch (BlockDeviceException e)
                    {
                        await FailMemberAsync(targets[i / 2].Member, $"journal write failed: {e.Message}").ConfigureAwait(false);
                    }
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(headers);
            }
            await FlushPartsAsync(_journal.PartFlushNeeded, cancellationToken).ConfigureAwait(false);
            ThrowIfFailed();
            return ticket;
        }
        catch
        {
            _journal.Complete(ticket);
            throw;
        }
        finally
        {
            if (entered)
                _journal.Leave();
        }
    }

    /// <summary>Flushes every live member unless a flush numbered <paramref name="needed"/> or later already ran.</summary>
    private Task FlushPartsAsync(long needed, CancellationToken cancellationToken)
        => _journal.PartsDurable(needed) ? Task.CompletedTask : FlushAllAsync(() => _journal.PartsDurable(needed), cancellationToken);

    /// <summary>Bytes of one journal slot: a header and up to one chunk.</summary>
    internal long JournalSlotSize => JournalRecord.HeaderSize + Geometry.ChunkSize;

    /// <summary>
    /// Flushes every writable member unless a flush that covers <paramref name="completions"/> journal
    /// completions already finished (<see cref="long.MaxValue"/>: always).
    /// </summary>
    private async Task FlushMembersAsync(long completions, CancellationToken cancellationToken)
    {
        await FlushAllAsync(completions == long.MaxValue ? null : () => _journal.FlushedCompletions >= completions, cancellationToken).ConfigureAwait(false);
        ThrowIfFailed();
    }

    /// <summary>
    /// One flush of every live member at a time; a caller whose need a flush finished meanwhile covered
    /// (<paramref name="covered"/> true) returns without another. Records what the flush made durable.
    /// </summary>
    private async Task FlushAllAsync(Func<bool>? covered, CancellationToken cancellationToken)
    {
        await _flushGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (covered?.Invoke() == true)
                return;
            long number = _journal.StartPartFlush();
            long completions = _journal.CompletionsNow;
            await FlushLiveMembersAsync(cancellationToken).ConfigureAwait(false);
            _journal.PartFlushDone(number);
            _journal.Flushed(completions);
        }
        finally
        {
            _flushGate.Release();
        }
    }

    private async Task FlushLiveMembersAsync(CancellationToken cancellationToken)
    {
        var members = LiveMembers();
        var flushes = members.Select(member => member.Device.FlushAsync(cancellationToken).AsTask()).ToArray();
        for (int i = 0; i < flushes.Length; i++)
        {
            try
            {
                await flushes[i].ConfigureAwait(false);
            }
            catch (BlockDeviceException e)
            {
                await FailMemberAsync(members[i], $"flush failed: {e.Message}").ConfigureAwait(false);
            }
        }
    }

    /// <summary>Role holders that take writes.</summary>
    private List<Member> LiveMembers()
    {
        var members = new List<Member>(_roles.Length);
        foreach (var member in _roles)
        {
            if (member is { Writable: true })
                members.Add(member);
        }
        return members;
    }
}
