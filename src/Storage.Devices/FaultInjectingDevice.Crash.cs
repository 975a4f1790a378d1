namespace Storage.Devices;

public sealed partial class FaultInjectingDevice
{
    /// <summary>
    /// Power loss. From the moment this is called, every call (new or in flight) throws <see cref="BlockDeviceException"/>
    /// ("device crashed") until <see cref="Restart"/>. Waits for a flush, FUA write, trim or bit rot already writing to
    /// <see cref="Inner"/>, then drops or tears the un-flushed sectors as <paramref name="mode"/> says, writes the
    /// survivors to <see cref="Inner"/> and flushes it. When the task completes, <see cref="Inner"/> holds the
    /// post-crash content and nothing is un-flushed. Crashing a crashed device changes nothing.
    /// </summary>
    /// <exception cref="BlockDeviceException">The inner device failed while the survivors were written.</exception>
    public async ValueTask CrashAsync(CrashMode mode)
    {
        if (mode is not (CrashMode.DropUnflushed or CrashMode.TearUnflushed))
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "Unknown crash mode.");
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        lock (_lock)
        {
            _crashed = true;
            _crashes++;
        }
        await _innerWrites.WaitAsync().ConfigureAwait(false);
        try
        {
            var survivors = new List<(long Sector, ReadOnlyMemory<byte> Data)>();
            lock (_lock)
            {
                if (mode == CrashMode.TearUnflushed)
                {
                    // In sector order, so that the choices depend on the seed and the writes, not on hash order.
                    long[] sectors = [.. _unflushed.Keys];
                    Array.Sort(sectors);
                    foreach (long sector in sectors)
                    {
                        var versions = _unflushed[sector];
                        int pick = _random.Next(versions.Count + 1);
                        if (pick > 0)
                            survivors.Add((sector, versions[pick - 1].Data));
                    }
                }
                _unflushed.Clear();
            }
            if (survivors.Count > 0)
            {
                await WriteSectorsAsync(survivors, CancellationToken.None).ConfigureAwait(false);
                await _inner.FlushAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        finally
        {
            _innerWrites.Release();
        }
    }

    /// <summary>Power comes back after <see cref="CrashAsync"/>: calls work again and read what <see cref="Inner"/> holds. Configured faults stay.</summary>
    public void Restart()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        lock (_lock)
            _crashed = false;
    }

    /// <summary>
    /// Bit rot: flips one bit of the byte at <paramref name="offset"/> in what the device holds, so later reads return
    /// it flipped. If the byte's sector has un-flushed writes, the newest of them is changed (a flush then carries the
    /// damage to <see cref="Inner"/>, a crash may drop it); otherwise the sector on <see cref="Inner"/> is rewritten
    /// durably. Works whatever the device's state (failed, crashed), since it stands for damage, not for a call.
    /// </summary>
    /// <param name="offset">Byte to damage; any byte of the device.</param>
    /// <param name="bit">Bit to flip, 0 (least significant) to 7; -1 picks one with the seeded random generator.</param>
    /// <param name="cancellationToken">Cancels the wait for the inner device.</param>
    public async ValueTask CorruptAtAsync(long offset, int bit = -1, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(offset, Capacity);
        ArgumentOutOfRangeException.ThrowIfLessThan(bit, -1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bit, 7);
        long sectorOffset = offset - offset % SectorSize;
        int at = (int)(offset - sectorOffset);
        await _innerWrites.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            byte mask;
            lock (_lock)
            {
                mask = (byte)(1 << (bit >= 0 ? bit : _random.Next(8)));
                if (_unflushed.TryGetValue(sectorOffset / SectorSize, out var versions))
                {
                    byte[] damaged = versions[^1].Data.ToArray();
                    damaged[at] ^= mask;
                    versions[^1] = versions[^1] with { Data = damaged };
                    return;
                }
            }
            byte[] sector = new byte[SectorSize];
            await _inner.ReadAsync(sectorOffset, sector, cancellationToken).ConfigureAwait(false);
            sector[at] ^= mask;
            await _inner.WriteAsync(sectorOffset, sector, forceUnitAccess: true, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _innerWrites.Release();
        }
    }
}
