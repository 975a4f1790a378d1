using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using Storage.Devices;

namespace Storage.Raid;

public sealed partial class RaidArray
{
    /// <summary>
    /// Fills <paramref name="buffer"/> with the array bytes at <paramref name="offset"/> (sector-aligned).
    /// Chunks on unavailable members, or whose member returns a read error, are rebuilt from parity; a member
    /// that returned an error gets the rebuilt bytes written back.
    /// </summary>
    /// <exception cref="BadBlockException">Part of the range cannot be rebuilt (read errors while degraded).</exception>
    /// <exception cref="ArrayFailedException">Too many members are unavailable.</exception>
    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, buffer.Length);
        ThrowIfBadBlock(offset, buffer.Length);
        if (buffer.IsEmpty)
            return ValueTask.CompletedTask;
        var (stripe, index, inChunk) = _layout.Locate(offset);
        return buffer.Length <= Geometry.ChunkSize - inChunk
            ? ReadChunkAsync(stripe, index, inChunk, buffer, cancellationToken)   // one chunk: the common small read
            : ReadChunksAsync(offset, buffer, cancellationToken);
    }

    /// <summary>
    /// A read over several chunks: one member read per chunk, all in flight, awaited in order. Readable chunks are
    /// read from their member directly, not through <see cref="ReadChunkAsync"/>: many instances of one async method
    /// in flight at once outgrow the runtime's pool of state machines (one per thread and per core), so each chunk
    /// would allocate one. A direct read that fails is rebuilt when its turn to be awaited comes.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadChunksAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        long end = offset + buffer.Length;
        int count = (int)((end - 1) / Geometry.ChunkSize - offset / Geometry.ChunkSize + 1);
        var reads = ArrayPool<PendingChunk>.Shared.Rent(count);
        int started = 0;
        try
        {
            for (int position = 0; offset < end; started++)
            {
                var (stripe, index, inChunk) = _layout.Locate(offset);
                int length = (int)Math.Min(end - offset, Geometry.ChunkSize - inChunk);
                var destination = buffer.Slice(position, length);
                var member = _roles[_layout.MemberOf(stripe, index)];
                reads[started] = member is not null && member.ReadableAt(stripe)
                    ? new PendingChunk(offset, position, length, Direct: true, member.Device.ReadAsync(_layout.MemberOffset(stripe, inChunk), destination, cancellationToken))
                    : new PendingChunk(offset, position, length, Direct: false, DegradedReadAsync(stripe, index, inChunk, destination, cancellationToken));
                offset += length;
                position += length;
            }
        }
        finally
        {
            // Every started read is awaited once, even after one failed; the first failure is rethrown.
            Exception? failure = null;
            for (int i = 0; i < started; i++)
            {
                var chunk = reads[i];
                try
                {
                    try
                    {
                        await chunk.Io.ConfigureAwait(false);
                    }
                    catch (BlockDeviceException) when (chunk.Direct)
                    {
                        // Rebuilt from the other members; the member gets the bytes written back.
                        var (stripe, index, inChunk) = _layout.Locate(chunk.Offset);
                        await DegradedReadAsync(stripe, index, inChunk, buffer.Slice(chunk.Position, chunk.Length), cancellationToken).ConfigureAwait(false);
                    }
                }
                catch (Exception e)
                {
                    failure ??= e;
                }
            }
            Array.Clear(reads, 0, started);
            ArrayPool<PendingChunk>.Shared.Return(reads);
            if (failure is not null)
                ExceptionDispatchInfo.Throw(failure);
        }
    }

    /// <summary>One chunk of a multi-chunk read in flight: where it goes, and whether it is a direct member read.</summary>
    private readonly record struct PendingChunk(long Offset, int Position, int Length, bool Direct, ValueTask Io);

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadChunkAsync(long stripe, int index, int inChunk, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var member = _roles[_layout.MemberOf(stripe, index)];
        if (member is not null && member.ReadableAt(stripe))
        {
            try
            {
                await member.Device.ReadAsync(_layout.MemberOffset(stripe, inChunk), destination, cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (BlockDeviceException)
            {
                // Rebuilt from the other members below; the member gets the bytes written back.
            }
        }
        await DegradedReadAsync(stripe, index, inChunk, destination, cancellationToken).ConfigureAwait(false);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask DegradedReadAsync(long stripe, int index, int inChunk, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var gate = StripeLock(stripe);
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        var request = _requests.Get();
        try
        {
            var segment = request.Segment;
            segment.Open(Geometry.MemberCount, destination.Length);
            var lost = request.Lost;
            var errors = request.Errors;
            await ReadRowsAsync(stripe, inChunk, segment, AllRows, lost, errors, cancellationToken).ConfigureAwait(false);
            if (lost.Count > Geometry.ParityCount)
                throw await UnreadableAsync(stripe, index, inChunk, destination.Length, lost, errors).ConfigureAwait(false);
            _code.Reconstruct(segment.Span, CollectionsMarshal.AsSpan(lost));
            segment.Row(index).CopyTo(destination);
            await RewriteAsync(stripe, inChunk, segment, errors, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _requests.Return(request);
            gate.Release();
        }
    }

    /// <summary>Every row wanted (a <see cref="ReadRowsAsync"/> mask).</summary>
    private const ulong AllRows = ulong.MaxValue;

    /// <summary>
    /// Reads the rows of a stripe segment whose bits <paramref name="wanted"/> sets (bit i: row i) in parallel. Rows
    /// whose member cannot serve the stripe go to <paramref name="lost"/>; rows whose read failed go to both
    /// <paramref name="lost"/> and <paramref name="errors"/> (and count against the member). Every read started is
    /// awaited before this returns, so the segment is never written to afterwards.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadRowsAsync(long stripe, int inChunk, StripeBuffer segment, ulong wanted, List<int> lost, List<int> errors, CancellationToken cancellationToken)
    {
        var reads = ArrayPool<PendingIo>.Shared.Rent(segment.Rows);
        int started = 0;
        long memberOffset = _layout.MemberOffset(stripe, inChunk);
        try
        {
            for (int row = 0; row < segment.Rows; row++)
            {
                if ((wanted & (1UL << row)) == 0 || lost.Contains(row))
                    continue;
                var member = _roles[_layout.MemberOf(stripe, row)];
                if (member is null || !member.ReadableAt(stripe))
                {
                    lost.Add(row);
                    continue;
                }
                reads[started++] = new PendingIo(row, member, member.Device.ReadAsync(memberOffset, segment.Row(row), cancellationToken));
            }
        }
        finally
        {
            Exception? failure = null;
            for (int i = 0; i < started; i++)
            {
                var (row, member, io) = reads[i];
                try
                {
                    await io.ConfigureAwait(false);
                }
                catch (BlockDeviceException)
                {
                    lost.Add(row);
                    errors.Add(row);
                    await CountReadErrorAsync(member).ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    failure ??= e;
                }
            }
            Array.Clear(reads, 0, started);
            ArrayPool<PendingIo>.Shared.Return(reads);
            if (failure is not null)
                ExceptionDispatchInfo.Throw(failure);
        }
    }

    /// <summary>
    /// Counts a read error against a member and tells a bad sector from a dead disk: the member is failed when
    /// it cannot read its own superblock either, or after too many errors.
    /// </summary>
    private async Task CountReadErrorAsync(Member member)
    {
        if (Interlocked.Increment(ref member.ReadErrors) > _options.MaxReadErrors)
        {
            await FailMemberAsync(member, $"more than {_options.MaxReadErrors} read errors").ConfigureAwait(false);
            return;
        }
        byte[] probe = System.Buffers.ArrayPool<byte>.Shared.Rent(member.Device.SectorSize);
        try
        {
            await member.Device.ReadAsync(0, probe.AsMemory(0, member.Device.SectorSize)).ConfigureAwait(false);
        }
        catch (BlockDeviceException e)
        {
            await FailMemberAsync(member, $"read failed and the disk no longer answers: {e.Message}").ConfigureAwait(false);
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(probe);
        }
    }

    /// <summary>Writes rebuilt bytes back to members that returned read errors (a sector remap on real disks).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask RewriteAsync(long stripe, int inChunk, StripeBuffer segment, List<int> errors, CancellationToken cancellationToken)
    {
        foreach (int row in errors)
        {
            var member = WritableMember(stripe, row);
            if (member is null)
                continue;
            try
            {
                await member.Device.WriteAsync(_layout.MemberOffset(stripe, inChunk), segment.Row(row), cancellationToken: cancellationToken).ConfigureAwait(false);
            }
            catch (BlockDeviceException)
            {
                await FailMemberAsync(member, "a rewrite after a read error failed").ConfigureAwait(false);
            }
        }
    }

    /// <summary>The exception for a chunk range that cannot be rebuilt: a bad block when the array still stands.</summary>
    private async Task<Exception> UnreadableAsync(long stripe, int index, int inChunk, int length, List<int> lost, List<int> errors)
    {
        int gone = UnavailableAt(stripe);
        if (gone > Geometry.ParityCount)
        {
            ThrowIfFailed();
            return new ArrayFailedException($"Array '{Name}': stripe {stripe} has {gone} chunks unavailable; {ArrayGeometry.Describe(Geometry.Level, Geometry.ParityCount)} rebuilds at most {Geometry.ParityCount}.");
        }
        long offset = stripe * Geometry.StripeDataSize + (long)index * Geometry.ChunkSize + inChunk;
        await AddBadBlockAsync(offset, length).ConfigureAwait(false);
        return new BadBlockException(offset, length, $"Array '{Name}': bytes {offset}..{offset + length} are unreadable: {errors.Count} member(s) returned read errors while {lost.Count - errors.Count} chunk(s) of the stripe were already missing. Writing the range again makes it readable.");
    }
}
