namespace Storage.Versioning;

/// <summary>
/// One map entry: where a logical block lives, the version (transaction group) it was written in and the CRC-32C of
/// its bytes, packed into 16 bytes. A tombstone says "zeros from this version on" and hides older entries and origins.
/// </summary>
internal readonly struct BlockEntry : IEquatable<BlockEntry>
{
    private const int PhysicalBits = 40;
    private const ulong PhysicalMask = (1UL << PhysicalBits) - 1;
    private const ulong AbsentCode = 0;
    private const ulong TombstoneCode = 1;

    /// <summary>The largest physical block number an entry can hold.</summary>
    public const long MaxPhysical = (long)PhysicalMask - 2;

    /// <summary>The largest version an entry can hold.</summary>
    public const long MaxVersion = (1L << 56) - 1;

    private readonly ulong _low;
    private readonly ulong _high;

    private BlockEntry(ulong code, long version, uint crc)
    {
        _low = code | ((ulong)version & 0xFF_FFFF) << PhysicalBits;
        _high = ((ulong)version >> 24) << 32 | crc;
    }

    /// <summary>An entry pointing at <paramref name="physical"/>.</summary>
    public static BlockEntry Mapped(long physical, long version, uint crc)
    {
        if ((ulong)physical > MaxPhysical)
            throw new ArgumentOutOfRangeException(nameof(physical), physical, "Physical block out of range.");
        return new((ulong)physical + 2, CheckVersion(version), crc);
    }

    /// <summary>A tombstone written at <paramref name="version"/>.</summary>
    public static BlockEntry Tombstone(long version) => new(TombstoneCode, CheckVersion(version), 0);

    /// <summary>True for the default value: no entry.</summary>
    public bool IsAbsent => (_low & PhysicalMask) == AbsentCode;

    public bool IsTombstone => (_low & PhysicalMask) == TombstoneCode;

    public bool IsMapped => (_low & PhysicalMask) > TombstoneCode;

    /// <summary>The physical block, or -1 for a tombstone or absent entry.</summary>
    public long Physical => IsMapped ? (long)(_low & PhysicalMask) - 2 : -1;

    public long Version => (long)(_low >> PhysicalBits | (_high >> 32) << 24);

    public uint Crc => (uint)_high;

    public bool Equals(BlockEntry other) => _low == other._low && _high == other._high;

    public override bool Equals(object? obj) => obj is BlockEntry other && Equals(other);

    public override int GetHashCode() => HashCode.Combine(_low, _high);

    public override string ToString() => IsAbsent ? "absent" : IsTombstone ? $"zeros@{Version}" : $"{Physical}@{Version}";

    private static long CheckVersion(long version)
    {
        if ((ulong)version > MaxVersion)
            throw new ArgumentOutOfRangeException(nameof(version), version, "Version out of range.");
        return version;
    }
}
