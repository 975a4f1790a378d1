namespace Storage.Versioning;

/// <summary>
/// Space: a bit per block (set while anything — the map, a checkpoint, a pending free — holds it) and a count of used
/// blocks per segment. New data fills fresh segments (no live block) in order, in memory, and reaches the array as
/// whole stripes with no journal; when no fresh segment is left, free blocks in partly used segments are reused
/// one by one through the array's journalled write.
/// </summary>
public sealed partial class Pool
{
    private const int MaxSegmentsInFlight = 32;
    private readonly ulong[] _used;
    private readonly int[] _segmentUsed;
    private readonly Dictionary<long, Segment> _buffered = [];
    private readonly Stack<byte[]> _spareBuffers = new();
    private Segment? _open;
    private long _usedBlocks;
    private long _segmentCursor;
    private long _blockCursor;
    private int _segmentsInFlight;
    private long _freshSegments;

    /// <summary>Fresh segments kept back for the cleaner and checkpoints: user writes stop taking fresh segments here.</summary>
    private const int CleanerReserve = 2;

    private bool IsUsed(long block) => (_used[block >> 6] & (1UL << (int)(block & 63))) != 0;

    private void MarkUsed(long block)
    {
        if (block < 0 || block >= _super.BlockCount || IsUsed(block))
            throw new PoolConfigurationException($"Pool '{_super.Name}': block {block} is referenced twice or lies outside the pool; the metadata is damaged.");
        _used[block >> 6] |= 1UL << (int)(block & 63);
        long segment = block / SegmentBlocks;
        if (_segmentUsed[segment]++ == 0 && !_buffered.ContainsKey(segment))
            _freshSegments--;
        _usedBlocks++;
    }

    private void MarkReferenced(VolumeState volume, BlockEntry entry)
    {
        if (!entry.IsMapped)
            return;
        if (entry.Physical >= _super.BlockCount || IsUsed(entry.Physical))
            throw new PoolConfigurationException($"Pool '{_super.Name}': volume '{volume.Name}' refers to block {entry.Physical}, which is outside the pool or referenced twice; the metadata is damaged.");
        MarkUsed(entry.Physical);
    }

    /// <summary>Gives a block back to the free space (caller holds the gate; nothing durable refers to it).</summary>
    private void Release(long block)
    {
        _used[block >> 6] &= ~(1UL << (int)(block & 63));
        long segment = block / SegmentBlocks;
        if (--_segmentUsed[segment] == 0 && !_buffered.ContainsKey(segment))
            _freshSegments++;
        _usedBlocks--;
    }

    /// <summary>Blocks kept back for the next checkpoint (and a spare segment), which must never find the pool full.</summary>
    private long ReserveBlocks
    {
        get
        {
            long entries = _usedBlocks + 1024;
            long checkpointBlocks = entries * 24 / (BlockSize - CheckpointHeaderBytes) + 2;
            return 2 * checkpointBlocks + 2L * SegmentBlocks;
        }
    }

    /// <summary>
    /// A slot in the open segment for one block (caller holds the gate), opening a fresh segment when needed; null when
    /// no fresh segment is left (beyond the cleaner's reserve, unless <paramref name="reserve"/>).
    /// </summary>
    private (Segment Segment, int Slot)? TakeBufferedSlot(bool reserve = false)
    {
        if (_open is null)
        {
            if (_freshSegments <= (reserve ? 0 : CleanerReserve))
                return null;
            long fresh = FindFreshSegment();
            if (fresh < 0)
                return null;
            _freshSegments--;
            var buffer = _spareBuffers.Count > 0 ? _spareBuffers.Pop() : GC.AllocateUninitializedArray<byte>(SegmentBlocks * BlockSize, pinned: true);
            _open = new Segment(fresh, buffer);
            _buffered.Add(fresh, _open);
        }
        var segment = _open;
        int slot = segment.Filled++;
        MarkUsed(segment.Index * SegmentBlocks + slot);
        if (segment.Filled == SegmentBlocks)
            _open = null;
        return (segment, slot);
    }

    private long FindFreshSegment()
    {
        long segments = _segmentUsed.Length;
        for (long i = 0; i < segments; i++)
        {
            long candidate = (_segmentCursor + i) % segments;
            if (_segmentUsed[candidate] == 0 && !_buffered.ContainsKey(candidate))
            {
                _segmentCursor = candidate + 1;
                return candidate;
            }
        }
        return -1;
    }

    /// <summary>A free block outside any buffered segment (caller holds the gate), or -1.</summary>
    private long TakeLooseBlock()
    {
        long blocks = _super.BlockCount;
        for (long scanned = 0; scanned < blocks;)
        {
            long block = (_blockCursor + scanned) % blocks;
            ulong word = _used[block >> 6];
            if (word == ulong.MaxValue && (block & 63) == 0)
            {
                scanned += 64;
                continue;
            }
            scanned++;
            if (IsUsed(block) || _buffered.ContainsKey(block / SegmentBlocks))
                continue;
            _blockCursor = block + 1;
            MarkUsed(block);
            return block;
        }
        return -1;
    }

    /// <summary>True when a data write may take a block without eating into <see cref="ReserveBlocks"/>.</summary>
    private bool HasRoomForData => _super.BlockCount - _usedBlocks > ReserveBlocks;

    /// <summary>Sends the slots of <paramref name="segment"/> not yet written (caller holds the gate).</summary>
    private void StartSegmentWrite(Segment segment)
    {
        int from = segment.Written, to = segment.Filled;
        if (to <= from)
            return;
        bool whole = from == 0 && to == SegmentBlocks;
        segment.Written = to;
        segment.Pending++;
        if (to == SegmentBlocks)
            segment.Sealed = true;
        _segmentsInFlight++;
        var task = WriteSegmentAsync(segment, from, to, whole);
        _segmentWrites.Add(task);
        _ = task.ContinueWith(SegmentWritten, segment, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private async Task WriteSegmentAsync(Segment segment, int from, int to, bool whole)
    {
        await Task.Yield();
        long offset = DataOffset + (segment.Index * SegmentBlocks + from) * (long)BlockSize;
        var bytes = segment.Buffer.AsMemory(from * BlockSize, (to - from) * BlockSize);
        if (whole && _array is { Geometry.ParityCount: > 0 })
            await _array.WriteFullStripesAsync(offset, bytes).ConfigureAwait(false);
        else
            await _device.WriteAsync(offset, bytes).ConfigureAwait(false);
    }

    private void SegmentWritten(Task task, object? state)
    {
        var segment = (Segment)state!;
        lock (_gate)
        {
            _segmentWrites.Remove(task);
            _segmentsInFlight--;
            segment.Pending--;
            if (task.IsFaulted)
                _failure ??= task.Exception!.InnerException;
            if (segment.Sealed && segment.Pending == 0 && _buffered.Remove(segment.Index))
            {
                if (_segmentUsed[segment.Index] == 0)
                    _freshSegments++;
                if (_spareBuffers.Count < MaxSegmentsInFlight)
                    _spareBuffers.Push(segment.Buffer);
            }
        }
    }
}
