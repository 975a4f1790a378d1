using System.Runtime.CompilerServices;
using System.Buffers;
using Storage.Devices;
using Storage.Native;

namespace Storage.Versioning;

/// <summary>
/// Block I/O of volumes and snapshots. Writes never overwrite a live block: each block written gets a new physical
/// block, and its entry (version, CRC-32C) replaces the old one in the map. Part-block writes read the block first.
/// Every read from disk is checked against its entry's checksum and repaired from parity on a mismatch.
/// </summary>
public sealed partial class Pool
{
    private const int BlockLocks = 256;
    private long _looseWrites;
    private readonly SemaphoreSlim[] _blockLocks = [.. Enumerable.Range(0, BlockLocks).Select(_ => new SemaphoreSlim(1, 1))];

    private SemaphoreSlim BlockLock(long volume, long block) => _blockLocks[(int)((ulong)HashCode.Combine(volume, block) % BlockLocks)];

    private VolumeState LiveVolume(long id) => _state.Volumes.TryGetValue(id, out var volume)
        ? volume
        : throw new BlockDeviceException($"Volume {id} of pool '{Name}' was deleted.");

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    internal async ValueTask ReadAsync(long volume, long limit, long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        ThrowIfUnusable();
        int blockSize = BlockSize;
        byte[]? scratch = null;
        try
        {
            for (int done = 0; done < buffer.Length;)
            {
                long block = (offset + done) / blockSize;
                int inBlock = (int)((offset + done) % blockSize), length = Math.Min(blockSize - inBlock, buffer.Length - done);
                if (length == blockSize)
                {
                    // Whole blocks: as many at once as lie ahead, so that contiguous ones are one device read.
                    int blocks = Math.Min(MaxRunBlocks, (buffer.Length - done) / blockSize);
                    await ReadBlocksAsync(volume, limit, block, blocks, buffer.Slice(done, blocks * blockSize), cancellationToken).ConfigureAwait(false);
                    done += blocks * blockSize;
                    continue;
                }
                scratch ??= ArrayPool<byte>.Shared.Rent(blockSize);
                await ReadBlockAsync(volume, limit, block, scratch.AsMemory(0, blockSize), cancellationToken).ConfigureAwait(false);
                scratch.AsSpan(inBlock, length).CopyTo(buffer.Span.Slice(done, length));
                done += length;
            }
        }
        finally
        {
            if (scratch is not null)
                ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    private const int MaxRunBlocks = 256;

    private ValueTask ReadBlockAsync(long volume, long limit, long block, Memory<byte> destination, CancellationToken cancellationToken)
        => ReadBlocksAsync(volume, limit, block, 1, destination, cancellationToken);

    /// <summary>
    /// Reads <paramref name="count"/> whole blocks as <paramref name="limit"/> sees them: holes as zeros, blocks still in
    /// memory from their buffer, and each run of blocks that lie one after another on disk in one device read; then
    /// every block read from disk is checked against its checksum (and healed).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadBlocksAsync(long volume, long limit, long first, int count, Memory<byte> destination, CancellationToken cancellationToken)
    {
        int blockSize = BlockSize;
        var entries = ArrayPool<BlockEntry>.Shared.Rent(count);
        int epoch = _guard.Enter();
        try
        {
            lock (_gate)
            {
                var state = LiveVolume(volume);
                for (int i = 0; i < count; i++)
                {
                    var entry = _state.Lookup(state, first + i, limit);
                    var target = destination.Span.Slice(i * blockSize, blockSize);
                    if (!entry.IsMapped)
                    {
                        target.Clear();
                        entry = default;
                    }
                    else if (_buffered.TryGetValue(entry.Physical / SegmentBlocks, out var segment))
                    {
                        segment.Buffer.AsSpan((int)(entry.Physical % SegmentBlocks) * blockSize, blockSize).CopyTo(target);
                        entry = default;
                    }
                    entries[i] = entry;
                }
            }
            for (int i = 0; i < count;)
            {
                if (!entries[i].IsMapped)
                {
                    i++;
                    continue;
                }
                int run = 1;
                while (i + run < count && entries[i + run].IsMapped && entries[i + run].Physical == entries[i].Physical + run)
                    run++;
                await _device.ReadAsync(DataOffset + entries[i].Physical * blockSize, destination.Slice(i * blockSize, run * blockSize), cancellationToken).ConfigureAwait(false);
                for (int j = i; j < i + run; j++)
                {
                    var bytes = destination.Slice(j * blockSize, blockSize);
                    if (Crc32C.Compute(bytes.Span) != entries[j].Crc)
                        await HealAsync(entries[j], bytes, cancellationToken).ConfigureAwait(false);
                }
                i += run;
            }
        }
        finally
        {
            _guard.Exit(epoch);
            ArrayPool<BlockEntry>.Shared.Return(entries);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    internal async ValueTask WriteAsync(long volume, long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        ThrowIfUnusable();
        int blockSize = BlockSize;
        byte[]? scratch = null;
        try
        {
            for (int done = 0; done < buffer.Length;)
            {
                long block = (offset + done) / blockSize;
                int inBlock = (int)((offset + done) % blockSize), length = Math.Min(blockSize - inBlock, buffer.Length - done);
                var gate = BlockLock(volume, block);
                await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
                try
                {
                    if (length == blockSize)
                    {
                        await WriteBlockAsync(volume, block, buffer.Slice(done, length), cancellationToken).ConfigureAwait(false);
                    }
                    else
                    {
                        scratch ??= ArrayPool<byte>.Shared.Rent(blockSize);
                        var whole = scratch.AsMemory(0, blockSize);
                        await ReadBlockAsync(volume, long.MaxValue, block, whole, cancellationToken).ConfigureAwait(false);
                        buffer.Span.Slice(done, length).CopyTo(whole.Span[inBlock..]);
                        await WriteBlockAsync(volume, block, whole, cancellationToken).ConfigureAwait(false);
                    }
                }
                finally
                {
                    gate.Release();
                }
                done += length;
            }
        }
        finally
        {
            if (scratch is not null)
                ArrayPool<byte>.Shared.Return(scratch);
        }
        if (forceUnitAccess)
            await CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Writes one whole block to new space and maps it (caller holds the block's lock).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteBlockAsync(long volume, long block, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        if (!data.Span.ContainsAnyExcept((byte)0))
        {
            lock (_gate)
            {
                LiveVolume(volume);
                LogLocked(PoolOp.Trim(volume, block, 1));
            }
            return;
        }
        await PlaceAsync(volume, block, data, Crc32C.Compute(data.Span), map: true, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Commits a write waits for, when no space is free, before it fails with ENOSPC.</summary>
    private const int MaxCommitRetries = 64;

    /// <summary>
    /// Puts one block's bytes into new space and returns where; with <paramref name="map"/>, maps it as
    /// <paramref name="block"/> of <paramref name="volume"/> too (else the caller maps it later or releases it).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<long> PlaceAsync(long volume, long block, ReadOnlyMemory<byte> data, uint crc, bool map, CancellationToken cancellationToken)
    {
        int cleanings = 0;
        for (int attempt = 0; ; attempt++)
        {
            long loose = -1, placed = -1;
            bool clean = false;
            Task? backlog = null;
            lock (_gate)
            {
                ThrowIfUnusable();
                if (map)
                    LiveVolume(volume);
                if (HasRoomForData)
                {
                    if (TakeBufferedSlot() is var (segment, slot))
                    {
                        data.Span.CopyTo(segment.Buffer.AsSpan(slot * BlockSize, BlockSize));
                        placed = segment.Index * SegmentBlocks + slot;
                        if (map)
                            LogLocked(PoolOp.Map(volume, block, placed, crc));
                        if (segment.Filled == SegmentBlocks)
                        {
                            StartSegmentWrite(segment);
                            if (_segmentsInFlight > MaxSegmentsInFlight)
                                backlog = _segmentWrites[0];
                        }
                    }
                    else if (cleanings < 3)
                    {
                        clean = true;
                    }
                    else
                    {
                        loose = TakeLooseBlock();
                    }
                }
            }
            if (clean)
            {
                // No fresh segment: make some, unless every segment is mostly live.
                cleanings = await CleanAsync(cancellationToken).ConfigureAwait(false) ? cleanings + 1 : int.MaxValue;
                attempt--;
                continue;
            }
            if (placed >= 0)
            {
                if (backlog is not null)
                    await backlog.ConfigureAwait(false);
                return placed;
            }
            if (loose >= 0)
            {
                Interlocked.Increment(ref _looseWrites);
                await WriteLooseAsync(volume, block, loose, data, crc, map, cancellationToken).ConfigureAwait(false);
                return loose;
            }
            // Full only when a commit has nothing left to give back: under many writers the blocks one commit frees can be
            // taken by others before this one retries, so one retry is not enough (seen as a rare ENOSPC in a half-full pool).
            long pending;
            lock (_gate)
                pending = PendingFreeBlocksLocked;
            if (attempt > 0 && (pending == 0 || attempt >= MaxCommitRetries))
                throw new PoolFullException($"Pool '{Name}' is full: {_usedBlocks} of {_super.BlockCount} blocks in use. Delete snapshots or volumes, or trim unused space, to make room.");
            // Blocks freed by uncommitted changes (ours, or those of a commit in progress) come back once committed.
            await CommitCoreAsync(forceCheckpoint: false, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Reuses a free block in a partly used segment: written in place through the array's journal, then mapped.</summary>
    private async ValueTask WriteLooseAsync(long volume, long block, long physical, ReadOnlyMemory<byte> data, uint crc, bool map, CancellationToken cancellationToken)
    {
        try
        {
            await _device.WriteAsync(DataOffset + physical * BlockSize, data, cancellationToken: cancellationToken).ConfigureAwait(false);
            if (map)
            {
                lock (_gate)
                {
                    LiveVolume(volume);
                    LogLocked(PoolOp.Map(volume, block, physical, crc));
                }
            }
        }
        catch
        {
            lock (_gate)
                Release(physical);
            throw;
        }
    }
    internal async ValueTask TrimAsync(long volume, long offset, long length, CancellationToken cancellationToken)
    {
        ThrowIfUnusable();
        int blockSize = BlockSize;
        long first = (offset + blockSize - 1) / blockSize, end = (offset + length) / blockSize;
        if (first >= end)
        {
            // No whole block inside: the bytes become zeros in place.
            await WriteZerosAsync(volume, offset, length, cancellationToken).ConfigureAwait(false);
            return;
        }
        lock (_gate)
        {
            LiveVolume(volume);
            LogLocked(PoolOp.Trim(volume, first, end - first));
        }
        if (offset < first * blockSize)
            await WriteZerosAsync(volume, offset, first * blockSize - offset, cancellationToken).ConfigureAwait(false);
        if (offset + length > end * blockSize)
            await WriteZerosAsync(volume, end * blockSize, offset + length - end * blockSize, cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask WriteZerosAsync(long volume, long offset, long length, CancellationToken cancellationToken)
    {
        var zeros = ArrayPool<byte>.Shared.Rent((int)length);
        try
        {
            Array.Clear(zeros, 0, (int)length);
            await WriteAsync(volume, offset, zeros.AsMemory(0, (int)length), forceUnitAccess: false, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(zeros);
        }
    }

    internal IReadOnlyList<AllocationExtent> Allocation(long volume, long limit, long capacity, long offset, long length)
    {
        ThrowIfUnusable();
        var extents = new List<AllocationExtent>();
        int blockSize = BlockSize;
        lock (_gate)
        {
            var state = LiveVolume(volume);
            long end = Math.Min(capacity, offset + length);
            for (long at = offset; at < end && extents.Count < 4096 && at - offset < (long)blockSize << 20;)
            {
                long block = at / blockSize;
                long next = Math.Min(end, (block + 1) * blockSize);
                var kind = _state.Lookup(state, block, limit).IsMapped ? AllocationState.Data : AllocationState.Hole | AllocationState.Zero;
                if (extents.Count > 0 && extents[^1].State == kind)
                    extents[^1] = extents[^1] with { Length = extents[^1].Length + (next - at) };
                else
                    extents.Add(new AllocationExtent(next - at, kind));
                at = next;
            }
        }
        return extents;
    }
}
