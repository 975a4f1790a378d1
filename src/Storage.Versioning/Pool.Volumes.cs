namespace Storage.Versioning;

/// <summary>
/// Volumes, snapshots and clones. Each change is checked first, then applied and committed before the call returns.
/// A snapshot ends its transaction group, so it sees exactly the writes made before it: O(1), no copy of the map.
/// </summary>
public sealed partial class Pool
{
    /// <summary>Every volume, by name.</summary>
    public IReadOnlyList<VolumeInfo> ListVolumes()
    {
        ThrowIfUnusable();
        lock (_gate)
            return [.. _state.Volumes.Values.OrderBy(v => v.Name, StringComparer.Ordinal).Select(Describe)];
    }

    /// <summary>The snapshots of <paramref name="volume"/> (or of every volume), oldest first.</summary>
    /// <param name="volume">One volume, or null for all.</param>
    /// <param name="countSpace">
    /// False leaves <see cref="SnapshotInfo.ReferencedBytes"/>, <see cref="SnapshotInfo.UniqueBytes"/> and
    /// <see cref="SnapshotInfo.Clones"/> at 0 and answers in O(snapshots); counting them walks the volume's map, under
    /// the lock that I/O takes too.
    /// </param>
    public IReadOnlyList<SnapshotInfo> ListSnapshots(string? volume = null, bool countSpace = true)
    {
        ThrowIfUnusable();
        lock (_gate)
        {
            var volumes = volume is null ? [.. _state.Volumes.Values.OrderBy(v => v.Name, StringComparer.Ordinal)] : new[] { Find(volume) };
            return [.. volumes.SelectMany(v => v.Snapshots.Select(s => countSpace ? Describe(v, s) : Identify(v, s)))];
        }
    }

    private static SnapshotInfo Identify(VolumeState volume, SnapshotState snapshot)
        => new(volume.Name, snapshot.Name, snapshot.Version, snapshot.Size, DateTimeOffset.FromUnixTimeSeconds(snapshot.Time), 0, 0, 0);

    /// <summary>Creates an empty thin volume of <paramref name="size"/> bytes (a multiple of the device's sector).</summary>
    public async Task<VolumeInfo> CreateVolumeAsync(string name, long size, CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        VolumeInfo info;
        lock (_gate)
        {
            CheckNewVolume(name);
            CheckSize(size);
            LogLocked(new PoolOp { Kind = PoolOpKind.CreateVolume, Volume = _state.NextVolumeId, Name = name, Count = size, Origin = -1 });
            info = Describe(Find(name));
        }
        await CommitCoreAsync(false, cancellationToken).ConfigureAwait(false);
        RaiseChanged();
        return info;
    }

    /// <summary>Changes a volume's size; shrinking frees what lies beyond (snapshots keep theirs).</summary>
    public async Task ResizeVolumeAsync(string name, long size, CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        long id, old;
        lock (_gate)
        {
            var volume = Find(name);
            CheckSize(size);
            (id, old) = (volume.Id, volume.Size);
        }
        // Growing past a part-block end: the rest of that block may hold bytes from before a shrink.
        long blockEnd = (old + BlockSize - 1) / BlockSize * BlockSize;
        if (size > old && blockEnd > old)
            await WriteZerosAsync(id, old, Math.Min(size, blockEnd) - old, cancellationToken).ConfigureAwait(false);
        lock (_gate)
        {
            var volume = LiveVolume(id);
            if (volume.Size != old)
                throw new PoolConfigurationException($"Volume '{name}' was resized by someone else meanwhile; try again.");
            LogLocked(new PoolOp { Kind = PoolOpKind.ResizeVolume, Volume = id, Count = size });
        }
        await CommitCoreAsync(false, cancellationToken).ConfigureAwait(false);
        RaiseChanged();
    }

    /// <summary>Deletes a volume and its snapshots, freeing every block only they held.</summary>
    /// <exception cref="PoolConfigurationException">Unknown volume, or clones depend on one of its snapshots.</exception>
    public async Task DeleteVolumeAsync(string name, CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        lock (_gate)
        {
            var volume = Find(name);
            var clones = _state.ClonesOf(volume).Select(c => c.Name).ToArray();
            if (clones.Length > 0)
                throw new PoolConfigurationException($"Volume '{name}' has clones ({string.Join(", ", clones)}) that read through its snapshots; delete them first.");
            LogLocked(new PoolOp { Kind = PoolOpKind.DeleteVolume, Volume = volume.Id });
        }
        await CommitCoreAsync(false, cancellationToken).ConfigureAwait(false);
        RaiseChanged();
    }

