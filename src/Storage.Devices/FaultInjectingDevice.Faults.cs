namespace Storage.Devices;

public sealed partial class FaultInjectingDevice
{
    /// <summary>Chance (0 to 1) that a read fails; nothing is read.</summary>
    public double ReadErrorRate
    {
        get { lock (_lock) return _readErrorRate; }
        set { CheckRate(value); lock (_lock) _readErrorRate = value; }
    }

    /// <summary>Chance (0 to 1) that a write fails; nothing is written.</summary>
    public double WriteErrorRate
    {
        get { lock (_lock) return _writeErrorRate; }
        set { CheckRate(value); lock (_lock) _writeErrorRate = value; }
    }

    /// <summary>
    /// Chance (0 to 1) that a write is torn: a random subset of its sectors (possibly none or all) is written, with the
    /// write's usual durability (un-flushed, or durable for FUA), and the call throws <see cref="BlockDeviceException"/>.
    /// </summary>
    public double TornWriteRate
    {
        get { lock (_lock) return _tornWriteRate; }
        set { CheckRate(value); lock (_lock) _tornWriteRate = value; }
    }

    /// <summary>When set, every flush throws and leaves the un-flushed writes un-flushed.</summary>
    public bool FailFlushes
    {
        get { lock (_lock) return _failFlushes; }
        set { lock (_lock) _failFlushes = value; }
    }

    /// <summary>Delay added before every read, write, flush and trim.</summary>
    public TimeSpan Latency
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref _latencyTicks));
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.Zero);
            Interlocked.Exchange(ref _latencyTicks, value.Ticks);
        }
    }

    /// <summary>True after <see cref="FailAll"/> until <see cref="Heal"/>.</summary>
    public bool IsFailed
    {
        get { lock (_lock) return _failed; }
    }

    /// <summary>True after <see cref="CrashAsync"/> until <see cref="Restart"/>.</summary>
    public bool IsCrashed
    {
        get { lock (_lock) return _crashed; }
    }

    /// <summary>
    /// Makes every read that overlaps [<paramref name="offset"/>, <paramref name="offset"/> + <paramref name="length"/>)
    /// throw, until <see cref="ClearFaults"/>. The exception's range is the part of the request inside the bad range.
    /// </summary>
    /// <exception cref="ArgumentException">The range is not sector-aligned or not inside the device.</exception>
    public void FailReads(long offset, long length) => AddRange(_badReads, offset, length);

    /// <summary>
    /// Makes every write or trim that overlaps [<paramref name="offset"/>, <paramref name="offset"/> + <paramref name="length"/>)
    /// throw without writing anything, until <see cref="ClearFaults"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The range is not sector-aligned or not inside the device.</exception>
    public void FailWrites(long offset, long length) => AddRange(_badWrites, offset, length);

    /// <summary>
    /// Removes every configured fault: bad ranges, error and tear rates, flush failure and latency. Does not heal a
    /// dead disk (<see cref="Heal"/>), undo a crash (<see cref="Restart"/>) or repair bit rot.
    /// </summary>
    public void ClearFaults()
    {
        lock (_lock)
        {
            _badReads.Clear();
            _badWrites.Clear();
            _readErrorRate = _writeErrorRate = _tornWriteRate = 0;
            _failFlushes = false;
        }
        Interlocked.Exchange(ref _latencyTicks, 0);
    }

    /// <summary>The disk dies: every call throws <see cref="BlockDeviceException"/> ("device failed") until <see cref="Heal"/>. Un-flushed writes are kept.</summary>
    public void FailAll()
    {
        lock (_lock)
            _failed = true;
    }

    /// <summary>Undoes <see cref="FailAll"/>: the disk answers again, with the content it had.</summary>
    public void Heal()
    {
        lock (_lock)
            _failed = false;
    }

    /// <summary>Checks the device is up at the start of a call; returns the crash count, which <see cref="Recheck"/> compares.</summary>
    private long Enter(long offset, long length)
    {
        lock (_lock)
        {
            ThrowIfDown(offset, length);
            return _crashes;
        }
    }

    /// <summary>Throws if the device crashed (even if since restarted) or died after <see cref="Enter"/>. Caller holds the lock.</summary>
    private void Recheck(long crashes, long offset, long length)
    {
        if (_crashes != crashes)
            throw Injected(offset, length, "device crashed");
        ThrowIfDown(offset, length);
    }

    private void ThrowIfDown(long offset, long length)
    {
        if (_crashed)
            throw Injected(offset, length, "device crashed");
        if (_failed)
            throw Injected(offset, length, "device failed");
    }

    /// <summary>Throws for a bad range or a random error. Caller holds the lock.</summary>
    private void ThrowIfFaulty(List<(long Start, long End)> badRanges, double rate, long offset, long length, string operation)
    {
        foreach (var (start, end) in badRanges)
        {
            if (start < offset + length && offset < end)
            {
                long from = Math.Max(start, offset);
                throw Injected(from, Math.Min(end, offset + length) - from, $"injected {operation} error");
            }
        }
        if (rate > 0 && _random.NextDouble() < rate)
            throw Injected(offset, length, $"injected {operation} error");
    }

    private BlockDeviceException Injected(long offset, long length, string message)
    {
        Interlocked.Increment(ref _injectedErrors);
        return new BlockDeviceException(Name, offset, length, message);
    }

    private ValueTask DelayAsync(CancellationToken cancellationToken)
    {
        long ticks = Interlocked.Read(ref _latencyTicks);
        return ticks == 0 ? ValueTask.CompletedTask : new ValueTask(Task.Delay(TimeSpan.FromTicks(ticks), cancellationToken));
    }

    private void AddRange(List<(long Start, long End)> ranges, long offset, long length)
    {
        CheckRange(offset, length);
        lock (_lock)
            ranges.Add((offset, offset + length));
    }

    private static void CheckRate(double rate)
    {
        if (!(rate is >= 0 and <= 1))
            throw new ArgumentOutOfRangeException(nameof(rate), rate, "A rate is a probability from 0 to 1.");
    }
}
