
namespace Storage.Versioning.Tests;

/// <summary>
/// A brute-force reference of a pool: every volume's and snapshot's bytes in full, and which snapshots have clones.
/// <see cref="StepAsync"/> performs one scripted operation on both the pool and the reference.
/// </summary>
internal sealed class PoolModel
{
    public const int Sector = 512;
    private readonly Dictionary<string, byte[]> _volumes = [];
    private readonly Dictionary<string, List<(string Name, byte[] Bytes)>> _snapshots = [];
    private readonly Dictionary<string, string> _cloneOf = [];   // clone → "vol@snap"
    private int _names;

    public PoolModel(Pool pool) => Pool = pool;

    public Pool Pool { get; set; }

    public IReadOnlyDictionary<string, byte[]> Volumes => _volumes;

    public List<string> Log { get; } = [];

    /// <summary>A copy of the reference, to restore when a crash loses what came after a commit.</summary>
    public PoolModel Copy()
    {
        var copy = new PoolModel(Pool) { _names = _names };
        foreach (var (name, bytes) in _volumes)
            copy._volumes[name] = (byte[])bytes.Clone();
        foreach (var (name, list) in _snapshots)
            copy._snapshots[name] = [.. list.Select(s => (s.Name, (byte[])s.Bytes.Clone()))];
        foreach (var (clone, origin) in _cloneOf)
            copy._cloneOf[clone] = origin;
        return copy;
    }

    /// <summary>Step <paramref name="index"/> of a script: the operation and its arguments follow from both numbers.</summary>
    public async Task StepAsync(int code, int index)
    {
        var random = new Random(HashCode.Combine(code, index, 0x5eed));
        int op = random.Next(14);
        string? volume = _volumes.Count == 0 ? null : _volumes.Keys.Order(StringComparer.Ordinal).ElementAt(random.Next(_volumes.Count));
        if (volume is null && op is not 9)
            op = 9;
        switch (op)
        {
            case <= 3:
                await WriteAsync(volume!, random);
                break;
            case 4:
                await TrimAsync(volume!, random);
                break;
            case 5:
                string snapshot = $"s{_names++}";
                Log.Add($"snapshot {volume}@{snapshot}");
                var taken = await Pool.CreateSnapshotAsync(volume!, snapshot);
                Assert.Equal(Pool.ListSnapshots(volume!).Single(s => s.Name == snapshot), taken);   // the O(1) answer is the listing's
                _snapshots[volume!].Add((snapshot, (byte[])_volumes[volume!].Clone()));
                break;
            case 6:
                if (PickSnapshot(volume!, random) is not { } doomed)
                    break;
                Log.Add($"delete snapshot {volume}@{doomed}");
                if (HasClones(volume!, doomed))
                {
                    await Assert.ThrowsAsync<PoolConfigurationException>(() => Pool.DeleteSnapshotAsync(volume!, doomed));
                    break;
                }
                // What the listing says deleting would free is what the volume stops holding.
                long unique = Pool.ListSnapshots(volume!).Single(s => s.Name == doomed).UniqueBytes;
                long held = Pool.ListVolumes().Single(v => v.Name == volume).UsedBytes;
                await Pool.DeleteSnapshotAsync(volume!, doomed);
                Assert.Equal(held - unique, Pool.ListVolumes().Single(v => v.Name == volume).UsedBytes);
                _snapshots[volume!].RemoveAll(s => s.Name == doomed);
                break;
            case 7:
                if (PickSnapshot(volume!, random) is not { } source || _volumes.Count >= 6)
                    break;
                string clone = $"c{_names++}";
                Log.Add($"clone {volume}@{source} {clone}");
                await Pool.CloneAsync(volume!, source, clone);
                _volumes[clone] = (byte[])_snapshots[volume!].Find(s => s.Name == source).Bytes.Clone();
                _snapshots[clone] = [];
                _cloneOf[clone] = $"{volume}@{source}";
                break;
            case 8:
                await RollbackAsync(volume!, random);
                break;
            case 9:
                if (_volumes.Count >= 6)
                    break;
                string created = $"v{_names++}";
                long size = random.Next(16, 96) * 4096L + random.Next(8) * Sector;
                Log.Add($"create {created} {size}");
                await Pool.CreateVolumeAsync(created, size);
                _volumes[created] = new byte[size];
                _snapshots[created] = [];
                break;
            case 10:
                Log.Add($"delete {volume}");
                if (_cloneOf.Values.Any(o => o.StartsWith(volume + "@", StringComparison.Ordinal)))
                {
                    await Assert.ThrowsAsync<PoolConfigurationException>(() => Pool.DeleteVolumeAsync(volume!));
                    break;
                }
                await Pool.DeleteVolumeAsync(volume!);
                _volumes.Remove(volume!);
                _snapshots.Remove(volume!);
                _cloneOf.Remove(volume!);
                break;
            case 11:
                long resized = random.Next(8, 96) * 4096L + random.Next(8) * Sector;
                Log.Add($"resize {volume} {resized}");
                await Pool.ResizeVolumeAsync(volume!, resized);
                var bytes = _volumes[volume!];
                Array.Resize(ref bytes, (int)resized);
                _volumes[volume!] = bytes;
                break;
            case 12:
                Log.Add("commit");
                await Pool.CommitAsync();
                break;
            default:
                Log.Add("reopen");
                var device = Pool.Device;
                await Pool.DisposeAsync();
                Pool = await Pool.OpenAsync(device, new PoolOpenOptions { CommitInterval = TimeSpan.Zero });
                break;
        }
    }