    /// <summary>Takes a read-only snapshot of <paramref name="volume"/>: every write completed before this call, none after.</summary>
    public async Task<SnapshotInfo> CreateSnapshotAsync(string volume, string snapshot, CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        SnapshotInfo info;
        lock (_gate)
        {
            var owner = Find(volume);
            Names.Check(snapshot, "snapshot");
            if (owner.FindSnapshot(snapshot) is not null)
                throw new PoolConfigurationException($"Volume '{volume}' already has a snapshot '{snapshot}'.");
            LogSnapshotLocked(owner, snapshot, DateTimeOffset.UtcNow.ToUnixTimeSeconds());
            CloseLocked();
            // O(1): a snapshot just taken sees exactly the head's mapped blocks, and holds none alone yet.
            info = Identify(owner, owner.FindSnapshot(snapshot)!) with { ReferencedBytes = owner.Head.Mapped * BlockSize };
        }
        await CommitCoreAsync(false, cancellationToken).ConfigureAwait(false);
        RaiseChanged();
        return info;
    }

    /// <summary>Renames a snapshot of <paramref name="volume"/> (its blocks, version and clones are unchanged).</summary>
    /// <exception cref="PoolConfigurationException">Unknown volume or snapshot, a bad name, or the new name is taken.</exception>
    public async Task RenameSnapshotAsync(string volume, string snapshot, string newName, CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        lock (_gate)
        {
            var owner = Find(volume);
            Names.Check(newName, "snapshot");
            var found = owner.FindSnapshot(snapshot) ?? throw new PoolConfigurationException($"Volume '{volume}' has no snapshot '{snapshot}'; 'storage snapshot list {volume}' shows them.");
            if (owner.FindSnapshot(newName) is not null)
                throw new PoolConfigurationException($"Volume '{volume}' already has a snapshot '{newName}'.");
            LogLocked(new PoolOp { Kind = PoolOpKind.RenameSnapshot, Volume = owner.Id, Snapshot = found.Id, Name = newName });
        }
        await CommitCoreAsync(false, cancellationToken).ConfigureAwait(false);
        RaiseChanged();
    }

    /// <summary>
    /// Takes several snapshots in one transaction group and one commit: all at the same instant (every write completed
    /// before this call, none after), as a group snapshot of several volumes of this pool needs. <paramref name="cut"/>
    /// runs once they exist in memory, before they are durable: writes issued after it are not in them, so a caller
    /// that holds writes for the cut can release them there instead of waiting for the commit.
    /// </summary>
    /// <exception cref="PoolConfigurationException">An unknown volume, a bad or taken name (nothing was taken).</exception>
    public async Task CreateSnapshotsAsync(IReadOnlyList<(string Volume, string Snapshot)> snapshots, Action? cut = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(snapshots);
        ThrowIfUnusable();
        lock (_gate)
        {
            var owners = snapshots.Select(s => Find(s.Volume)).ToList();
            var seen = new HashSet<(string, string)>();
            for (int i = 0; i < snapshots.Count; i++)
            {
                var (volume, snapshot) = snapshots[i];
                Names.Check(snapshot, "snapshot");
                if (owners[i].FindSnapshot(snapshot) is not null || !seen.Add((volume, snapshot)))
                    throw new PoolConfigurationException($"Volume '{volume}' already has a snapshot '{snapshot}'.");
            }
            long time = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            for (int i = 0; i < snapshots.Count; i++)
                LogSnapshotLocked(owners[i], snapshots[i].Snapshot, time);
            CloseLocked();
        }
        cut?.Invoke();
        await CommitCoreAsync(false, cancellationToken).ConfigureAwait(false);
        RaiseChanged();
    }

    private void LogSnapshotLocked(VolumeState owner, string snapshot, long time)
        => LogLocked(new PoolOp { Kind = PoolOpKind.CreateSnapshot, Volume = owner.Id, Snapshot = _state.NextSnapshotId, Name = snapshot, Time = time, SourcePool = Id });

