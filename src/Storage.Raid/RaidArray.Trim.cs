using Storage.Devices;

namespace Storage.Raid;

public sealed partial class RaidArray
{
    private readonly Lock _journalledLock = new();
    private long[]? _journalledStripes;
    private byte[]? _zeroStripe;

    /// <summary>
    /// Discards a range; afterwards it reads as zeros. Whole stripes are trimmed on every member that holds them,
    /// parity included (a stripe of zeros has zero parity, so the stripe stays consistent), which frees the space on
    /// file members (hole punching) and unmaps it on block devices; the parts of the range in partial stripes are
    /// written as zeros through the normal (journalled) write. Durable like a write: after the next flush.
    /// </summary>
    /// <remarks>
    /// A stripe that one of the last journal records touched is first overwritten with zeros through the journal:
    /// replaying that record after a crash would otherwise put its old rows (and the parity that went with them)
    /// back over the trimmed stripe.
    /// </remarks>
    /// <exception cref="ArrayFailedException">Too many members are unavailable.</exception>
    public async ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, length);
        ThrowIfFailed();
        if (length == 0)
            return;
        long stripeBytes = Geometry.StripeDataSize;
        long firstWhole = (offset + stripeBytes - 1) / stripeBytes, endWhole = (offset + length) / stripeBytes;
        if (firstWhole >= endWhole)
        {
            await WriteZerosAsync(offset, length, cancellationToken).ConfigureAwait(false);
            return;
        }
        if (offset < firstWhole * stripeBytes)
            await WriteZerosAsync(offset, firstWhole * stripeBytes - offset, cancellationToken).ConfigureAwait(false);
        for (long batch = firstWhole; batch < endWhole; batch += LockStripes)
            await TrimStripesAsync(batch, Math.Min(endWhole, batch + LockStripes), cancellationToken).ConfigureAwait(false);
        if (endWhole * stripeBytes < offset + length)
            await WriteZerosAsync(endWhole * stripeBytes, offset + length - endWhole * stripeBytes, cancellationToken).ConfigureAwait(false);
        await ClearBadBlocksAsync(offset, length).ConfigureAwait(false);
    }

    /// <summary>Trims stripes [first, end) (at most <see cref="LockStripes"/> of them) on every writable member.</summary>
    private async Task TrimStripesAsync(long first, long end, CancellationToken cancellationToken)
    {
        // Each lock at most once (stripes map to locks modulo LockStripes), taken in index order so two trims never deadlock.
        var locks = Enumerable.Range(0, (int)(end - first)).Select(i => (int)((first + i) % LockStripes)).Order().ToArray();
        int taken = 0;
        bool marked = false;
        try
        {
            foreach (int index in locks)
            {
                await _stripeLocks[index].WaitAsync(cancellationToken).ConfigureAwait(false);
                taken++;
            }
            await MarkRangeAsync(first, end, cancellationToken).ConfigureAwait(false);
            marked = true;
            for (long stripe = first; stripe < end; stripe++)
            {
                if (JournalledRecently(stripe))
                    await WriteStripeAsync(stripe, 0, ZeroStripe(), forceUnitAccess: false, lockHeld: true, cancellationToken).ConfigureAwait(false);
            }
            long memberOffset = _layout.MemberOffset(first, 0), memberLength = (end - first) * Geometry.ChunkSize;
            var trims = new List<(Member Member, Task Trim)>();
            foreach (var member in _roles)
            {
                if (member is { Writable: true })
                    trims.Add((member, member.Device.TrimAsync(memberOffset, memberLength, cancellationToken).AsTask()));
            }
            foreach (var (member, trim) in trims)
            {
                try
                {
                    await trim.ConfigureAwait(false);
                }
                catch (BlockDeviceException e)
                {
                    // A member that kept its old bytes would leave the stripe inconsistent: zero it, or give it up.
                    await ZeroMemberAsync(member, memberOffset, memberLength, e, cancellationToken).ConfigureAwait(false);
                }
            }
            ThrowIfFailed();
        }
        finally
        {
            if (marked)
                UnmarkRange(first, end);
            for (int i = 0; i < taken; i++)
                _stripeLocks[locks[i]].Release();
        }
    }

    private async Task ZeroMemberAsync(Member member, long offset, long length, BlockDeviceException cause, CancellationToken cancellationToken)
    {
        var zeros = ZeroStripe();
        try
        {
            for (long done = 0; done < length;)
            {
                int n = (int)Math.Min(zeros.Length, length - done);
                await member.Device.WriteAsync(offset + done, zeros.AsMemory(0, n), cancellationToken: cancellationToken).ConfigureAwait(false);
                done += n;
            }
        }
        catch (BlockDeviceException e)
        {
            await FailMemberAsync(member, $"trim failed ({cause.Message}) and writing zeros failed too: {e.Message}").ConfigureAwait(false);
        }
    }

    private async Task WriteZerosAsync(long offset, long length, CancellationToken cancellationToken)
    {
        var zeros = ZeroStripe();
        for (long done = 0; done < length;)
        {
            int n = (int)Math.Min(zeros.Length, length - done);
            await WriteAsync(offset + done, zeros.AsMemory(0, n), cancellationToken: cancellationToken).ConfigureAwait(false);
            done += n;
        }
    }

    /// <summary>One stripe of zeros, made once (reused by every trim; never written to).</summary>
    private byte[] ZeroStripe() => _zeroStripe ??= new byte[Geometry.StripeDataSize];

    /// <summary>Notes that the journal record in <paramref name="slot"/> updates <paramref name="stripe"/>.</summary>
    private void RememberJournalled(int slot, long stripe)
    {
        lock (_journalledLock)
        {
            _journalledStripes ??= Enumerable.Repeat(-1L, JournalSlots).ToArray();
            _journalledStripes[slot] = stripe;
        }
    }

    /// <summary>True when one of the records still in the journal ring (the last S) updated <paramref name="stripe"/>.</summary>
    private bool JournalledRecently(long stripe)
    {
        lock (_journalledLock)
            return _journalledStripes is { } stripes && Array.IndexOf(stripes, stripe) >= 0;
    }
}
