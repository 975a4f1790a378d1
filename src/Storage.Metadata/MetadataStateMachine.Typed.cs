namespace Storage.Metadata;

// Pools, volumes, extents, snapshots and transactions: typed records stored under fixed key prefixes.
public sealed partial class MetadataStateMachine
{
    private const string VolumePrefix = "volumes/";
    private const string SnapshotPrefix = "snapshots/";

    /// <summary>Key of a pool record.</summary>
    public static string PoolKey(string name) => "pools/" + name;

    /// <summary>Key of a volume record.</summary>
    public static string VolumeKey(string name) => VolumePrefix + name;

    /// <summary>Key of a snapshot record.</summary>
    public static string SnapshotKey(string volume, string name) => $"{SnapshotPrefix}{volume}/{name}";

    /// <summary>Key of a transaction record.</summary>
    public static string TransactionKey(string id) => "tx/" + id;

    /// <summary>The pool named <paramref name="name"/>, or null.</summary>
    public PoolRecord? GetPool(string name) => _items.TryGetValue(PoolKey(name), out var i) ? MetadataCodec.DecodePool(i.Value) : null;

    /// <summary>The volume named <paramref name="name"/>, or null.</summary>
    public VolumeRecord? GetVolume(string name) => _items.TryGetValue(VolumeKey(name), out var i) ? MetadataCodec.DecodeVolume(i.Value) : null;

    /// <summary>The snapshot <paramref name="name"/> of <paramref name="volume"/>, or null.</summary>
    public SnapshotRecord? GetSnapshot(string volume, string name) =>
        _items.TryGetValue(SnapshotKey(volume, name), out var i) ? MetadataCodec.DecodeSnapshot(i.Value) : null;

    /// <summary>The transaction <paramref name="id"/>, or null (never begun, or forgotten).</summary>
    public TransactionRecord? GetTransaction(string id) =>
        _items.TryGetValue(TransactionKey(id), out var i) ? MetadataCodec.DecodeTransaction(i.Value) : null;

    private static bool ValidName(string name) => !string.IsNullOrEmpty(name) && !name.Contains('/', StringComparison.Ordinal);

    private CommandResult CreatePool(CreatePoolCommand c, List<WatchEvent> events)
    {
        if (!ValidName(c.Name) || c.Arrays.Count == 0)
            return Fail(ResultCode.Invalid, "a pool needs a name without '/' and at least one array");
        if (_items.ContainsKey(PoolKey(c.Name)))
            return Fail(ResultCode.AlreadyExists, $"pool {c.Name} exists");
        if (c.Arrays.Select(a => a.Id).Distinct().Count() != c.Arrays.Count)
            return Fail(ResultCode.Invalid, "array ids repeat");
        var devices = c.Arrays.SelectMany(a => a.Members).ToList();
        if (devices.Count == 0 || devices.Distinct(StringComparer.Ordinal).Count() != devices.Count)
            return Fail(ResultCode.Invalid, "every array needs devices, each used once in the pool");
        if (devices.Select(OwnerOf).FirstOrDefault(o => o is not null) is { } taken)
            return Fail(ResultCode.Conflict, taken);
        return Write(PoolKey(c.Name), MetadataCodec.EncodePool(new PoolRecord(c.Name, c.Arrays)), events);
    }

    private CommandResult ChangeMember(string poolName, int arrayId, string device, bool add, List<WatchEvent> events)
    {
        if (GetPool(poolName) is not { } pool)
            return Fail(ResultCode.NotFound, $"pool {poolName} does not exist");
        int index = pool.Arrays.ToList().FindIndex(a => a.Id == arrayId);
        if (index < 0)
            return Fail(ResultCode.NotFound, $"pool {poolName} has no array {arrayId}");
        var array = pool.Arrays[index];
        bool inPool = pool.Arrays.Any(a => a.Members.Contains(device, StringComparer.Ordinal));
        if (add && inPool)
            return Fail(ResultCode.Conflict, $"{device} is already in pool {poolName}");
        if (add && OwnerOf(device) is { } taken)
            return Fail(ResultCode.Conflict, taken);
        if (!add && !array.Members.Contains(device, StringComparer.Ordinal))
            return Fail(ResultCode.NotFound, $"{device} is not in array {arrayId}");
        if (!add && array.Members.Count == 1)
            return Fail(ResultCode.Conflict, $"array {arrayId} would have no devices");
        var members = add ? [.. array.Members, device] : array.Members.Where(m => m != device).ToList();
        var arrays = pool.Arrays.ToList();
        arrays[index] = array with { Members = members };
        return Write(PoolKey(poolName), MetadataCodec.EncodePool(pool with { Arrays = arrays }), events);
    }

    /// <summary>Why <paramref name="device"/> is taken ("… belongs to pool P"), or null when no pool has it: a device serves one pool.</summary>
    private string? OwnerOf(string device)
    {
        foreach (var (key, _) in List("pools/"))
        {
            if (GetPool(key["pools/".Length..]) is { } pool && pool.Arrays.Any(a => a.Members.Contains(device, StringComparer.Ordinal)))
                return $"{device} already belongs to pool {pool.Name}";
        }
        return null;
    }

