using System.Buffers.Binary;
using System.Text;
using Storage.Native;

namespace Storage.Versioning;

/// <summary>
/// The pool's root, kept in two 4 KiB copies at the start of the device and written alternately (the valid copy with
/// the higher sequence wins, so a torn superblock write leaves the other). It fixes the layout and points at the last
/// checkpoint and where the intent log after it starts.
/// </summary>
internal sealed record PoolSuperblock
{
    public const int Size = 4096;
    public const int Copies = 2;
    public const uint Format = 1;
    private const ulong Magic = 0x4c4f4f50524f5453; // "STORPOOL"
    private const int NameBytes = 1 + Names.MaxLength;   // length byte, then the name (ASCII, Names.Check)

    public required ulong PoolId { get; init; }
    public required string Name { get; init; }
    public required long Sequence { get; init; }
    public required int BlockSize { get; init; }
    public required int SegmentBlocks { get; init; }
    public required long LogOffset { get; init; }
    public required long LogLength { get; init; }
    public required long DataOffset { get; init; }
    public required long BlockCount { get; init; }
    public required long Created { get; init; }

    /// <summary>The transaction group the checkpoint holds the state after (0: empty pool).</summary>
    public long CheckpointTxg { get; init; }

    /// <summary>First block of the checkpoint chain, or -1.</summary>
    public long CheckpointBlock { get; init; } = -1;
    public long CheckpointBlocks { get; init; }
    public long CheckpointBytes { get; init; }
    public uint CheckpointCrc { get; init; }

    /// <summary>Offset within the log ring of the first record after the checkpoint.</summary>
    public long LogStart { get; init; }

    public byte[] Encode()
    {
        var b = new byte[Size];
        var s = b.AsSpan();
        BinaryPrimitives.WriteUInt64LittleEndian(s, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(s[8..], Format);
        BinaryPrimitives.WriteUInt64LittleEndian(s[16..], PoolId);
        BinaryPrimitives.WriteInt64LittleEndian(s[24..], Sequence);
        BinaryPrimitives.WriteInt32LittleEndian(s[32..], BlockSize);
        BinaryPrimitives.WriteInt32LittleEndian(s[36..], SegmentBlocks);
        BinaryPrimitives.WriteInt64LittleEndian(s[40..], LogOffset);
        BinaryPrimitives.WriteInt64LittleEndian(s[48..], LogLength);
        BinaryPrimitives.WriteInt64LittleEndian(s[56..], DataOffset);
        BinaryPrimitives.WriteInt64LittleEndian(s[64..], BlockCount);
        BinaryPrimitives.WriteInt64LittleEndian(s[72..], Created);
        BinaryPrimitives.WriteInt64LittleEndian(s[80..], CheckpointTxg);
        BinaryPrimitives.WriteInt64LittleEndian(s[88..], CheckpointBlock);
        BinaryPrimitives.WriteInt64LittleEndian(s[96..], CheckpointBlocks);
        BinaryPrimitives.WriteInt64LittleEndian(s[104..], CheckpointBytes);
        BinaryPrimitives.WriteUInt32LittleEndian(s[112..], CheckpointCrc);
        BinaryPrimitives.WriteInt64LittleEndian(s[120..], LogStart);
        int length = Encoding.UTF8.GetBytes(Name, s.Slice(129, NameBytes - 1));
        s[128] = (byte)length;
        BinaryPrimitives.WriteUInt32LittleEndian(s[12..], Crc32C.Compute(s[16..]));
        return b;
    }

    /// <summary>True when <paramref name="b"/> starts with the pool magic (valid or not).</summary>
    public static bool HasMagic(ReadOnlySpan<byte> b) => b.Length >= 8 && BinaryPrimitives.ReadUInt64LittleEndian(b) == Magic;

    /// <summary>The superblock in <paramref name="b"/>, or null when it is not an intact one.</summary>
    /// <exception cref="PoolConfigurationException">An intact superblock of a newer format.</exception>
    public static PoolSuperblock? TryDecode(ReadOnlySpan<byte> b)
    {
        if (!HasMagic(b) || BinaryPrimitives.ReadUInt32LittleEndian(b[12..]) != Crc32C.Compute(b[16..Size]))
            return null;
        uint format = BinaryPrimitives.ReadUInt32LittleEndian(b[8..]);
        if (format > Format)
            throw new PoolConfigurationException($"The pool on this device has format {format}; this build reads format {Format} and older. Use a newer storage.");
        int nameLength = Math.Min((int)b[128], NameBytes - 1);
        return new PoolSuperblock
        {
            PoolId = BinaryPrimitives.ReadUInt64LittleEndian(b[16..]),
            Sequence = BinaryPrimitives.ReadInt64LittleEndian(b[24..]),
            BlockSize = BinaryPrimitives.ReadInt32LittleEndian(b[32..]),
            SegmentBlocks = BinaryPrimitives.ReadInt32LittleEndian(b[36..]),
            LogOffset = BinaryPrimitives.ReadInt64LittleEndian(b[40..]),
            LogLength = BinaryPrimitives.ReadInt64LittleEndian(b[48..]),
            DataOffset = BinaryPrimitives.ReadInt64LittleEndian(b[56..]),
            BlockCount = BinaryPrimitives.ReadInt64LittleEndian(b[64..]),
            Created = BinaryPrimitives.ReadInt64LittleEndian(b[72..]),
            CheckpointTxg = BinaryPrimitives.ReadInt64LittleEndian(b[80..]),
            CheckpointBlock = BinaryPrimitives.ReadInt64LittleEndian(b[88..]),
            CheckpointBlocks = BinaryPrimitives.ReadInt64LittleEndian(b[96..]),
            CheckpointBytes = BinaryPrimitives.ReadInt64LittleEndian(b[104..]),
            CheckpointCrc = BinaryPrimitives.ReadUInt32LittleEndian(b[112..]),
            LogStart = BinaryPrimitives.ReadInt64LittleEndian(b[120..]),
            Name = Encoding.UTF8.GetString(b.Slice(129, nameLength)),
        };
    }
}
