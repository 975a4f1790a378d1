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
            removed = _badBlocks.RemoveAll(b => b.Offset >= offset && b.Offset + b.Length <= offset + length);
        }
        if (removed > 0)
            await PersistAsync().ConfigureAwait(false);
    }
}
