namespace Storage.Versioning;

/// <summary>
/// The pool's metadata as a pure model: volumes, their maps, history and snapshots. <see cref="Apply"/> performs one
/// logged operation; it never fails for an operation the pool validated before logging, so replay is deterministic.
/// Physical blocks an operation stops referencing are reported to the caller, who frees them once that is durable.
/// Each physical block is referenced by at most one entry in the whole pool.
/// </summary>
internal sealed class PoolState(int blockSize)
{
    public int BlockSize { get; } = blockSize;

    public SortedDictionary<long, VolumeState> Volumes { get; } = [];

    public long NextVolumeId { get; set; } = 1;

    public long NextSnapshotId { get; set; } = 1;

    public long BlocksOf(long bytes) => (bytes + BlockSize - 1) / BlockSize;

    public VolumeState? FindVolume(string name) => Volumes.Values.FirstOrDefault(v => v.Name == name);

    public VolumeState Volume(long id) => Volumes.TryGetValue(id, out var volume) ? volume : throw new InvalidOperationException($"Volume {id} is not in the pool.");

    /// <summary>The clones whose origin is <paramref name="volume"/> (at any of its snapshots).</summary>
    public IEnumerable<VolumeState> ClonesOf(VolumeState volume) => Volumes.Values.Where(v => v.Origin == volume.Id);

    /// <summary>Performs <paramref name="op"/> as committed in transaction group <paramref name="version"/>.</summary>
    public void Apply(in PoolOp op, long version, Action<long>? freed)
    {
        switch (op.Kind)
        {
            case PoolOpKind.Map:
                Replace(Volume(op.Volume), op.Block, BlockEntry.Mapped(op.Physical, version, op.Crc), freed);
                break;
            case PoolOpKind.Trim:
                var trimmed = Volume(op.Volume);
                for (long block = op.Block; block < op.Block + op.Count; block++)
                    Trim(trimmed, block, version, freed);
                break;
            case PoolOpKind.Relocate:
                if (!Relocate(Volume(op.Volume), op.Block, op.Count, op.Physical))
                    throw new InvalidOperationException($"Block {op.Block} of volume {op.Volume} has no entry at {op.Count} to relocate.");
                freed?.Invoke(op.Count);
                break;
            case PoolOpKind.CreateVolume:
                CreateVolume(op, version);
                break;
            case PoolOpKind.ResizeVolume:
                var resized = Volume(op.Volume);
                long keep = BlocksOf(op.Count), had = Math.Max(BlocksOf(resized.Size), resized.OriginBlocks);
                foreach (var (block, _) in resized.Head.Range(keep, long.MaxValue).ToArray())
                    Trim(resized, block, version, freed);
                for (long block = keep; block < had; block++)
                {
                    if (resized.Head[block].IsAbsent && resized.OriginReaches(block))
                        resized.Head[block] = BlockEntry.Tombstone(version);
                }
                resized.Size = op.Count;
                break;
            case PoolOpKind.RenameVolume:
                Volume(op.Volume).Name = op.Name!;
                break;
            case PoolOpKind.DeleteVolume:
                DeleteVolume(Volume(op.Volume), freed);
                break;
            case PoolOpKind.CreateSnapshot:
                var owner = Volume(op.Volume);
                owner.Snapshots.Add(new SnapshotState
                {
                    Id = op.Snapshot, Name = op.Name!, Version = version, Size = owner.Size, Time = op.Time,
                    SourcePool = op.SourcePool, SourceVersion = op.SourceVersion == 0 ? version : op.SourceVersion,
                });
                NextSnapshotId = Math.Max(NextSnapshotId, op.Snapshot + 1);
                break;
            case PoolOpKind.DeleteSnapshot:
                DeleteSnapshot(Volume(op.Volume), op.Snapshot, freed);
                break;
            case PoolOpKind.RenameSnapshot:
                (Volume(op.Volume).FindSnapshot(op.Snapshot) ?? throw new InvalidOperationException($"Volume {op.Volume} has no snapshot {op.Snapshot} to rename.")).Name = op.Name!;
                break;
            case PoolOpKind.Rollback:
                Rollback(Volume(op.Volume), op.Snapshot, freed);
                break;
            default:
                throw new InvalidOperationException($"Unknown pool operation {op.Kind}.");
        }
    }

    /// <summary>The entry a read of <paramref name="block"/> sees at <paramref name="limit"/> (absent: zeros).</summary>
    public BlockEntry Lookup(VolumeState volume, long block, long limit)
    {
        while (true)
        {
            var entry = volume.Head[block];
            if (!entry.IsAbsent)
            {
                if (entry.Version <= limit)
                    return entry;
                if (volume.History.TryGetValue(block, out var older))
                {
                    for (int i = older.Count - 1; i >= 0; i--)
                    {
                        if (older[i].Version <= limit)
                            return older[i];
                    }
                }
            }
            if (!volume.OriginReaches(block))
                return default;
            limit = volume.OriginVersion;
            volume = Volume(volume.Origin);
        }
    }

    /// <summary>True when <paramref name="volume"/> still has <paramref name="entry"/> (same block and checksum) for <paramref name="block"/>.</summary>
    public static bool Holds(VolumeState volume, long block, BlockEntry entry)
    {
        if (volume.Head[block].Equals(entry))
            return true;
        return volume.History.TryGetValue(block, out var older) && older.Contains(entry);
    }

