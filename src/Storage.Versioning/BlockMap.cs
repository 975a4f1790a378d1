namespace Storage.Versioning;

/// <summary>
/// A volume's head map: logical block → entry, in pages of 1024 entries so that a densely written volume costs
/// 16 bytes per block in memory.
/// </summary>
internal sealed class BlockMap
{
    private const int PageShift = 10;
    private const int PageSize = 1 << PageShift;
    private readonly Dictionary<long, Page> _pages = [];

    /// <summary>Entries that are not absent.</summary>
    public long Count { get; private set; }

    /// <summary>Entries that point to a block (not absent, not tombstones).</summary>
    public long Mapped { get; private set; }

    public BlockEntry this[long block]
    {
        get => _pages.TryGetValue(block >> PageShift, out var page) ? page.Entries[block & (PageSize - 1)] : default;
        set
        {
            long key = block >> PageShift;
            if (!_pages.TryGetValue(key, out var page))
            {
                if (value.IsAbsent)
                    return;
                page = new Page();
                _pages.Add(key, page);
            }
            ref var slot = ref page.Entries[block & (PageSize - 1)];
            int change = (value.IsAbsent ? 0 : 1) - (slot.IsAbsent ? 0 : 1);
            Mapped += (value.IsMapped ? 1 : 0) - (slot.IsMapped ? 1 : 0);
            slot = value;
            page.Used += change;
            Count += change;
            if (page.Used == 0)
                _pages.Remove(key);
        }
    }

    /// <summary>Every present entry in block order.</summary>
    public IEnumerable<(long Block, BlockEntry Entry)> Entries()
    {
        foreach (long key in _pages.Keys.Order().ToArray())
        {
            if (!_pages.TryGetValue(key, out var page))
                continue;
            for (int i = 0; i < PageSize; i++)
            {
                var entry = page.Entries[i];
                if (!entry.IsAbsent)
                    yield return ((key << PageShift) + i, entry);
            }
        }
    }

    /// <summary>Present entries in [<paramref name="from"/>, <paramref name="to"/>), in block order.</summary>
    public IEnumerable<(long Block, BlockEntry Entry)> Range(long from, long to)
    {
        if (from >= to)
            yield break;
        long firstKey = from >> PageShift, lastKey = (to - 1) >> PageShift;
        foreach (long key in _pages.Keys.Where(k => k >= firstKey && k <= lastKey).Order().ToArray())
        {
            if (!_pages.TryGetValue(key, out var page))
                continue;
            long start = Math.Max(from, key << PageShift), end = Math.Min(to, (key + 1) << PageShift);
            for (long block = start; block < end; block++)
            {
                var entry = page.Entries[block & (PageSize - 1)];
                if (!entry.IsAbsent)
                    yield return (block, entry);
            }
        }
    }

    private sealed class Page
    {
        public readonly BlockEntry[] Entries = new BlockEntry[PageSize];
        public int Used;
    }
}