    private CommandResult DeletePool(string name, List<WatchEvent> events)
    {
        if (!_items.ContainsKey(PoolKey(name)))
            return Fail(ResultCode.NotFound, $"pool {name} does not exist");
        foreach (var (key, _) in List("volumes/"))
            if (GetVolume(key["volumes/".Length..])?.Pool == name)
                return Fail(ResultCode.Conflict, $"pool {name} has volumes");
        return Remove(PoolKey(name), events);
    }

    private CommandResult CreateVolume(CreateVolumeCommand c, List<WatchEvent> events)
    {
        if (!ValidName(c.Name) || c.SizeBytes <= 0)
            return Fail(ResultCode.Invalid, "a volume needs a name without '/' and a positive size");
        if (_items.ContainsKey(VolumeKey(c.Name)))
            return Fail(ResultCode.AlreadyExists, $"volume {c.Name} exists");
        if (!_items.ContainsKey(PoolKey(c.Pool)))
            return Fail(ResultCode.NotFound, $"pool {c.Pool} does not exist");
        return Write(VolumeKey(c.Name), MetadataCodec.EncodeVolume(new VolumeRecord(c.Name, c.Pool, c.SizeBytes, [])), events);
    }

    private CommandResult ResizeVolume(ResizeVolumeCommand c, List<WatchEvent> events)
    {
        if (GetVolume(c.Name) is not { } v)
            return Fail(ResultCode.NotFound, $"volume {c.Name} does not exist");
        long mappedEnd = v.Extents.Count == 0 ? 0 : v.Extents.Max(e => e.Offset + e.Length);
        if (c.SizeBytes <= 0 || c.SizeBytes < mappedEnd)
            return Fail(ResultCode.Conflict, $"volume {c.Name} is mapped up to byte {mappedEnd}");
        return Write(VolumeKey(c.Name), MetadataCodec.EncodeVolume(v with { SizeBytes = c.SizeBytes }), events);
    }

    private CommandResult DeleteVolume(string name, List<WatchEvent> events)
    {
        if (!_items.ContainsKey(VolumeKey(name)))
            return Fail(ResultCode.NotFound, $"volume {name} does not exist");
        if (List($"snapshots/{name}/").Count > 0)
            return Fail(ResultCode.Conflict, $"volume {name} has snapshots");
        return Remove(VolumeKey(name), events);
    }

    private CommandResult MapExtent(MapExtentCommand c, List<WatchEvent> events)
    {
        if (GetVolume(c.Volume) is not { } v)
            return Fail(ResultCode.NotFound, $"volume {c.Volume} does not exist");
        var e = c.Extent;
        if (e.Offset < 0 || e.Length <= 0 || e.Physical < 0 || e.Offset > v.SizeBytes - e.Length)
            return Fail(ResultCode.Invalid, $"extent [{e.Offset}, +{e.Length}) is outside volume {c.Volume}");
        if (GetPool(v.Pool) is not { } pool || pool.Arrays.All(a => a.Id != e.ArrayId))
            return Fail(ResultCode.NotFound, $"pool {v.Pool} has no array {e.ArrayId}");
        if (v.Extents.Any(x => x.Offset < e.Offset + e.Length && e.Offset < x.Offset + x.Length))
            return Fail(ResultCode.Conflict, $"extent [{e.Offset}, +{e.Length}) overlaps a mapped one");
        if (PhysicalOwner(v.Pool, e) is { } owner)
            return Fail(ResultCode.Conflict, $"array {e.ArrayId} of pool {v.Pool}: bytes [{e.Physical}, +{e.Length}) are already held by {owner}");
        var extents = v.Extents.Append(e).OrderBy(x => x.Offset).ToList();
        return Write(VolumeKey(c.Volume), MetadataCodec.EncodeVolume(v with { Extents = extents }), events);
    }

    /// <summary>
    /// What already holds physical bytes of <paramref name="e"/> on its array of <paramref name="pool"/>: an extent of a
    /// volume of that pool, or of a snapshot of one (a snapshot keeps its extents after the volume unmaps them).
    /// </summary>
    private string? PhysicalOwner(string pool, ExtentRecord e)
    {
        bool Clashes(ExtentRecord x) => x.ArrayId == e.ArrayId && x.Physical < e.Physical + e.Length && e.Physical < x.Physical + x.Length;
        foreach (var (key, item) in _items)
        {
            if (key.StartsWith(VolumePrefix, StringComparison.Ordinal))
            {
                var volume = MetadataCodec.DecodeVolume(item.Value);
                if (volume.Pool == pool && volume.Extents.FirstOrDefault(Clashes) is { } x)
                    return $"volume {volume.Name} at [{x.Offset}, +{x.Length})";
            }
            else if (key.StartsWith(SnapshotPrefix, StringComparison.Ordinal))
            {
                var snapshot = MetadataCodec.DecodeSnapshot(item.Value);
                if (GetVolume(snapshot.Volume) is { } owner && owner.Pool == pool && snapshot.Extents.FirstOrDefault(Clashes) is { } x)
                    return $"snapshot {snapshot.Volume}@{snapshot.Name} at [{x.Offset}, +{x.Length})";
            }
        }
        return null;
    }

