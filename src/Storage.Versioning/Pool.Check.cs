namespace Storage.Versioning;

/// <summary>Self-checks the tests use: space accounting recomputed from the map from scratch.</summary>
public sealed partial class Pool
{
    internal int CheckpointBlockCount
    {
        get
        {
            lock (_gate)
                return _checkpointBlocks.Count;
        }
    }

    /// <summary>
    /// Null when every used block is held by exactly one thing (a map entry, the checkpoint, or a free waiting for its
    /// commit) and every block so held is marked used; else what is wrong. Walks the whole map under the pool lock.
    /// </summary>
    public string? CheckSpace()
    {
        lock (_gate)
        {
            var holders = new Dictionary<long, string>();
            string? Hold(long block, string who)
            {
                if (!holders.TryAdd(block, who))
                    return $"block {block} is held by {holders[block]} and by {who}";
                if (!IsUsed(block))
                    return $"block {block} ({who}) is not marked used";
                return null;
            }
            foreach (var volume in _state.Volumes.Values)
            {
                foreach (var (block, entry) in volume.Head.Entries())
                {
                    if (entry.IsMapped && Hold(entry.Physical, $"{volume.Name}[{block}]") is { } error)
                        return error;
                }
                foreach (var (block, older) in volume.History)
                {
                    foreach (var entry in older)
                    {
                        if (entry.IsMapped && Hold(entry.Physical, $"{volume.Name}[{block}]@{entry.Version}") is { } error)
                            return error;
                    }
                }
            }
            foreach (long block in _checkpointBlocks)
            {
                if (Hold(block, "the checkpoint") is { } error)
                    return error;
            }
            foreach (long block in _pendingFrees.Concat(_closed.SelectMany(c => c.Frees)))
            {
                if (Hold(block, "a pending free") is { } error)
                    return error;
            }
            if (holders.Count != _usedBlocks)
                return $"{_usedBlocks} blocks are marked used but {holders.Count} are held: {_usedBlocks - holders.Count} leaked";
            var perSegment = new int[_segmentUsed.Length];
            foreach (long block in holders.Keys)
                perSegment[block / SegmentBlocks]++;
            for (int i = 0; i < perSegment.Length; i++)
            {
                if (perSegment[i] != _segmentUsed[i])
                    return $"segment {i} counts {_segmentUsed[i]} used blocks but holds {perSegment[i]}";
            }
            return null;
        }
    }
}
