using System.Buffers;

namespace Storage.Devices;

public sealed partial class FaultInjectingDevice
{
    // The write cache: per sector, the un-flushed versions oldest first (a crash may keep any one of them); reads
    // return the newest. Guarded by _lock.
    private readonly Dictionary<long, List<PendingSector>> _unflushed = [];
    private long _sequence;

    /// <summary>One un-flushed write's bytes for one sector; <see cref="Sequence"/> orders the writes.</summary>
    private readonly record struct PendingSector(long Sequence, ReadOnlyMemory<byte> Data);

    /// <inheritdoc />
    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _reads);
        Interlocked.Add(ref _bytesRead, buffer.Length);
        long crashes = Enter(offset, buffer.Length);
        await DelayAsync(cancellationToken).ConfigureAwait(false);
        bool[]? cached;
        lock (_lock)
        {
            Recheck(crashes, offset, buffer.Length);
            ThrowIfFaulty(_badReads, _readErrorRate, offset, buffer.Length, "read");
            cached = CopyUnflushed(offset, buffer.Span);
        }
        // A sector missing from the overlay now was flushed before its entry was removed, so the inner device
        // has it (or something newer): no completed write can be missed.
        if (cached is null)
        {
            await _inner.ReadAsync(offset, buffer, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            for (int first = 0; first < cached.Length;)
            {
                int end = first;
                while (end < cached.Length && !cached[end])
                    end++;
                if (end > first)
                    await _inner.ReadAsync(offset + (long)first * SectorSize, buffer[(first * SectorSize)..(end * SectorSize)], cancellationToken).ConfigureAwait(false);
                first = end + 1;
            }
        }
        lock (_lock)
            Recheck(crashes, offset, buffer.Length);
    }

    /// <inheritdoc />
    protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _writes);
        Interlocked.Add(ref _bytesWritten, buffer.Length);
        long crashes = Enter(offset, buffer.Length);
        await DelayAsync(cancellationToken).ConfigureAwait(false);
        int sectors = buffer.Length / SectorSize;
        long firstSector = offset / SectorSize;
        if (!forceUnitAccess)
        {
            byte[] copy = buffer.ToArray();
            lock (_lock)
            {
                Recheck(crashes, offset, buffer.Length);
                ThrowIfFaulty(_badWrites, _writeErrorRate, offset, buffer.Length, "write");
                bool[]? reached = Tear(sectors);
                long sequence = ++_sequence;
                for (int i = 0; i < sectors; i++)
                {
                    if (reached is null || reached[i])
                        AddUnflushed(firstSector + i, new PendingSector(sequence, copy.AsMemory(i * SectorSize, SectorSize)));
                }
                if (reached is not null)
                    throw Torn(offset, buffer.Length, reached);
            }
            return;
        }

        await _innerWrites.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            bool[]? reached;
            long sequence;
            lock (_lock)
            {
                Recheck(crashes, offset, buffer.Length);
                ThrowIfFaulty(_badWrites, _writeErrorRate, offset, buffer.Length, "write");
                reached = Tear(sectors);
                sequence = ++_sequence;
            }
            if (reached is null)
            {
                await _inner.WriteAsync(offset, buffer, forceUnitAccess: true, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                for (int first = 0; first < sectors;)
                {
                    int end = first;
                    while (end < sectors && reached[end])
                        end++;
                    if (end > first)
                        await _inner.WriteAsync(offset + (long)first * SectorSize, buffer[(first * SectorSize)..(end * SectorSize)], forceUnitAccess: true, cancellationToken).ConfigureAwait(false);
                    first = end + 1;
                }
            }
            lock (_lock)
            {
                for (int i = 0; i < sectors; i++)
                {
                    if (reached is null || reached[i])
                        Supersede(firstSector + i, sequence);
                }
                Recheck(crashes, offset, buffer.Length);
                if (reached is not null)
                    throw Torn(offset, buffer.Length, reached);
            }
        }
        finally
        {
            _innerWrites.Release();
        }
    }

    /// <inheritdoc />
    protected override async ValueTask FlushCoreAsync(CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _flushes);
        long crashes = Enter(0, 0);
        await DelayAsync(cancellationToken).ConfigureAwait(false);
        await _innerWrites.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            List<(long Sector, ReadOnlyMemory<byte> Data)> newest;
            long upTo;
            lock (_lock)
            {
                Recheck(crashes, 0, 0);
                if (_failFlushes)
                    throw Injected(0, 0, "injected flush error");
                upTo = _sequence;
                newest = new(_unflushed.Count);
                foreach (var (sector, versions) in _unflushed)
                    newest.Add((sector, versions[^1].Data));
            }
            await WriteSectorsAsync(newest, cancellationToken).ConfigureAwait(false);
            await _inner.FlushAsync(cancellationToken).ConfigureAwait(false);
            lock (_lock)
            {
                // Versions written during the flush (sequence > upTo) stay un-flushed.
                foreach (var (sector, _) in newest)
                    Supersede(sector, upTo + 1);
                Recheck(crashes, 0, 0);
            }
        }
        finally
        {
            _innerWrites.Release();
        }
    }

    /// <inheritdoc />
    protected override async ValueTask TrimCoreAsync(long offset, long length, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _trims);
        long crashes = Enter(offset, length);
        await DelayAsync(cancellationToken).ConfigureAwait(false);
        await _innerWrites.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            long sequence;
            lock (_lock)
            {
                Recheck(crashes, offset, length);
                ThrowIfFaulty(_badWrites, 0, offset, length, "trim");
                sequence = ++_sequence;
            }
            await _inner.TrimAsync(offset, length, cancellationToken).ConfigureAwait(false);
            lock (_lock)
            {
                DiscardUnflushed(offset, length, sequence);
                Recheck(crashes, offset, length);
            }
        }
        finally
        {
            _innerWrites.Release();
        }
    }

    /// <summary>Copies the newest un-flushed bytes of the range into <paramref name="destination"/>; returns which sectors it filled, or null for none.</summary>
    private bool[]? CopyUnflushed(long offset, Span<byte> destination)
    {
        if (_unflushed.Count == 0)
            return null;
        int sectors = destination.Length / SectorSize;
        long firstSector = offset / SectorSize;
        bool[]? cached = null;
        for (int i = 0; i < sectors; i++)
        {
            if (_unflushed.TryGetValue(firstSector + i, out var versions))
            {
                versions[^1].Data.Span.CopyTo(destination.Slice(i * SectorSize, SectorSize));
                (cached ??= new bool[sectors])[i] = true;
            }
        }
        return cached;
    }

    private void AddUnflushed(long sector, PendingSector version)
    {
        if (!_unflushed.TryGetValue(sector, out var versions))
            _unflushed.Add(sector, versions = new List<PendingSector>(1));
        versions.Add(version);
    }

    /// <summary>Forgets the sector's un-flushed versions older than <paramref name="sequence"/>: they are durable or overwritten durably.</summary>
    private void Supersede(long sector, long sequence)
    {
        if (!_unflushed.TryGetValue(sector, out var versions))
            return;
        int older = 0;
        while (older < versions.Count && versions[older].Sequence < sequence)
            older++;
        if (older == versions.Count)
            _unflushed.Remove(sector);
        else
            versions.RemoveRange(0, older);
    }

    private void DiscardUnflushed(long offset, long length, long sequence)
    {
        long first = offset / SectorSize, end = (offset + length) / SectorSize;
        if (end - first <= _unflushed.Count)
        {
            for (long sector = first; sector < end; sector++)
                Supersede(sector, sequence);
            return;
        }
        foreach (long sector in _unflushed.Keys.ToArray())
        {
            if (sector >= first && sector < end)
                Supersede(sector, sequence);
        }
    }

    /// <summary>Decides whether a write is torn; if so, which of its sectors reach the device. Caller holds the lock.</summary>
    private bool[]? Tear(int sectors)
    {
        if (_tornWriteRate == 0 || _random.NextDouble() >= _tornWriteRate)
            return null;
        var reached = new bool[sectors];
        for (int i = 0; i < sectors; i++)
            reached[i] = _random.Next(2) == 1;
        return reached;
    }

    private BlockDeviceException Torn(long offset, long length, bool[] reached) =>
        Injected(offset, length, $"torn write: {reached.Count(r => r)} of {reached.Length} sectors written");

    /// <summary>Writes whole sectors to the inner device (without FUA), coalescing adjacent ones.</summary>
    private async ValueTask WriteSectorsAsync(List<(long Sector, ReadOnlyMemory<byte> Data)> sectors, CancellationToken cancellationToken)
    {
        if (sectors.Count == 0)
            return;
        sectors.Sort((a, b) => a.Sector.CompareTo(b.Sector));
        const int MaxRunBytes = 1 << 20;
        int maxRun = MaxRunBytes / SectorSize;
        byte[] run = ArrayPool<byte>.Shared.Rent(MaxRunBytes);
        try
        {
            for (int i = 0; i < sectors.Count;)
            {
                int j = i + 1;
                while (j < sectors.Count && j - i < maxRun && sectors[j].Sector == sectors[j - 1].Sector + 1)
                    j++;
                for (int k = i; k < j; k++)
                    sectors[k].Data.Span.CopyTo(run.AsSpan((k - i) * SectorSize, SectorSize));
                await _inner.WriteAsync(sectors[i].Sector * SectorSize, run.AsMemory(0, (j - i) * SectorSize), forceUnitAccess: false, cancellationToken).ConfigureAwait(false);
                i = j;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(run);
        }
    }
}
