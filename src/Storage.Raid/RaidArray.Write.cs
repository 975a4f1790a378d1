using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using Microsoft.Extensions.ObjectPool;
using Storage.Devices;

namespace Storage.Raid;

// The write path allocates nothing once warm: per-request state comes from _requests, member I/O is held as
// ValueTasks in pooled arrays and awaited exactly once each, and the async methods use pooled state machines.
// Allocation remains where a request has to wait for another (a contended lock, a journal record not yet home)
// and on failures.
public sealed partial class RaidArray
{
    private readonly JournalRing _journal;
    private readonly SemaphoreSlim _flushGate = new(1, 1);
    private readonly ObjectPool<StripeRequest> _requests;

    /// <summary>
    /// Writes <paramref name="buffer"/> at <paramref name="offset"/> (sector-aligned). Full-stripe writes compute
    /// parity without reads; partial ones read whichever is fewer (read-modify-write or reconstruct-write).
    /// With the journal on, the call completes once the update is durable in the journal, so the bytes survive
    /// a crash with or without a later <see cref="FlushAsync"/>; <paramref name="forceUnitAccess"/> then costs
    /// nothing more. Without it, the bytes are durable after <see cref="FlushAsync"/> or with FUA.
    /// </summary>
    /// <exception cref="ArrayFailedException">Too many members are unavailable; the write was not done.</exception>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess = false, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, buffer.Length);
        ThrowIfFailed();
        long stripeBytes = Geometry.StripeDataSize;
        if (!buffer.IsEmpty)
        {
            long stripe = offset / stripeBytes;
            if ((offset + buffer.Length - 1) / stripeBytes == stripe)
                await WriteStripeAsync(stripe, (int)(offset - stripe * stripeBytes), buffer, forceUnitAccess, cancellationToken).ConfigureAwait(false);
            else
                await WriteStripesAsync(offset, buffer, forceUnitAccess, cancellationToken).ConfigureAwait(false);
        }
        await ClearBadBlocksAsync(offset, buffer.Length).ConfigureAwait(false);
    }

    /// <summary>Makes every completed write durable on every member.</summary>
    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_stopped, this);
        await FlushMembersAsync(long.MaxValue, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A write over several stripes: every stripe's update in flight at once, each awaited once, in order.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteStripesAsync(long offset, ReadOnlyMemory<byte> data, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        long stripeBytes = Geometry.StripeDataSize;
        long end = offset + data.Length;
        var writes = ArrayPool<ValueTask>.Shared.Rent((int)((end - 1) / stripeBytes - offset / stripeBytes + 1));
        int started = 0;
        try
        {
            for (int position = 0; offset < end; started++)
            {
                long stripe = offset / stripeBytes;
                int inStripe = (int)(offset - stripe * stripeBytes);
                int length = (int)Math.Min(end - offset, stripeBytes - inStripe);
#pragma warning disable CA2012 // each stored ValueTask is awaited exactly once, in the finally block below
                writes[started] = WriteStripeAsync(stripe, inStripe, data.Slice(position, length), forceUnitAccess, cancellationToken);
#pragma warning restore CA2012
                offset += length;
                position += length;
            }
        }
        finally
        {
            // Every started update is awaited once, even after one failed; the first failure is rethrown.
            Exception? failure = null;
            for (int i = 0; i < started; i++)
            {
                try
                {
                    await writes[i].ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    failure ??= e;
                }
            }
            Array.Clear(writes, 0, started);
            ArrayPool<ValueTask>.Shared.Return(writes);
            if (failure is not null)
                ExceptionDispatchInfo.Throw(failure);
        }
    }

    private ValueTask WriteStripeAsync(long stripe, int start, ReadOnlyMemory<byte> data, bool forceUnitAccess, CancellationToken cancellationToken)
        => WriteStripeAsync(stripe, start, data, forceUnitAccess, lockHeld: false, cancellationToken);

    /// <summary>One stripe's update; <paramref name="lockHeld"/> when the caller holds the stripe's lock already (trim).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteStripeAsync(long stripe, int start, ReadOnlyMemory<byte> data, bool forceUnitAccess, bool lockHeld, CancellationToken cancellationToken)
    {
        int k = Geometry.DataCount, m = Geometry.ParityCount;
        if (m == 0)
        {
            await WriteStripedAsync(stripe, start, data, forceUnitAccess, cancellationToken).ConfigureAwait(false);
            return;
        }
        var range = new StripeRange(start, data.Length, Geometry.ChunkSize);

        var gate = StripeLock(stripe);
        if (!lockHeld)
            await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        JournalTicket? journalled = null;
        var request = _requests.Get();
        bool marked = false;
        try
        {
            await MarkAsync(stripe, cancellationToken).ConfigureAwait(false);   // before the journal too: a replay writes home
            marked = true;
            var segment = request.Segment;
            segment.Open(Geometry.MemberCount, range.Width);
            var lost = request.Lost;
            var errors = request.Errors;
            int touched = range.Last - range.First + 1;
            int unavailable = UnavailableAt(stripe);
            int fullRows = 0;
            for (int row = range.First; row <= range.Last; row++)
                fullRows += range.FullyCovers(row, k) ? 1 : 0;

            bool updated = false;
            if (unavailable == 0 && touched + m < k - fullRows)
            {
                // Read-modify-write: old data of the touched rows and old parity; parity ^= f(old ^ new).
                await ReadRowsAsync(stripe, range.Lo, segment, RowBits(k, segment.Rows) | RowBits(range.First, range.Last + 1), lost, errors, cancellationToken).ConfigureAwait(false);
                if (lost.Count == 0)
                {
                    byte[] old = ArrayPool<byte>.Shared.Rent(range.Width);
                    try
                    {
                        for (int row = range.First; row <= range.Last; row++)
                        {
                            segment.Row(row).Span.CopyTo(old);
                            range.Overlay(row, data.Span, segment);
                            _code.Update(row, old.AsSpan(0, range.Width), segment.Row(row).Span, segment.RowsFrom(k, m));
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
                ulong wanted = rebuild ? AllRows : 0;
                for (int row = 0; row < k && !rebuild; row++)
                    wanted |= range.FullyCovers(row, k) ? 0 : 1UL << row;
                await ReadRowsAsync(stripe, range.Lo, segment, wanted, lost, errors, cancellationToken).ConfigureAwait(false);
                if (!rebuild && lost.Count > 0)
                {
                    rebuild = true;   // a read failed: read the rest to rebuild the failed rows
                    await ReadRowsAsync(stripe, range.Lo, segment, AllRows, lost, errors, cancellationToken).ConfigureAwait(false);
                }
                if (rebuild)
                {
                    int needed = -1;   // the first lost row the write does not replace entirely
                    foreach (int row in lost)
                    {
                        if (row < k && !range.FullyCovers(row, k))
                        {
                            needed = row;
                            break;
                        }
                    }
                    if (needed >= 0)
                    {
                        if (lost.Count > m)
                            throw await UnreadableAsync(stripe, needed, range.Lo, range.Width, lost, errors).ConfigureAwait(false);
                        _code.Reconstruct(segment.Span, CollectionsMarshal.AsSpan(lost));
                    }
                }
                for (int row = range.First; row <= range.Last; row++)
                    range.Overlay(row, data.Span, segment);
                _code.Encode(segment.Span);
            }

            var targets = request.Targets;
            for (int row = 0; row < segment.Rows; row++)
            {
                if (range.Touches(row) || row >= k || errors.Contains(row))
                {
                    if (WritableMember(stripe, row) is { } member)
                        targets.Add((row, member));
                }
            }
            if (JournalSlots > 0)
                journalled = await JournalAsync(stripe, range.Lo, request, cancellationToken).ConfigureAwait(false);
            await WriteRowsAsync(stripe, range.Lo, segment, targets, forceUnitAccess && JournalSlots == 0, cancellationToken).ConfigureAwait(false);
            ThrowIfFailed();
        }
        finally
        {
            if (marked)
                Unmark(stripe);
            if (journalled is not null)
                _journal.Complete(journalled);
            _requests.Return(request);
            if (!lockHeld)
                gate.Release();
        }
    }

    /// <summary>Rows [<paramref name="from"/>, <paramref name="to"/>) as a bit mask (rows are fewer than 65).</summary>
    private static ulong RowBits(int from, int to)
        => (to >= 64 ? ulong.MaxValue : (1UL << to) - 1) & ~((1UL << from) - 1);

    /// <summary>A member I/O in flight: the row it serves, the member, and its task (awaited exactly once).</summary>
    private readonly record struct PendingIo(int Row, Member Member, ValueTask Io);

    /// <summary>Writes rows to their home locations in parallel; a member that fails is failed (persisted) before this returns.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteRowsAsync(long stripe, int inChunk, StripeBuffer segment, List<(int Row, Member Member)> targets, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        long memberOffset = _layout.MemberOffset(stripe, inChunk);
        var writes = ArrayPool<PendingIo>.Shared.Rent(targets.Count);
        int started = 0;
        try
        {
            for (; started < targets.Count; started++)
            {
                var (row, member) = targets[started];
                writes[started] = new PendingIo(row, member, member.Device.WriteAsync(memberOffset, segment.Row(row), forceUnitAccess, cancellationToken));
            }
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
                    await FailMemberAsync(writes[i].Member, $"write failed: {e.Message}").ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    failure ??= e;
                }
            }
            Array.Clear(writes, 0, started);
            ArrayPool<PendingIo>.Shared.Return(writes);
            if (failure is not null)
                ExceptionDispatchInfo.Throw(failure);
        }
    }

    /// <summary>RAID-0: each piece goes straight to its member; there is no parity to keep consistent.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteStripedAsync(long stripe, int start, ReadOnlyMemory<byte> data, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        int chunk = Geometry.ChunkSize;
        var writes = ArrayPool<ValueTask>.Shared.Rent((start + data.Length - 1) / chunk - start / chunk + 1);
        int started = 0;
        try
        {
            for (int position = 0; position < data.Length; started++)
            {
                int row = (start + position) / chunk, inChunk = (start + position) % chunk;
                int length = Math.Min(chunk - inChunk, data.Length - position);
                var member = WritableMember(stripe, row) ?? throw new ArrayFailedException($"Array '{Name}': member {_layout.MemberOf(stripe, row)} is gone and RAID-0 has no redundancy.");
#pragma warning disable CA2012 // each stored ValueTask is awaited exactly once, in the finally block below
                writes[started] = member.Device.WriteAsync(_layout.MemberOffset(stripe, inChunk), data.Slice(position, length), forceUnitAccess, cancellationToken);
#pragma warning restore CA2012
                position += length;
            }
        }
        finally
        {
            Exception? failure = null;
            for (int i = 0; i < started; i++)
            {
                try
                {
                    await writes[i].ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    failure ??= e;
                }
            }
            Array.Clear(writes, 0, started);
            ArrayPool<ValueTask>.Shared.Return(writes);
            if (failure is not null)
                ExceptionDispatchInfo.Throw(failure);
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
