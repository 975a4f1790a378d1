namespace Storage.Raid;

/// <summary>
/// The in-memory side of the write-intent bitmap (md's <c>--bitmap=internal</c>): one bit per region of
/// <see cref="RegionStripes"/> stripes, set and made durable before any member write in the region, cleared lazily
/// once the region has been idle across a flush of every member. <see cref="Enter"/> and <see cref="Exit"/> bracket
/// each write; they take a lock for a few instructions and allocate nothing. Durability is the caller's: it writes
/// <see cref="Snapshot"/> to every member and reports it with <see cref="Persisted"/>.
/// </summary>
internal sealed class WriteIntentBitmap
{
    private readonly Lock _gate = new();
    private readonly long[] _setAt;      // the change number that set the bit; 0 = clear
    private readonly int[] _pending;     // writes in progress in the region
    private readonly uint[] _generation; // +1 on every write that enters the region
    private long _changes;
    private long _persisted;

    public WriteIntentBitmap(long stripes, long regionStripes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(regionStripes, 1);
        RegionStripes = regionStripes;
        Regions = (int)((stripes + regionStripes - 1) / regionStripes);
        _setAt = new long[Regions];
        _pending = new int[Regions];
        _generation = new uint[Regions];
    }

    /// <summary>Stripes per region (the last region may be shorter).</summary>
    public long RegionStripes { get; }

    /// <summary>Bits in the bitmap.</summary>
    public int Regions { get; }

    /// <summary>Bytes of the on-disk bitmap: one bit per region, rounded up to whole 4 KiB blocks.</summary>
    public static int BytesFor(int regions) => ((regions + 7) / 8 + 4095) / 4096 * 4096;

    public int RegionOf(long stripe) => (int)(stripe / RegionStripes);

    /// <summary>Regions whose bit is set now.</summary>
    public int DirtyRegions
    {
        get
        {
            lock (_gate)
                return _setAt.Count(s => s != 0);
        }
    }

    /// <summary>
    /// A write enters <paramref name="region"/>. Returns 0 when its bit is durable already, else the change number a
    /// <see cref="Persisted"/> call must reach before the write may touch a member.
    /// </summary>
    public long Enter(int region)
    {
        lock (_gate)
        {
            _pending[region]++;
            _generation[region]++;
            if (_setAt[region] == 0)
                _setAt[region] = ++_changes;
            return _setAt[region] <= _persisted ? 0 : _setAt[region];
        }
    }

    /// <summary>The write entered with <see cref="Enter"/> finished (or failed).</summary>
    public void Exit(int region)
    {
        lock (_gate)
            _pending[region]--;
    }

    /// <summary>True once every change up to <paramref name="change"/> is durable.</summary>
    public bool IsPersisted(long change)
    {
        lock (_gate)
            return _persisted >= change;
    }

    /// <summary>The bits as they are now, little-endian bit order (region r is bit r % 8 of byte r / 8), and the change number they include.</summary>
    public long Snapshot(Span<byte> bits)
    {
        bits.Clear();
        lock (_gate)
        {
            for (int region = 0; region < Regions; region++)
            {
                if (_setAt[region] != 0)
                    bits[region >> 3] |= (byte)(1 << (region & 7));
            }
            return _changes;
        }
    }

    /// <summary>A snapshot that included changes up to <paramref name="change"/> is on every member.</summary>
    public void Persisted(long change)
    {
        lock (_gate)
            _persisted = Math.Max(_persisted, change);
    }

    /// <summary>Sets the bits of an on-disk bitmap (assembly: the union of every member's copy). They count as durable.</summary>
    public void Load(ReadOnlySpan<byte> bits)
    {
        lock (_gate)
        {
            for (int region = 0; region < Regions && (region >> 3) < bits.Length; region++)
            {
                if ((bits[region >> 3] & (1 << (region & 7))) != 0 && _setAt[region] == 0)
                    _setAt[region] = ++_changes;
            }
            _persisted = _changes;
        }
    }

    /// <summary>Set regions with no write in progress, and their generations: candidates for <see cref="Clear"/>.</summary>
    public List<(int Region, uint Generation)> Idle()
    {
        var idle = new List<(int, uint)>();
        lock (_gate)
        {
            for (int region = 0; region < Regions; region++)
            {
                if (_setAt[region] != 0 && _pending[region] == 0)
                    idle.Add((region, _generation[region]));
            }
        }
        return idle;
    }

    /// <summary>
    /// Clears the candidates no write has entered since <see cref="Idle"/> listed them (the caller flushed every member
    /// in between). Returns how many were cleared; the change is durable at the next persist (a lost clear is harmless).
    /// </summary>
    public int Clear(List<(int Region, uint Generation)> idle)
    {
        int cleared = 0;
        lock (_gate)
        {
            foreach (var (region, generation) in idle)
            {
                if (_pending[region] == 0 && _generation[region] == generation && _setAt[region] != 0)
                {
                    _setAt[region] = 0;
                    cleared++;
                }
            }
            if (cleared > 0)
                _changes++;
        }
        return cleared;
    }

    /// <summary>The set regions as stripe ranges [first, end), in order, adjacent regions merged.</summary>
    public List<(long First, long End)> DirtyStripes(long stripes)
    {
        var ranges = new List<(long, long)>();
        lock (_gate)
        {
            for (int region = 0; region < Regions; region++)
            {
                if (_setAt[region] == 0)
                    continue;
                long first = region * RegionStripes, end = Math.Min(stripes, first + RegionStripes);
                if (ranges.Count > 0 && ranges[^1].Item2 == first)
                    ranges[^1] = (ranges[^1].Item1, end);
                else
                    ranges.Add((first, end));
            }
        }
        return ranges;
    }

    /// <summary>True when <paramref name="stripe"/>'s region is set.</summary>
    public bool IsDirty(long stripe)
    {
        lock (_gate)
            return _setAt[RegionOf(stripe)] != 0;
    }
}
