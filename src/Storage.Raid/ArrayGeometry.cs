namespace Storage.Raid;

/// <summary>
/// The fixed shape of an array: level, member count, parity chunks per stripe, chunk size and where
/// data starts on each member. Every member holds <see cref="StripeCount"/> chunks after
/// <see cref="DataOffset"/>; a stripe is one chunk from every member at the same member offset.
/// </summary>
public sealed record ArrayGeometry
{
    /// <summary>Largest member count (the superblock's role table holds this many).</summary>
    public const int MaxMembers = 64;

    /// <summary>Smallest chunk size.</summary>
    public const int MinChunkSize = 4096;

    /// <summary>Largest chunk size.</summary>
    public const int MaxChunkSize = 16 << 20;

    /// <summary>Creates and validates a geometry.</summary>
    /// <exception cref="ArgumentException">The combination is not a valid array; the message says why.</exception>
    public ArrayGeometry(RaidLevel level, int memberCount, int parityCount, int chunkSize, long dataOffset, long memberDataSize)
    {
        Level = level;
        MemberCount = memberCount;
        ParityCount = parityCount;
        ChunkSize = chunkSize;
        DataOffset = dataOffset;
        MemberDataSize = memberDataSize;
        Validate();
    }

    /// <summary>The level.</summary>
    public RaidLevel Level { get; }

    /// <summary>Members that hold stripes (spares not counted).</summary>
    public int MemberCount { get; }

    /// <summary>Redundant chunks per stripe: 0 for RAID-0, n-1 for RAID-1, 1, 2, or m.</summary>
    public int ParityCount { get; }

    /// <summary>Bytes of one chunk: a power of two from 4 KiB to 16 MiB.</summary>
    public int ChunkSize { get; }

    /// <summary>Byte offset on every member where the first stripe starts (after superblocks and journal).</summary>
    public long DataOffset { get; }

    /// <summary>Bytes of stripe data on every member: a multiple of <see cref="ChunkSize"/>.</summary>
    public long MemberDataSize { get; }

    /// <summary>Data chunks per stripe (k).</summary>
    public int DataCount => MemberCount - ParityCount;

    /// <summary>Stripes in the array.</summary>
    public long StripeCount => MemberDataSize / ChunkSize;

    /// <summary>User-visible bytes of one stripe.</summary>
    public long StripeDataSize => (long)DataCount * ChunkSize;

    /// <summary>User-visible size of the array in bytes.</summary>
    public long Capacity => StripeCount * StripeDataSize;

    /// <summary>The redundancy each level gives for <paramref name="members"/> members (and <paramref name="parity"/> for Reed-Solomon).</summary>
    public static int ParityFor(RaidLevel level, int members, int parity) => level switch
    {
        RaidLevel.Raid0 => 0,
        RaidLevel.Raid1 => members - 1,
        RaidLevel.Raid5 => 1,
        RaidLevel.Raid6 => 2,
        RaidLevel.ReedSolomon => parity,
        _ => throw new ArgumentOutOfRangeException(nameof(level), level, "Unknown RAID level."),
    };

    /// <summary>Fewest members each level accepts.</summary>
    public static int MinMembers(RaidLevel level, int parity) => level switch
    {
        RaidLevel.Raid0 => 1,
        RaidLevel.Raid1 => 2,
        RaidLevel.Raid5 => 3,
        RaidLevel.Raid6 => 4,
        _ => parity + 1,
    };

    private void Validate()
    {
        if (!Enum.IsDefined(Level))
            throw new ArgumentException($"Unknown RAID level {(int)Level}.", nameof(Level));
        int min = MinMembers(Level, ParityCount);
        if (MemberCount < min || MemberCount > MaxMembers)
            throw new ArgumentException($"{Describe(Level, ParityCount)} needs {min} to {MaxMembers} members; got {MemberCount}.", nameof(MemberCount));
        if (Level == RaidLevel.ReedSolomon && (ParityCount < 1 || ParityCount >= MemberCount))
            throw new ArgumentException($"Reed-Solomon needs 1 to {MemberCount - 1} parity chunks with {MemberCount} members; got {ParityCount}.", nameof(ParityCount));
        if (ParityCount != ParityFor(Level, MemberCount, ParityCount))
            throw new ArgumentException($"{Describe(Level, ParityCount)} with {MemberCount} members has {ParityFor(Level, MemberCount, ParityCount)} parity chunks, not {ParityCount}.", nameof(ParityCount));
        if (ChunkSize < MinChunkSize || ChunkSize > MaxChunkSize || (ChunkSize & (ChunkSize - 1)) != 0)
            throw new ArgumentException($"Chunk size must be a power of two from 4 KiB to 16 MiB; got {ChunkSize} bytes.", nameof(ChunkSize));
        if (DataOffset < 0 || DataOffset % 4096 != 0)
            throw new ArgumentException($"Data offset must be a non-negative multiple of 4096; got {DataOffset}.", nameof(DataOffset));
        if (MemberDataSize < ChunkSize || MemberDataSize % ChunkSize != 0)
            throw new ArgumentException($"Each member needs room for at least one {ChunkSize}-byte chunk after the {DataOffset}-byte header; got {MemberDataSize} bytes.", nameof(MemberDataSize));
    }

    /// <summary>"RAID-6", "RS 10+4", … for messages.</summary>
    public static string Describe(RaidLevel level, int parity) => level switch
    {
        RaidLevel.Raid0 => "RAID-0",
        RaidLevel.Raid1 => "RAID-1",
        RaidLevel.Raid5 => "RAID-5",
        RaidLevel.Raid6 => "RAID-6",
        _ => $"Reed-Solomon with {parity} parity",
    };

    /// <inheritdoc />
    public override string ToString()
        => $"{Describe(Level, ParityCount)}, {MemberCount} members ({DataCount}+{ParityCount}), {ChunkSize / 1024} KiB chunks, {StripeCount} stripes";
}