    /// <summary>Deletes a snapshot, freeing the blocks only it held.</summary>
    /// <exception cref="PoolConfigurationException">Unknown snapshot, or clones of it exist.</exception>
    public async Task DeleteSnapshotAsync(string volume, string snapshot, CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        lock (_gate)
        {
            var (owner, target) = FindSnapshot(volume, snapshot);
            CheckNoClones(owner, target);
            LogLocked(new PoolOp { Kind = PoolOpKind.DeleteSnapshot, Volume = owner.Id, Snapshot = target.Id });
        }
        await CommitCoreAsync(false, cancellationToken).ConfigureAwait(false);
        RaiseChanged();
    }

    /// <summary>
    /// Returns <paramref name="volume"/> to its contents at <paramref name="snapshot"/>. Snapshots taken after it must be
    /// deleted first, or pass <paramref name="destroyNewer"/>.
    /// </summary>
    public async Task RollbackAsync(string volume, string snapshot, bool destroyNewer = false, CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        lock (_gate)
        {
            var (owner, target) = FindSnapshot(volume, snapshot);
            var newer = owner.Snapshots.Where(s => s.Version > target.Version).ToArray();
            if (newer.Length > 0 && !destroyNewer)
                throw new PoolConfigurationException($"Snapshots newer than '{volume}@{snapshot}' exist ({string.Join(", ", newer.Select(s => s.Name))}); delete them or pass --destroy-newer.");
            foreach (var s in newer)
                CheckNoClones(owner, s);
            foreach (var s in newer.Reverse())
                LogLocked(new PoolOp { Kind = PoolOpKind.DeleteSnapshot, Volume = owner.Id, Snapshot = s.Id });
            LogLocked(new PoolOp { Kind = PoolOpKind.Rollback, Volume = owner.Id, Snapshot = target.Id });
        }
        await CommitCoreAsync(false, cancellationToken).ConfigureAwait(false);
        RaiseChanged();
    }

    /// <summary>Creates a writable volume that starts with the contents of <paramref name="volume"/>@<paramref name="snapshot"/> and shares its blocks.</summary>
    public async Task<VolumeInfo> CloneAsync(string volume, string snapshot, string newVolume, CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        VolumeInfo info;
        lock (_gate)
        {
            var (owner, target) = FindSnapshot(volume, snapshot);
            CheckNewVolume(newVolume);
            LogLocked(new PoolOp { Kind = PoolOpKind.CreateVolume, Volume = _state.NextVolumeId, Name = newVolume, Count = target.Size, Origin = owner.Id, Snapshot = target.Id });
            info = Describe(Find(newVolume));
        }
        await CommitCoreAsync(false, cancellationToken).ConfigureAwait(false);
        RaiseChanged();
        return info;
    }

    /// <summary>Renames a volume (its snapshots follow it).</summary>
    public async Task RenameVolumeAsync(string name, string newName, CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        lock (_gate)
        {
            var volume = Find(name);
            CheckNewVolume(newName);
            LogLocked(new PoolOp { Kind = PoolOpKind.RenameVolume, Volume = volume.Id, Name = newName });
        }
        await CommitCoreAsync(false, cancellationToken).ConfigureAwait(false);
        RaiseChanged();
    }

    /// <summary>A block device for the volume's current contents (writable).</summary>
    public PoolVolume OpenVolume(string name)
    {
        ThrowIfUnusable();
        lock (_gate)
        {
            var volume = Find(name);
            return new PoolVolume(this, volume.Id, long.MaxValue, $"{Name}/{name}", volume.Size, _device.SectorSize);
        }
    }

    /// <summary>A read-only block device for a snapshot's contents.</summary>
    public PoolVolume OpenSnapshot(string volume, string snapshot)
    {
        ThrowIfUnusable();
        lock (_gate)
        {
            var (owner, target) = FindSnapshot(volume, snapshot);
            return new PoolVolume(this, owner.Id, target.Version, $"{Name}/{volume}@{snapshot}", target.Size, _device.SectorSize);
        }
    }

    /// <summary>Size, use and health.</summary>
    public PoolStatus GetStatus()
    {
        ThrowIfUnusable();
        lock (_gate)
        {
            long pending = PendingFreeBlocksLocked;
            long fresh = 0;
            for (long i = 0; i < _segmentUsed.Length; i++)
            {
                if (_segmentUsed[i] == 0 && !_buffered.ContainsKey(i))
                    fresh++;
            }
            return new PoolStatus(
                Name, Id, _device.Name, BlockSize, SegmentBlocks * BlockSize, _super.BlockCount * BlockSize,
                _usedBlocks * BlockSize, pending * BlockSize, (_super.BlockCount - _usedBlocks) * BlockSize,
                _state.Volumes.Count, _state.Volumes.Values.Sum(v => v.Snapshots.Count), _committedTxg,
                Interlocked.Read(ref _repairs), Interlocked.Read(ref _checksumErrors), Interlocked.Read(ref _unrecoverable),
                fresh, (double)_logUsed / _super.LogLength, ParityProtected, Interlocked.Read(ref _cleaned), Interlocked.Read(ref _looseWrites));
        }
    }

