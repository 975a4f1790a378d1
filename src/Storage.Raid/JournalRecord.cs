using System.Buffers.Binary;

namespace Storage.Raid;

/// <summary>
/// The header of one member's part of a journal record, in the first 4096 bytes of a journal slot;
/// the part's bytes follow it. Little-endian:
/// <code>
///  0 magic "STRGJRNL"  8 array id (16)  24 sequence u64  32 stripe u64  40 offset in chunk u32
/// 44 length u32       48 role u32      52 reserved     56 roles written (bit mask) u64
/// 64 CRC-32C of the part's bytes u32   68 CRC-32C of bytes 0..67 u32
/// </code>
/// </summary>
internal readonly record struct JournalRecord(Guid ArrayId, long Sequence, long Stripe, int Offset, int Length, int Role, ulong Roles, uint DataCrc)
{
    public const int HeaderSize = 4096;
    private const ulong Magic = 0x4C4E_524A_4752_5453;   // "STRGJRNL"

    public void WriteTo(Span<byte> header)
    {
        header = header[..HeaderSize];
        header.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(header, Magic);
        ArrayId.TryWriteBytes(header[8..]);
        BinaryPrimitives.WriteInt64LittleEndian(header[24..], Sequence);
        BinaryPrimitives.WriteInt64LittleEndian(header[32..], Stripe);
        BinaryPrimitives.WriteInt32LittleEndian(header[40..], Offset);
        BinaryPrimitives.WriteInt32LittleEndian(header[44..], Length);
        BinaryPrimitives.WriteInt32LittleEndian(header[48..], Role);
        BinaryPrimitives.WriteUInt64LittleEndian(header[56..], Roles);
        BinaryPrimitives.WriteUInt32LittleEndian(header[64..], DataCrc);
        BinaryPrimitives.WriteUInt32LittleEndian(header[68..], Crc32C.Compute(header[..68]));
    }

    public static bool TryParse(ReadOnlySpan<byte> header, Guid arrayId, out JournalRecord record)
    {
        record = default;
        if (header.Length < 72 || BinaryPrimitives.ReadUInt64LittleEndian(header) != Magic
            || BinaryPrimitives.ReadUInt32LittleEndian(header[68..]) != Crc32C.Compute(header[..68])
            || new Guid(header.Slice(8, 16)) != arrayId)
            return false;
        record = new JournalRecord(
            arrayId,
            BinaryPrimitives.ReadInt64LittleEndian(header[24..]),
            BinaryPrimitives.ReadInt64LittleEndian(header[32..]),
            BinaryPrimitives.ReadInt32LittleEndian(header[40..]),
            BinaryPrimitives.ReadInt32LittleEndian(header[44..]),
            BinaryPrimitives.ReadInt32LittleEndian(header[48..]),
            BinaryPrimitives.ReadUInt64LittleEndian(header[56..]),
            BinaryPrimitives.ReadUInt32LittleEndian(header[64..]));
        return true;
    }
}
