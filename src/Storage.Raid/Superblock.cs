using Storage.Native;
using System.Buffers.Binary;
using System.Text;

namespace Storage.Raid;

/// <summary>
/// The label every member carries, twice: copies at member offsets 0 and 4096, written alternately (copy
/// = sequence mod 2) so a torn write leaves the other intact. 4096 bytes, little-endian, CRC-32C in the
/// last four bytes. The copy with the highest sequence and a good checksum is current.
/// <code>
///    0 magic "STRGRAID"   8 format u32   12 reserved u32   16 array id (16)   32 member id (16)
///   48 sequence u64      56 events u64   64 level u32      68 members u32     72 parity u32
///   76 chunk u32         80 data offset u64                88 member data size u64
///   96 journal offset u64  104 journal slots u32  108 role i32 (-1 spare)  112 flags u32
///  116 name length u16  118 name (UTF-8, 64)   184 bad-block count u32
///  192 journal device id (16; zero: the journal, if any, is in every member; format 2 when set)
///  208 bitmap offset u64   216 bitmap bytes u32 (0: no write-intent bitmap; format 2 when set)   224 stripes per bitmap region u64
///  256 roles: 64 × { member id (16), state u32, flags u32 (1: resync from the bitmap), rebuild checkpoint u64 }
/// 2304 bad blocks: 96 × { array offset u64, length u64 }                 4092 CRC-32C u32
/// </code>
/// </summary>
public sealed record Superblock
{
    /// <summary>Bytes of one copy.</summary>
    public const int Size = 4096;

    /// <summary>
    /// Newest format this code reads; a higher one is refused (written by a newer version). Format 1 is written unless
    /// the journal is on its own device (format 2), so that a build that knows only in-member journals never takes a
    /// journal device's array for one without a journal.
    /// </summary>
    public const uint CurrentFormat = 2;

    /// <summary>The <see cref="Role"/> of a separate journal device.</summary>
    public const int JournalRole = -2;

    /// <summary>Longest array name in UTF-8 bytes.</summary>
    public const int MaxNameBytes = 64;

    /// <summary>Bad-block entries the superblock can hold.</summary>
    public const int MaxBadBlocks = 96;

    internal const ulong Magic = 0x4449_4152_4752_5453;   // "STRGRAID"
    private const int RolesAt = 256;
    private const int BadBlocksAt = RolesAt + ArrayGeometry.MaxMembers * 32;

    /// <summary>Array identity shared by all members.</summary>
    public required Guid ArrayId { get; init; }

    /// <summary>This member's identity.</summary>
    public required Guid MemberId { get; init; }

    /// <summary>Which copy is newest; +1 on every write.</summary>
    public required ulong Sequence { get; init; }

    /// <summary>Version of the array state; +1 on every state change; the highest wins at assembly.</summary>
    public required ulong Events { get; init; }

    /// <summary>The array's shape.</summary>
    public required ArrayGeometry Geometry { get; init; }

    /// <summary>Where the journal ring starts on each member.</summary>
    public required long JournalOffset { get; init; }

    /// <summary>Journal ring slots on each member.</summary>
    public required int JournalSlots { get; init; }

    /// <summary>
    /// The separate journal device's id (its <see cref="MemberId"/>), or empty when the journal is in the members. With
    /// one, <see cref="JournalOffset"/> and <see cref="JournalSlots"/> describe the ring on that device.
    /// </summary>
    public Guid JournalDevice { get; init; }

    /// <summary>Where the write-intent bitmap starts on every member (0 with no bitmap).</summary>
    public long BitmapOffset { get; init; }

    /// <summary>Bytes of the write-intent bitmap on every member; 0 = the array keeps none.</summary>
    public int BitmapBytes { get; init; }

    /// <summary>Stripes covered by one bit of the bitmap.</summary>
    public long BitmapRegionStripes { get; init; }

    /// <summary>This member's role, -1 for a spare, or <see cref="JournalRole"/> for the journal device.</summary>
    public required int Role { get; init; }

    /// <summary>True when the array was stopped cleanly.</summary>
    public required bool Clean { get; init; }