    private CommandResult UnmapExtent(UnmapExtentCommand c, List<WatchEvent> events)
    {
        if (GetVolume(c.Volume) is not { } v)
            return Fail(ResultCode.NotFound, $"volume {c.Volume} does not exist");
        if (v.Extents.All(x => x.Offset != c.Offset))
            return Fail(ResultCode.NotFound, $"no extent of {c.Volume} starts at {c.Offset}");
        var extents = v.Extents.Where(x => x.Offset != c.Offset).ToList();
        return Write(VolumeKey(c.Volume), MetadataCodec.EncodeVolume(v with { Extents = extents }), events);
    }

    private CommandResult CreateSnapshot(CreateSnapshotCommand c, List<WatchEvent> events)
    {
        if (!ValidName(c.Name))
            return Fail(ResultCode.Invalid, "a snapshot needs a name without '/'");
        if (GetVolume(c.Volume) is not { } v)
            return Fail(ResultCode.NotFound, $"volume {c.Volume} does not exist");
        if (_items.ContainsKey(SnapshotKey(c.Volume, c.Name)))
            return Fail(ResultCode.AlreadyExists, $"snapshot {c.Volume}/{c.Name} exists");
        var snap = new SnapshotRecord(c.Volume, c.Name, v.SizeBytes, v.Extents, Revision + 1);
        return Write(SnapshotKey(c.Volume, c.Name), MetadataCodec.EncodeSnapshot(snap), events);
    }

    private CommandResult DeleteSnapshot(DeleteSnapshotCommand c, List<WatchEvent> events) =>
        _items.ContainsKey(SnapshotKey(c.Volume, c.Name))
            ? Remove(SnapshotKey(c.Volume, c.Name), events)
            : Fail(ResultCode.NotFound, $"snapshot {c.Volume}/{c.Name} does not exist");

    private CommandResult BeginTransaction(BeginTransactionCommand c, List<WatchEvent> events)
    {
        if (!ValidName(c.Id) || c.Participants.Count == 0)
            return Fail(ResultCode.Invalid, "a transaction needs an id without '/' and participants");
        if (_items.ContainsKey(TransactionKey(c.Id)))
            return Fail(ResultCode.AlreadyExists, $"transaction {c.Id} exists");
        int nested = c.Changes.ToList().FindIndex(x => x is ReadCommand or BeginTransactionCommand or DecideTransactionCommand or ForgetTransactionCommand);
        if (nested >= 0)
            return Fail(ResultCode.Invalid, $"change {nested} of transaction {c.Id} is a {c.Changes[nested].GetType().Name}: a transaction changes the catalogue only");
        return Write(TransactionKey(c.Id), MetadataCodec.EncodeTransaction(new TransactionRecord(c.Id, c.Participants, TransactionState.Pending) { Changes = c.Changes }), events);
    }

    private CommandResult DecideTransaction(DecideTransactionCommand c, List<WatchEvent> events)
    {
        if (GetTransaction(c.Id) is not { } t)
            return Fail(ResultCode.NotFound, $"transaction {c.Id} does not exist");
        var decision = c.Commit ? TransactionState.Committed : TransactionState.Aborted;
        if (t.State == decision)
            return Read(TransactionKey(c.Id)) with { Value = ReadOnlyMemory<byte>.Empty };
        if (t.State != TransactionState.Pending)
            return Fail(ResultCode.Conflict, $"transaction {c.Id} is already {t.State}; a decision is final");
        if (c.Commit && t.Changes.Count > 0)
        {
            // The commit point: the decision and the catalogue changes it commits are one log entry.
            var (failed, result) = ApplyAllOrNone(t.Changes, events);
            if (failed >= 0)
                return Fail(ResultCode.Conflict, $"transaction {c.Id} cannot commit: change {failed} ({t.Changes[failed].GetType().Name}) failed: {result.Message}; nothing was changed and it is still pending (abort it)");
        }
        return Write(TransactionKey(c.Id), MetadataCodec.EncodeTransaction(t with { State = decision }), events);
    }

    private CommandResult ForgetTransaction(ForgetTransactionCommand c, List<WatchEvent> events)
    {
        if (GetTransaction(c.Id) is not { } t)
            return Fail(ResultCode.NotFound, $"transaction {c.Id} does not exist");
        if (t.State == TransactionState.Pending)
            return Fail(ResultCode.Conflict, $"transaction {c.Id} is undecided");
        return Remove(TransactionKey(c.Id), events);
    }
}