    private async Task WriteAsync(string volume, Random random)
    {
        var bytes = _volumes[volume];
        long sectors = bytes.Length / Sector;
        long start = random.NextInt64(sectors);
        int count = (int)Math.Min(sectors - start, random.Next(1, 3 * 4096 * 4 / Sector));
        var data = new byte[count * Sector];
        if (random.Next(6) != 0)
            random.NextBytes(data);
        Log.Add($"write {volume} {start * Sector} +{data.Length}");
        using var device = Pool.OpenVolume(volume);
        try
        {
            await device.WriteAsync(start * Sector, data);
            data.CopyTo(bytes, start * Sector);
        }
        catch (PoolFullException)
        {
            // Each block is either the old or the new bytes; take what the pool holds from here on.
            var now = new byte[bytes.Length];
            await device.ReadAsync(0, now);
            for (int i = 0; i < data.Length; i++)
            {
                byte got = now[start * Sector + i];
                Assert.True(got == bytes[start * Sector + i] || got == data[i], $"byte {start * Sector + i} of {volume} is neither old nor new after ENOSPC");
            }
            _volumes[volume] = now;
            Log.Add("  (pool full)");
        }
    }

    private async Task TrimAsync(string volume, Random random)
    {
        var bytes = _volumes[volume];
        long sectors = bytes.Length / Sector;
        long start = random.NextInt64(sectors);
        long count = Math.Min(sectors - start, random.Next(1, 64));
        Log.Add($"trim {volume} {start * Sector} +{count * Sector}");
        using var device = Pool.OpenVolume(volume);
        await device.TrimAsync(start * Sector, count * Sector);
        Array.Clear(bytes, (int)(start * Sector), (int)(count * Sector));
    }

    private async Task RollbackAsync(string volume, Random random)
    {
        if (PickSnapshot(volume, random) is not { } target)
            return;
        var list = _snapshots[volume];
        int index = list.FindIndex(s => s.Name == target);
        var newer = list.Skip(index + 1).Select(s => s.Name).ToArray();
        bool destroy = random.Next(2) == 0;
        Log.Add($"rollback {volume}@{target}{(destroy ? " --destroy-newer" : "")}");
        if ((newer.Length > 0 && !destroy) || newer.Any(s => HasClones(volume, s)))
        {
            await Assert.ThrowsAsync<PoolConfigurationException>(() => Pool.RollbackAsync(volume, target, destroy));
            return;
        }
        await Pool.RollbackAsync(volume, target, destroy);
        list.RemoveRange(index + 1, list.Count - index - 1);
        _volumes[volume] = (byte[])list[index].Bytes.Clone();
    }

    private string? PickSnapshot(string volume, Random random)
    {
        var list = _snapshots[volume];
        return list.Count == 0 ? null : list[random.Next(list.Count)].Name;
    }

    private bool HasClones(string volume, string snapshot) => _cloneOf.ContainsValue($"{volume}@{snapshot}");

    /// <summary>Null when every volume and snapshot of the pool reads as the reference and space adds up; else what differs.</summary>
    public async Task<string?> CheckAsync()
    {
        var listed = Pool.ListVolumes().Select(v => v.Name).Order(StringComparer.Ordinal).ToArray();
        if (!listed.SequenceEqual(_volumes.Keys.Order(StringComparer.Ordinal)))
            return $"volumes [{string.Join(",", listed)}] but expected [{string.Join(",", _volumes.Keys.Order(StringComparer.Ordinal))}]";
        foreach (var (name, expected) in _volumes)
        {
            using var device = Pool.OpenVolume(name);
            if (await DiffAsync(device, expected) is { } diff)
                return $"volume {name}: {diff}";
            var snapshots = Pool.ListSnapshots(name).Select(s => s.Name).ToArray();
            if (!snapshots.SequenceEqual(_snapshots[name].Select(s => s.Name)))
                return $"volume {name} has snapshots [{string.Join(",", snapshots)}], expected [{string.Join(",", _snapshots[name].Select(s => s.Name))}]";
            foreach (var (snapshot, bytes) in _snapshots[name])
            {
                using var view = Pool.OpenSnapshot(name, snapshot);
                if (await DiffAsync(view, bytes) is { } snapDiff)
                    return $"snapshot {name}@{snapshot}: {snapDiff}";
            }
        }
        return Pool.CheckSpace();
    }

    private static async Task<string?> DiffAsync(PoolVolume device, byte[] expected)
    {
        if (device.Capacity != expected.Length)
            return $"size {device.Capacity}, expected {expected.Length}";
        var got = new byte[expected.Length];
        await device.ReadAsync(0, got);
        int at = got.AsSpan().CommonPrefixLength(expected);
        return at == expected.Length ? null : $"differs at byte {at} (block {at / 4096})";
    }
}
