namespace Storage.Raid;

public sealed partial class RaidArray
{
    /// <summary>Array ranges that could not be rebuilt; reads of them fail until they are written again.</summary>
    public IReadOnlyList<(long Offset, long Length)> BadBlocks
    {
        get
        {
            lock (_badBlocks)
                return [.. _badBlocks];
        }
    }

    private void ThrowIfBadBlock(long offset, long length)
    {
        lock (_badBlocks)
        {
            foreach (var (start, size) in _badBlocks)
            {
                if (start < offset + length && offset < start + size)
                    throw new BadBlockException(start, size, $"Array '{Name}': bytes {start}..{start + size} are unreadable (recorded bad block: lost while degraded). Writing the range again makes it readable.");
            }
        }
    }

    private async Task AddBadBlockAsync(long offset, long length)
    {
        lock (_badBlocks)
        {
            if (_badBlocks.Contains((offset, length)))
                return;
            if (_badBlocks.Count == Superblock.MaxBadBlocks)
                _badBlocks.RemoveAt(0);
            _badBlocks.Add((offset, length));
        }
        await PersistAsync().ConfigureAwait(false);
        Notify($"bad block recorded: bytes {offset}..{offset + length}");
    }

    /// <summary>Forgets bad blocks that a completed write covered entirely.</summary>
    private async Task ClearBadBlocksAsync(long offset, long length)
    {
        int removed;
        lock (_badBlocks)
        {
            if (_badBlocks.Count == 0)
                return;
            // A loop, not RemoveAll: a lambda would capture the arguments, a closure allocated on every write.
            removed = 0;
            for (int i = _badBlocks.Count - 1; i >= 0; i--)
            {
                var (start, size) = _badBlocks[i];
                if (start >= offset && start + size <= offset + length)
                {
                    _badBlocks.RemoveAt(i);
                    removed++;
                }
            }
        }
        if (removed > 0)
            await PersistAsync().ConfigureAwait(false);
    }
}