    private VolumeState Find(string name)
        => _state.FindVolume(name) ?? throw new PoolConfigurationException($"Pool '{Name}' has no volume '{name}'; 'storage volume list' shows them.");

    private (VolumeState Volume, SnapshotState Snapshot) FindSnapshot(string volume, string snapshot)
    {
        var owner = Find(volume);
        return (owner, owner.FindSnapshot(snapshot) ?? throw new PoolConfigurationException($"Volume '{volume}' has no snapshot '{snapshot}'; 'storage snapshot list {volume}' shows them."));
    }

    private void CheckNewVolume(string name)
    {
        Names.Check(name, "volume");
        if (_state.FindVolume(name) is not null)
            throw new PoolConfigurationException($"Pool '{Name}' already has a volume '{name}'.");
    }

    private void CheckSize(long size)
    {
        if (size <= 0 || size % _device.SectorSize != 0 || size > (1L << 56))
            throw new PoolConfigurationException($"Volume size {size} must be a positive multiple of {_device.SectorSize} bytes (and at most 64 PiB).");
    }

    private void CheckNoClones(VolumeState owner, SnapshotState snapshot)
    {
        var clones = _state.Volumes.Values.Where(v => v.Origin == owner.Id && v.OriginVersion == snapshot.Version).Select(v => v.Name).ToArray();
        if (clones.Length > 0)
            throw new PoolConfigurationException($"Snapshot '{owner.Name}@{snapshot.Name}' has clones ({string.Join(", ", clones)}); delete them first.");
    }

    private VolumeInfo Describe(VolumeState volume)
    {
        long mapped = volume.Head.Mapped;
        long history = volume.History.Values.Sum(h => h.Count(e => e.IsMapped));
        string? origin = null;
        if (volume.Origin >= 0 && _state.Volumes.TryGetValue(volume.Origin, out var source))
            origin = $"{source.Name}@{source.Snapshots.Find(s => s.Version == volume.OriginVersion)?.Name}";
        return new VolumeInfo(volume.Name, volume.Size, (mapped + history) * BlockSize, mapped * BlockSize, volume.Snapshots.Count, origin);
    }

    private SnapshotInfo Describe(VolumeState volume, SnapshotState snapshot)
    {
        long referenced = 0, unique = 0;
        foreach (var (block, _) in volume.Head.Entries())
        {
            if (OwnEntry(volume, block, snapshot.Version).IsMapped)
                referenced++;
        }
        foreach (var (block, older) in volume.History)
        {
            // An older entry is seen from its version until the entry that replaced it: the next older one, or the head.
            var head = volume.Head[block];
            for (int i = 0; i < older.Count; i++)
            {
                long from = older[i].Version;
                long to = i + 1 < older.Count ? older[i + 1].Version : head.IsAbsent ? long.MaxValue : head.Version;
                if (older[i].IsMapped && from <= snapshot.Version && snapshot.Version < to && CountSnapshotsWithin(volume, from, to) == 1)
                    unique++;
            }
        }
        int clones = _state.Volumes.Values.Count(v => v.Origin == volume.Id && v.OriginVersion == snapshot.Version);
        return new SnapshotInfo(volume.Name, snapshot.Name, snapshot.Version, snapshot.Size, DateTimeOffset.FromUnixTimeSeconds(snapshot.Time), referenced * BlockSize, unique * BlockSize, clones);
    }

    /// <summary>The volume's own entry for <paramref name="block"/> that <paramref name="limit"/> sees (not its origin's).</summary>
    private static BlockEntry OwnEntry(VolumeState volume, long block, long limit)
    {
        var head = volume.Head[block];
        if (head.IsAbsent || head.Version <= limit)
            return head;
        if (volume.History.TryGetValue(block, out var older))
        {
            for (int i = older.Count - 1; i >= 0; i--)
            {
                if (older[i].Version <= limit)
                    return older[i];
            }
        }
        return default;
    }

    private static int CountSnapshotsWithin(VolumeState volume, long from, long to) => volume.Snapshots.Count(s => s.Version >= from && s.Version < to);
}
