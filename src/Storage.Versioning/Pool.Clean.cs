using Storage.Native;

namespace Storage.Versioning;

/// <summary>
/// The cleaner. Overwrites free blocks all over the pool; once no fresh segment is left, new data would have to go
/// into partly used stripes through the array's journal (read-modify-write, written twice). Instead the cleaner takes
/// the emptiest segments, copies their live blocks into the open segment (full-stripe, journal-free, same version
/// and checksum), and commits: the emptied segments are fresh again. Only when every segment is mostly full
/// (more than three quarters live) do writes fall back to reusing single free blocks through the journal.
/// </summary>
public sealed partial class Pool
{
    private const int MaxVictims = 16;
    private readonly SemaphoreSlim _cleanLock = new(1, 1);
    private long _cleaned;

    /// <summary>Segments emptied by the cleaner so far.</summary>
    public long CleanedSegments => Interlocked.Read(ref _cleaned);

    /// <summary>Empties some mostly-free segments; false when there were none worth it.</summary>
    private async Task<bool> CleanAsync(CancellationToken cancellationToken)
    {
        if (!_cleanLock.Wait(0, CancellationToken.None))
        {
            // Someone is cleaning already: wait for them and try again.
            await _cleanLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            _cleanLock.Release();
            return true;
        }
        try
        {
            List<(long Volume, long Block, long Physical, uint Crc)> live;
            int victims;
            lock (_gate)
                (live, victims) = PickVictims();
            if (victims == 0)
                return false;
            var data = new byte[BlockSize];
            foreach (var (volume, block, physical, crc) in live)
            {
                int epoch = _guard.Enter();
                try
                {
                    lock (_gate)
                    {
                        if (!_state.Volumes.TryGetValue(volume, out var owner) || !PoolState.Holds(owner, block, physical))
                            continue;
                    }
                    await _device.ReadAsync(DataOffset + physical * BlockSize, data, cancellationToken).ConfigureAwait(false);
                    if (Crc32C.Compute(data) != crc)
                        await HealAsync(BlockEntry.Mapped(physical, 0, crc), data, cancellationToken).ConfigureAwait(false);
                }
                catch (ChecksumMismatchException)
                {
                    continue;   // left where it is; reads of it fail as they would have
                }
                finally
                {
                    _guard.Exit(epoch);
                }
                lock (_gate)
                {
                    if (!_state.Volumes.TryGetValue(volume, out var owner) || !PoolState.Holds(owner, block, physical))
                        continue;
                    if (TakeBufferedSlot(reserve: true) is not var (segment, slot))
                        break;
                    data.CopyTo(segment.Buffer.AsSpan(slot * BlockSize, BlockSize));
                    LogLocked(PoolOp.Relocate(volume, block, physical, segment.Index * SegmentBlocks + slot));
                    if (segment.Filled == SegmentBlocks)
                        StartSegmentWrite(segment);
                }
            }
            await CommitCoreAsync(forceCheckpoint: false, cancellationToken).ConfigureAwait(false);
            Interlocked.Add(ref _cleaned, victims);
            return true;
        }
        finally
        {
            _cleanLock.Release();
        }
    }

    /// <summary>The emptiest segments whose live blocks fit the reserve, and those blocks (caller holds the gate).</summary>
    private (List<(long, long, long, uint)> Live, int Victims) PickVictims()
    {
        var checkpointSegments = _checkpointBlocks.Select(b => b / SegmentBlocks).ToHashSet();
        var candidates = new List<(long Segment, int Used)>();
        int limit = SegmentBlocks * 3 / 4;
        for (long i = 0; i < _segmentUsed.Length; i++)
        {
            int used = _segmentUsed[i];
            if (used > 0 && used <= limit && !_buffered.ContainsKey(i) && !checkpointSegments.Contains(i))
                candidates.Add((i, used));
        }
        candidates.Sort((a, b) => a.Used.CompareTo(b.Used));
        long room = (Math.Max(0, _freshSegments) * SegmentBlocks) + (_open is null ? 0 : SegmentBlocks - _open.Filled);
        var victims = new HashSet<long>();
        long moving = 0;
        foreach (var (segment, used) in candidates)
        {
            if (victims.Count == MaxVictims || moving + used > room - 1)
                break;
            victims.Add(segment);
            moving += used;
        }
        var live = new List<(long, long, long, uint)>();
        if (victims.Count == 0)
            return (live, 0);
        foreach (var volume in _state.Volumes.Values)
        {
            foreach (var (block, entry) in volume.Head.Entries())
            {
                if (entry.IsMapped && victims.Contains(entry.Physical / SegmentBlocks))
                    live.Add((volume.Id, block, entry.Physical, entry.Crc));
            }
            foreach (var (block, older) in volume.History)
            {
                foreach (var entry in older)
                {
                    if (entry.IsMapped && victims.Contains(entry.Physical / SegmentBlocks))
                        live.Add((volume.Id, block, entry.Physical, entry.Crc));
                }
            }
        }
        live.Sort((a, b) => a.Item3.CompareTo(b.Item3));
        return (live, victims.Count);
    }
}