    /// <summary>True when <paramref name="volume"/> has an entry for <paramref name="block"/> at <paramref name="physical"/>.</summary>
    public static bool Holds(VolumeState volume, long block, long physical)
    {
        if (volume.Head[block].Physical == physical)
            return true;
        return volume.History.TryGetValue(block, out var older) && older.Exists(e => e.Physical == physical);
    }

    private static bool Relocate(VolumeState volume, long block, long from, long to)
    {
        var head = volume.Head[block];
        if (head.IsMapped && head.Physical == from)
        {
            volume.Head[block] = BlockEntry.Mapped(to, head.Version, head.Crc);
            return true;
        }
        if (volume.History.TryGetValue(block, out var older))
        {
            int i = older.FindIndex(e => e.IsMapped && e.Physical == from);
            if (i >= 0)
            {
                older[i] = BlockEntry.Mapped(to, older[i].Version, older[i].Crc);
                return true;
            }
        }
        return false;
    }

    private void CreateVolume(in PoolOp op, long version)
    {
        long originVersion = 0, originBlocks = 0;
        if (op.Origin >= 0)
        {
            var snapshot = Volume(op.Origin).FindSnapshot(op.Snapshot) ?? throw new InvalidOperationException($"Snapshot {op.Snapshot} is gone.");
            originVersion = snapshot.Version;
            originBlocks = BlocksOf(snapshot.Size);
        }
        Volumes.Add(op.Volume, new VolumeState
        {
            Id = op.Volume, Name = op.Name!, Size = op.Count, Created = version,
            Origin = op.Origin, OriginVersion = originVersion, OriginBlocks = originBlocks,
        });
        NextVolumeId = Math.Max(NextVolumeId, op.Volume + 1);
    }

    private static void Replace(VolumeState volume, long block, BlockEntry entry, Action<long>? freed)
    {
        var old = volume.Head[block];
        if (!old.IsAbsent)
            Retire(volume, block, old, freed);
        volume.Head[block] = entry;
    }

    /// <summary>The head entry is being replaced: keep it for the snapshots that see it, or free it.</summary>
    private static void Retire(VolumeState volume, long block, BlockEntry old, Action<long>? freed)
    {
        if (volume.LatestSnapshotVersion >= old.Version)
        {
            if (!volume.History.TryGetValue(block, out var older))
                volume.History.Add(block, older = []);
            older.Add(old);
        }
        else if (old.IsMapped)
        {
            freed?.Invoke(old.Physical);
        }
    }

    private static void Trim(VolumeState volume, long block, long version, Action<long>? freed)
    {
        var old = volume.Head[block];
        if (old.IsTombstone)
            return;
        if (old.IsAbsent)
        {
            if (volume.OriginReaches(block))
                volume.Head[block] = BlockEntry.Tombstone(version);
            return;
        }
        Retire(volume, block, old, freed);
        bool hidesSomething = volume.History.ContainsKey(block) || volume.OriginReaches(block);
        volume.Head[block] = hidesSomething ? BlockEntry.Tombstone(version) : default;
    }

    private void DeleteVolume(VolumeState volume, Action<long>? freed)
    {
        Volumes.Remove(volume.Id);
        if (freed is not null)
        {
            foreach (var (_, entry) in volume.Head.Entries())
            {
                if (entry.IsMapped)
                    freed(entry.Physical);
            }
            foreach (var older in volume.History.Values)
            {
                foreach (var entry in older)
                {
                    if (entry.IsMapped)
                        freed(entry.Physical);
                }
            }
        }
    }

    private static void DeleteSnapshot(VolumeState volume, long snapshotId, Action<long>? freed)
    {
        var snapshot = volume.FindSnapshot(snapshotId) ?? throw new InvalidOperationException($"Snapshot {snapshotId} is gone.");
        volume.Snapshots.Remove(snapshot);
        foreach (long block in volume.History.Keys.ToArray())
        {
            var older = volume.History[block];
            var head = volume.Head[block];
            for (int i = older.Count - 1; i >= 0; i--)
            {
                long from = older[i].Version, to = i + 1 < older.Count ? older[i + 1].Version : head.Version;
                if (from <= snapshot.Version && snapshot.Version < to && !volume.SnapshotWithin(from, to))
                {
                    if (older[i].IsMapped)
                        freed?.Invoke(older[i].Physical);
                    older.RemoveAt(i);
                }
            }
            if (older.Count == 0)
            {
                volume.History.Remove(block);
                if (head.IsTombstone && !volume.OriginReaches(block))
                    volume.Head[block] = default;
            }
        }
    }

    private static void Rollback(VolumeState volume, long snapshotId, Action<long>? freed)
    {
        var snapshot = volume.FindSnapshot(snapshotId) ?? throw new InvalidOperationException($"Snapshot {snapshotId} is gone.");
        foreach (var (block, entry) in volume.Head.Entries().ToArray())
        {
            if (entry.Version <= snapshot.Version)
                continue;
            if (entry.IsMapped)
                freed?.Invoke(entry.Physical);
            var restored = default(BlockEntry);
            if (volume.History.TryGetValue(block, out var older))
            {
                restored = older[^1];
                older.RemoveAt(older.Count - 1);
                if (older.Count == 0)
                    volume.History.Remove(block);
            }
            volume.Head[block] = restored;
        }
        volume.Size = snapshot.Size;
    }
}