    /// <summary>Array name.</summary>
    public required string Name { get; init; }

    /// <summary>State of every role.</summary>
    public required IReadOnlyList<RoleRecord> Roles { get; init; }

    /// <summary>Array ranges known unreadable (lost in a degraded read error).</summary>
    public required IReadOnlyList<(long Offset, long Length)> BadBlocks { get; init; }

    /// <summary>Serialises one copy.</summary>
    public void WriteTo(Span<byte> block)
    {
        block = block[..Size];
        block.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(block, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(block[8..], JournalDevice == Guid.Empty && BitmapBytes == 0 ? 1u : 2u);
        ArrayId.TryWriteBytes(block[16..]);
        MemberId.TryWriteBytes(block[32..]);
        BinaryPrimitives.WriteUInt64LittleEndian(block[48..], Sequence);
        BinaryPrimitives.WriteUInt64LittleEndian(block[56..], Events);
        BinaryPrimitives.WriteUInt32LittleEndian(block[64..], (uint)Geometry.Level);
        BinaryPrimitives.WriteUInt32LittleEndian(block[68..], (uint)Geometry.MemberCount);
        BinaryPrimitives.WriteUInt32LittleEndian(block[72..], (uint)Geometry.ParityCount);
        BinaryPrimitives.WriteUInt32LittleEndian(block[76..], (uint)Geometry.ChunkSize);
        BinaryPrimitives.WriteInt64LittleEndian(block[80..], Geometry.DataOffset);
        BinaryPrimitives.WriteInt64LittleEndian(block[88..], Geometry.MemberDataSize);
        BinaryPrimitives.WriteInt64LittleEndian(block[96..], JournalOffset);
        BinaryPrimitives.WriteInt32LittleEndian(block[104..], JournalSlots);
        BinaryPrimitives.WriteInt32LittleEndian(block[108..], Role);
        BinaryPrimitives.WriteUInt32LittleEndian(block[112..], Clean ? 1u : 0u);
        int nameBytes = Encoding.UTF8.GetBytes(Name, block.Slice(118, MaxNameBytes));
        BinaryPrimitives.WriteUInt16LittleEndian(block[116..], (ushort)nameBytes);
        BinaryPrimitives.WriteInt32LittleEndian(block[184..], BadBlocks.Count);
        JournalDevice.TryWriteBytes(block[192..]);
        BinaryPrimitives.WriteInt64LittleEndian(block[208..], BitmapOffset);
        BinaryPrimitives.WriteInt32LittleEndian(block[216..], BitmapBytes);
        BinaryPrimitives.WriteInt64LittleEndian(block[224..], BitmapRegionStripes);
        for (int i = 0; i < Roles.Count; i++)
        {
            var entry = block.Slice(RolesAt + i * 32, 32);
            Roles[i].MemberId.TryWriteBytes(entry);
            BinaryPrimitives.WriteUInt32LittleEndian(entry[16..], (uint)Roles[i].State);
            BinaryPrimitives.WriteUInt32LittleEndian(entry[20..], Roles[i].ResyncFromBitmap ? 1u : 0u);
            BinaryPrimitives.WriteInt64LittleEndian(entry[24..], Roles[i].RebuildCheckpoint);
        }
        for (int i = 0; i < BadBlocks.Count; i++)
        {
            BinaryPrimitives.WriteInt64LittleEndian(block[(BadBlocksAt + i * 16)..], BadBlocks[i].Offset);
            BinaryPrimitives.WriteInt64LittleEndian(block[(BadBlocksAt + i * 16 + 8)..], BadBlocks[i].Length);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(block[(Size - 4)..], Crc32C.Compute(block[..(Size - 4)]));
    }

    /// <summary>What a 4096-byte block holds.</summary>
    public enum ParseResult
    {
        /// <summary>A valid superblock of a format this code reads.</summary>
        Valid,

        /// <summary>Not our magic.</summary>
        NotOurs,

        /// <summary>Our magic but the checksum fails (torn or damaged copy).</summary>
        Damaged,

        /// <summary>Our magic and checksum, written by a newer format.</summary>
        NewerFormat,
    }

    /// <summary>Parses one copy; <paramref name="superblock"/> is set only for <see cref="ParseResult.Valid"/>.</summary>
    public static ParseResult TryParse(ReadOnlySpan<byte> block, out Superblock? superblock)
    {
        superblock = null;
        if (block.Length < Size || BinaryPrimitives.ReadUInt64LittleEndian(block) != Magic)
            return ParseResult.NotOurs;
        block = block[..Size];
        if (BinaryPrimitives.ReadUInt32LittleEndian(block[(Size - 4)..]) != Crc32C.Compute(block[..(Size - 4)]))
            return ParseResult.Damaged;
        if (BinaryPrimitives.ReadUInt32LittleEndian(block[8..]) > CurrentFormat)
            return ParseResult.NewerFormat;
        ArrayGeometry geometry;
        try
        {
            geometry = new ArrayGeometry(
                (RaidLevel)BinaryPrimitives.ReadUInt32LittleEndian(block[64..]),
                (int)BinaryPrimitives.ReadUInt32LittleEndian(block[68..]),
                (int)BinaryPrimitives.ReadUInt32LittleEndian(block[72..]),
                (int)BinaryPrimitives.ReadUInt32LittleEndian(block[76..]),
                BinaryPrimitives.ReadInt64LittleEndian(block[80..]),
                BinaryPrimitives.ReadInt64LittleEndian(block[88..]));
        }
        catch (ArgumentException)
        {
            return ParseResult.Damaged;
        }
        var roles = new RoleRecord[geometry.MemberCount];
        for (int i = 0; i < roles.Length; i++)
        {
            var entry = block.Slice(RolesAt + i * 32, 32);
            roles[i] = new RoleRecord(new Guid(entry[..16]), (MemberState)BinaryPrimitives.ReadUInt32LittleEndian(entry[16..]), BinaryPrimitives.ReadInt64LittleEndian(entry[24..]))
            {
                ResyncFromBitmap = (BinaryPrimitives.ReadUInt32LittleEndian(entry[20..]) & 1) != 0,
            };
        }
        int badCount = Math.Clamp(BinaryPrimitives.ReadInt32LittleEndian(block[184..]), 0, MaxBadBlocks);
        var bad = new (long, long)[badCount];
        for (int i = 0; i < badCount; i++)
            bad[i] = (BinaryPrimitives.ReadInt64LittleEndian(block[(BadBlocksAt + i * 16)..]), BinaryPrimitives.ReadInt64LittleEndian(block[(BadBlocksAt + i * 16 + 8)..]));
        int nameLength = Math.Min((int)BinaryPrimitives.ReadUInt16LittleEndian(block[116..]), MaxNameBytes);
        superblock = new Superblock
        {
            ArrayId = new Guid(block.Slice(16, 16)),
            MemberId = new Guid(block.Slice(32, 16)),
            Sequence = BinaryPrimitives.ReadUInt64LittleEndian(block[48..]),
            Events = BinaryPrimitives.ReadUInt64LittleEndian(block[56..]),
            Geometry = geometry,
            JournalOffset = BinaryPrimitives.ReadInt64LittleEndian(block[96..]),
            JournalSlots = BinaryPrimitives.ReadInt32LittleEndian(block[104..]),
            JournalDevice = new Guid(block.Slice(192, 16)),
            BitmapOffset = BinaryPrimitives.ReadInt64LittleEndian(block[208..]),
            BitmapBytes = BinaryPrimitives.ReadInt32LittleEndian(block[216..]),
            BitmapRegionStripes = BinaryPrimitives.ReadInt64LittleEndian(block[224..]),
            Role = BinaryPrimitives.ReadInt32LittleEndian(block[108..]),
            Clean = BinaryPrimitives.ReadUInt32LittleEndian(block[112..]) != 0,
            Name = Encoding.UTF8.GetString(block.Slice(118, nameLength)),
            Roles = roles,
            BadBlocks = bad,
        };
        return ParseResult.Valid;
    }
}
