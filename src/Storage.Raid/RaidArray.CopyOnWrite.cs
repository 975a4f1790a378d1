using Storage.Devices;

namespace Storage.Raid;

/// <summary>
/// Entry points for a copy-on-write layer above the array (Storage.Versioning): journal-free full-stripe writes,
/// reads that treat chosen members as suspect, and in-place repair of data whose parity is known to be right.
/// </summary>
public sealed partial class RaidArray
{
    /// <summary>
    /// Writes whole stripes without the journal: parity is computed once from <paramref name="buffer"/> and every
    /// member's chunk is written in place. <paramref name="offset"/> and the length are multiples of
    /// <see cref="ArrayGeometry.StripeDataSize"/>. Durable after <see cref="FlushAsync"/> (or with FUA).
    /// </summary>
    /// <remarks>
    /// Only safe for stripes that hold no live data: a crash in the middle leaves the stripe's chunks and parity
    /// mixed old and new, which is harmless only when nobody refers to the old contents (a copy-on-write layer
    /// writing into free space). A stripe that one of the journal's last records touched goes through the journal
    /// instead, since replaying that record after a crash would put its old rows back over the new stripe.
    /// </remarks>
    /// <exception cref="ArgumentException">The range is not made of whole stripes.</exception>
    /// <exception cref="ArrayFailedException">Too many members are unavailable.</exception>
    public async ValueTask WriteFullStripesAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess = false, CancellationToken cancellationToken = default)
    {
        long stripeBytes = Geometry.StripeDataSize;
        if (offset % stripeBytes != 0 || buffer.Length % stripeBytes != 0)
            throw new ArgumentException($"Array '{Name}': a full-stripe write covers whole stripes of {stripeBytes} bytes; got {buffer.Length} bytes at {offset}.", nameof(buffer));
        CheckRange(offset, buffer.Length);
        ThrowIfFailed();
        var pending = new List<Task>();
        for (int position = 0; position < buffer.Length; position += (int)stripeBytes)
        {
            long stripe = (offset + position) / stripeBytes;
            var data = buffer.Slice(position, (int)stripeBytes);
            pending.Add(Geometry.ParityCount == 0
                ? WriteStripedAsync(stripe, 0, data, forceUnitAccess, cancellationToken).AsTask()
                : WriteWholeStripeAsync(stripe, data, forceUnitAccess, cancellationToken));
        }
        await Task.WhenAll(pending).ConfigureAwait(false);
        await ClearBadBlocksAsync(offset, buffer.Length).ConfigureAwait(false);
    }

    private async Task WriteWholeStripeAsync(long stripe, ReadOnlyMemory<byte> data, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        var gate = StripeLock(stripe);
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (JournalSlots > 0 && JournalledRecently(stripe))
            {
                await WriteStripeAsync(stripe, 0, data, forceUnitAccess, lockHeld: true, cancellationToken).ConfigureAwait(false);
                return;
            }
            int chunk = Geometry.ChunkSize;
            using var segment = new StripeBuffer(Geometry.MemberCount, chunk);
            for (int row = 0; row < Geometry.DataCount; row++)
                data.Slice(row * chunk, chunk).CopyTo(segment.Row(row));
            _code.Encode(segment.Span);
            var targets = new List<(int Row, Member Member)>(segment.Rows);
            for (int row = 0; row < segment.Rows; row++)
            {
                if (WritableMember(stripe, row) is { } member)
                    targets.Add((row, member));
            }
            await MarkAsync(stripe, cancellationToken).ConfigureAwait(false);
            try
            {
                await WriteRowsAsync(stripe, 0, segment, targets, forceUnitAccess, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                Unmark(stripe);
            }
            ThrowIfFailed();
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>
    /// The roles (bit i = role i) whose chunks hold the data bytes of [<paramref name="offset"/>, +<paramref name="length"/>):
    /// the members a checksum mismatch in that range can be blamed on.
    /// </summary>
    public ulong RolesHolding(long offset, long length)
    {
        CheckRange(offset, length);
        ulong roles = 0;
        for (long at = offset, end = offset + length; at < end;)
        {
            var (stripe, index, inChunk) = _layout.Locate(at);
            roles |= 1UL << _layout.MemberOf(stripe, index);
            at += Geometry.ChunkSize - inChunk;
        }
        return roles;
    }

    /// <summary>
    /// Reads like <see cref="ReadAsync"/> but treats the members in <paramref name="suspectRoles"/> (bit i = role i)
    /// as missing: their chunks are rebuilt from the others and parity. Used to recover a block whose checksum does not
    /// match what was read; the caller checks the result against its checksum.
    /// </summary>
    /// <exception cref="ArrayFailedException">The suspects plus the unavailable members exceed what parity rebuilds,
    /// or a member read failed meanwhile.</exception>
    public async ValueTask ReadExcludingAsync(long offset, Memory<byte> buffer, ulong suspectRoles, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, buffer.Length);
        ThrowIfFailed();
        for (int position = 0; position < buffer.Length;)
        {
            var (stripe, index, inChunk) = _layout.Locate(offset + position);
            int length = Math.Min(buffer.Length - position, Geometry.ChunkSize - inChunk);
            var destination = buffer.Slice(position, length);
            int role = _layout.MemberOf(stripe, index);
            position += length;
            if ((suspectRoles & (1UL << role)) == 0 && _roles[role] is { } member && member.ReadableAt(stripe))
            {
                try
                {
                    await member.Device.ReadAsync(_layout.MemberOffset(stripe, inChunk), destination, cancellationToken).ConfigureAwait(false);
                    continue;
                }
                catch (BlockDeviceException)
                {
                    // Rebuilt below, without the suspects.
                }
            }
            // A suspect chunk, or one whose member cannot serve it: a plain degraded read would rebuild the latter
            // from every other member, the suspects included.
            await ReadRebuiltAsync(stripe, index, inChunk, destination, suspectRoles, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task ReadRebuiltAsync(long stripe, int index, int inChunk, Memory<byte> destination, ulong suspectRoles, CancellationToken cancellationToken)
    {
        var gate = StripeLock(stripe);
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            using var segment = new StripeBuffer(Geometry.MemberCount, destination.Length);
            var lost = new List<int>(Geometry.ParityCount + 1);
            for (int row = 0; row < segment.Rows; row++)
            {
                if ((suspectRoles & (1UL << _layout.MemberOf(stripe, row))) != 0)
                    lost.Add(row);
            }
            var errors = new List<int>();
            await ReadRowsAsync(stripe, inChunk, segment, AllRows, lost, errors, cancellationToken).ConfigureAwait(false);
            if (lost.Count > Geometry.ParityCount)
                throw new ArrayFailedException($"Array '{Name}': stripe {stripe} cannot be rebuilt without {lost.Count} of its chunks; {ArrayGeometry.Describe(Geometry.Level, Geometry.ParityCount)} rebuilds at most {Geometry.ParityCount}.");
            if (lost.Count > 0)
                _code.Reconstruct(segment.Span, lost.ToArray());
            segment.Row(index).CopyTo(destination);
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>
    /// Writes data bytes in place on the members that hold them and leaves parity untouched: the repair of a range whose
    /// good bytes were just rebuilt from parity (<see cref="ReadExcludingAsync"/>), so parity already matches them.
    /// Never use it for new data: parity would then disagree with the stripe.
    /// </summary>
    public async ValueTask RepairDataAsync(long offset, ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, buffer.Length);
        ThrowIfFailed();
        for (int position = 0; position < buffer.Length;)
        {
            var (stripe, index, inChunk) = _layout.Locate(offset + position);
            int length = Math.Min(buffer.Length - position, Geometry.ChunkSize - inChunk);
            var gate = StripeLock(stripe);
            await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                if (WritableMember(stripe, index) is { } member)
                {
                    try
                    {
                        await member.Device.WriteAsync(_layout.MemberOffset(stripe, inChunk), buffer.Slice(position, length), cancellationToken: cancellationToken).ConfigureAwait(false);
                    }
                    catch (BlockDeviceException e)
                    {
                        await FailMemberAsync(member, $"a repair write failed: {e.Message}").ConfigureAwait(false);
                    }
                }
            }
            finally
            {
                gate.Release();
            }
            position += length;
        }
    }
}
