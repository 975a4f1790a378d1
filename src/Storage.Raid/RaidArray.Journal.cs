using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using Storage.Devices;
using Storage.Native;

namespace Storage.Raid;

// Journal records and flushes of the write path (see RaidArray.Write.cs): allocation-free once warm, like it.
public sealed partial class RaidArray
{
    /// <summary>
    /// Writes each target row, with a header, into journal slot (sequence mod S) of its member, then waits until a
    /// flush of all members covers those writes — one flush serves every record that got there meanwhile (group
    /// commit). Ordering and slot reuse follow <see cref="JournalRing"/>. Returns the record's ticket, completed once
    /// the home writes finish.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<JournalTicket> JournalAsync(long stripe, int inChunk, StripeRequest request, CancellationToken cancellationToken)
    {
        var segment = request.Segment;
        var targets = request.Targets;
        var ticket = _journal.Begin();
        RememberJournalled(ticket.Slot, stripe);
        bool entered = false;
        try
        {
            long completion = ticket.MustBeHome is { } mustBeHome ? await mustBeHome.ConfigureAwait(false) : ticket.HomeCompletion;
            if (_journal.FlushedCompletions < completion)
                await FlushMembersAsync(completion, CancellationToken.None).ConfigureAwait(false);
            if (ticket.PreviousIssued is { } previousIssued)
                await previousIssued.ConfigureAwait(false);
            await _journal.EnterAsync().ConfigureAwait(false);
            entered = true;
            ulong roles = 0;
            var holders = request.Holders;
            foreach (var (row, member) in targets)
            {
                int role = _layout.MemberOf(stripe, row);
                roles |= 1UL << role;
                holders[role] = member.Id;
            }
            if (_journalDevice is { } journal)
            {
                await WriteRecordToDeviceAsync(journal.Device, ticket, stripe, inChunk, request, roles, cancellationToken).ConfigureAwait(false);
                await FlushPartsAsync(_journal.PartFlushNeeded, cancellationToken).ConfigureAwait(false);
                ThrowIfFailed();
                return ticket;
            }
            byte[] headers = ArrayPool<byte>.Shared.Rent(targets.Count * JournalRecord.HeaderSize);
            var writes = ArrayPool<PendingIo>.Shared.Rent(targets.Count * 2);
            int started = 0;
            try
            {
                for (int i = 0; i < targets.Count; i++)
                {
                    var (row, member) = targets[i];
                    var header = headers.AsMemory(i * JournalRecord.HeaderSize, JournalRecord.HeaderSize);
                    int role = _layout.MemberOf(stripe, row);
                    JournalRecord.Write(header.Span, Id, ticket.Sequence, stripe, inChunk, segment.Width, role, roles, Crc32C.Compute(segment.Row(row).Span), holders);
                    long slotOffset = JournalOffset + (long)ticket.Slot * JournalSlotSize;
                    writes[started++] = new PendingIo(row, member, member.Device.WriteAsync(slotOffset, header, cancellationToken: cancellationToken));
                    writes[started++] = new PendingIo(row, member, member.Device.WriteAsync(slotOffset + JournalRecord.HeaderSize, segment.Row(row), cancellationToken: cancellationToken));
                }
                _journal.Issued(ticket);
            }
            finally
            {
                Exception? failure = null;
                for (int i = 0; i < started; i++)
                {
                    try
                    {
                        await writes[i].Io.ConfigureAwait(false);
                    }
                    catch (BlockDeviceException e)
                    {
                        await FailMemberAsync(writes[i].Member, $"journal write failed: {e.Message}").ConfigureAwait(false);
                    }
                    catch (Exception e)
                    {
                        failure ??= e;
                    }
                }
                Array.Clear(writes, 0, started);
                ArrayPool<PendingIo>.Shared.Return(writes);
                ArrayPool<byte>.Shared.Return(headers);
                if (failure is not null)
                    ExceptionDispatchInfo.Throw(failure);
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

    /// <summary>
    /// Makes journal parts durable unless a part flush numbered <paramref name="needed"/> or later already ran: a flush of
    /// every live member, or of the journal device alone.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask FlushPartsAsync(long needed, CancellationToken cancellationToken)
    {
        if (_journal.PartsDurable(needed))
            return;
        if (_journalDevice is not { } journal)
        {
            await FlushAllAsync(FlushCover.Parts, needed, cancellationToken).ConfigureAwait(false);
            return;
        }
        try
        {
            await FlushJournalDeviceAsync(journal.Device, needed, cancellationToken).ConfigureAwait(false);
        }
        catch (BlockDeviceException e)
        {
            throw JournalDeviceFailed(e);
        }
    }

    /// <summary>Bytes of one journal slot: a header and up to one chunk.</summary>
    internal long JournalSlotSize => JournalRecord.HeaderSize + Geometry.ChunkSize;

    /// <summary>
    /// Flushes every writable member unless a flush that covers <paramref name="completions"/> journal
    /// completions already finished (<see cref="long.MaxValue"/>: always).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask FlushMembersAsync(long completions, CancellationToken cancellationToken)
    {
        await FlushAllAsync(completions == long.MaxValue ? FlushCover.None : FlushCover.Completions, completions, cancellationToken).ConfigureAwait(false);
        ThrowIfFailed();
    }

    /// <summary>What a caller of <see cref="FlushAllAsync"/> needs a flush for, so that it can skip one that finished meanwhile.</summary>
    private enum FlushCover
    {
        /// <summary>Always flush.</summary>
        None,

        /// <summary>Journal parts: covered once a part flush numbered the value or later finished.</summary>
        Parts,

        /// <summary>Home writes: covered once a flush covering the value's journal completions finished.</summary>
        Completions,
    }

    /// <summary>
    /// One flush of every live member at a time; a caller whose need a flush finished meanwhile covered
    /// (<paramref name="cover"/> with <paramref name="needed"/>) returns without another. Records what the flush made durable.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask FlushAllAsync(FlushCover cover, long needed, CancellationToken cancellationToken)
    {
        await _flushGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            bool covered = cover switch
            {
                FlushCover.Parts => _journal.PartsDurable(needed),
                FlushCover.Completions => _journal.FlushedCompletions >= needed,
                _ => false,
            };
            if (covered)
                return;
            // A flush of the members covers journal parts only when they live in the members.
            long number = _journalDevice is null ? _journal.StartPartFlush() : 0;
            long completions = _journal.CompletionsNow;
            await FlushLiveMembersAsync(cancellationToken).ConfigureAwait(false);
            if (number > 0)
                _journal.PartFlushDone(number);
            _journal.Flushed(completions);
        }
        finally
        {
            _flushGate.Release();
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask FlushLiveMembersAsync(CancellationToken cancellationToken)
    {
        var flushes = ArrayPool<PendingIo>.Shared.Rent(_roles.Length);
        int started = 0;
        try
        {
            foreach (var member in _roles)
            {
                if (member is { Writable: true })
                    flushes[started++] = new PendingIo(-1, member, member.Device.FlushAsync(cancellationToken));
            }
        }
        finally
        {
            Exception? failure = null;
            for (int i = 0; i < started; i++)
            {
                try
                {
                    await flushes[i].Io.ConfigureAwait(false);
                }
                catch (BlockDeviceException e)
                {
                    await FailMemberAsync(flushes[i].Member, $"flush failed: {e.Message}").ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    failure ??= e;
                }
            }
            Array.Clear(flushes, 0, started);
            ArrayPool<PendingIo>.Shared.Return(flushes);
            if (failure is not null)
                ExceptionDispatchInfo.Throw(failure);
        }
    }
}
