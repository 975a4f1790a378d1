namespace Storage.Versioning;

/// <summary>A snapshot as the state holds it.</summary>
internal sealed class SnapshotState
{
    public required long Id { get; init; }

    public required string Name { get; set; }

    /// <summary>The transaction group it was taken at: it sees every entry with a version up to this.</summary>
    public required long Version { get; init; }

    public required long Size { get; init; }

    public required long Time { get; init; }

    public required ulong SourcePool { get; init; }

    public required long SourceVersion { get; init; }
}

/// <summary>
/// A thin volume: its head map, the older entries kept for its snapshots (ascending by version per block), its
/// snapshots (ascending by version) and, for a clone, the snapshot it reads through to where it has no entry.
/// </summary>
internal sealed class VolumeState
{
    public required long Id { get; init; }

    public required string Name { get; set; }

    public required long Size { get; set; }

    public required long Created { get; init; }

    /// <summary>The origin volume of a clone, or -1.</summary>
    public long Origin { get; init; } = -1;

    /// <summary>The origin snapshot's version.</summary>
    public long OriginVersion { get; init; }

    /// <summary>Blocks the origin can supply: its snapshot's size in blocks.</summary>
    public long OriginBlocks { get; init; }

    public BlockMap Head { get; } = new();

    public Dictionary<long, List<BlockEntry>> History { get; } = [];

    public List<SnapshotState> Snapshots { get; } = [];

    public long LatestSnapshotVersion => Snapshots.Count == 0 ? -1 : Snapshots[^1].Version;

    public bool OriginReaches(long block) => Origin >= 0 && block < OriginBlocks;

    /// <summary>True when some snapshot's version lies in [<paramref name="from"/>, <paramref name="to"/>).</summary>
    public bool SnapshotWithin(long from, long to)
    {
        int lo = 0, hi = Snapshots.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (Snapshots[mid].Version < from)
                lo = mid + 1;
            else
                hi = mid;
        }
        return lo < Snapshots.Count && Snapshots[lo].Version < to;
    }

    public SnapshotState? FindSnapshot(string name) => Snapshots.Find(s => s.Name == name);

    public SnapshotState? FindSnapshot(long id) => Snapshots.Find(s => s.Id == id);
}
