namespace Storage.Consensus;

/// <summary>
/// An in-memory <see cref="ILogDirectory"/> that injects disk faults for tests: appended bytes stay
/// volatile until synced, a crash keeps only a random prefix of them (a torn write), and a record can be
/// corrupted or the whole directory wiped.
/// </summary>
public sealed class MemoryLogDirectory : ILogDirectory
{
    private sealed class MemFile
    {
        public readonly List<byte> Durable = [];
        public readonly List<byte> Volatile = [];
    }

    private readonly Dictionary<string, MemFile> _files = [];

    /// <summary>Bytes appended but not yet synced, over all files.</summary>
    public int UnsyncedBytes => _files.Values.Sum(f => f.Volatile.Count);

    /// <summary>The names of the files present.</summary>
    public IEnumerable<string> Files => _files.Keys.Order(StringComparer.Ordinal);

    /// <inheritdoc />
    public byte[]? ReadAll(string name)
    {
        if (!_files.TryGetValue(name, out var f))
            return null;
        return [.. f.Durable, .. f.Volatile];
    }

    /// <summary>Only the bytes of <paramref name="name"/> that have been synced, or null when absent.</summary>
    public byte[]? ReadDurable(string name) => _files.TryGetValue(name, out var f) ? [.. f.Durable] : null;

    /// <inheritdoc />
    public ILogFile OpenAppend(string name)
    {
        if (!_files.TryGetValue(name, out var f))
            _files[name] = f = new MemFile();
        return new Handle(f);
    }

    /// <inheritdoc />
    public void WriteAtomic(string name, ReadOnlySpan<byte> data)
    {
        var f = new MemFile();
        f.Durable.AddRange(data.ToArray());
        _files[name] = f;
    }

    /// <inheritdoc />
    public void Truncate(string name, long length)
    {
        var f = _files[name];
        var all = ReadAll(name)!;
        f.Durable.Clear();
        f.Volatile.Clear();
        f.Durable.AddRange(all.AsSpan(0, (int)length).ToArray());
    }

    /// <inheritdoc />
    public void Delete(string name) => _files.Remove(name);

    /// <summary>
    /// A power cut: of every file's unsynced bytes only a prefix of random length survives.
    /// </summary>
    /// <returns>How many unsynced bytes were lost.</returns>
    public int Crash(Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        int lost = 0;
        foreach (var f in _files.Values)
        {
            int keep = random.Next(f.Volatile.Count + 1);
            lost += f.Volatile.Count - keep;
            f.Durable.AddRange(f.Volatile.Take(keep));
            f.Volatile.Clear();
        }
        return lost;
    }

    /// <summary>The disk is replaced: every file is gone.</summary>
    public void Wipe() => _files.Clear();

    /// <summary>Flips one bit of the durable bytes of <paramref name="name"/> in [<paramref name="from"/>, <paramref name="to"/>).</summary>
    /// <returns>False when the file is absent or the range empty.</returns>
    public bool FlipBit(string name, int from, int to, Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        if (!_files.TryGetValue(name, out var f))
            return false;
        to = Math.Min(to, f.Durable.Count);
        if (from >= to)
            return false;
        int at = random.Next(from, to);
        f.Durable[at] ^= (byte)(1 << random.Next(8));
        return true;
    }

    private sealed class Handle(MemFile file) : ILogFile
    {
        public void Append(ReadOnlySpan<byte> data) => file.Volatile.AddRange(data.ToArray());

        public void Sync()
        {
            file.Durable.AddRange(file.Volatile);
            file.Volatile.Clear();
        }

        public void Dispose()
        {
        }
    }
}
