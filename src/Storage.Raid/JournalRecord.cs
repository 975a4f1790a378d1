using Storage.Native;
using System.Buffers.Binary;

namespace Storage.Raid;

/// <summary>
/// The header of one member's part of a journal record, in the first 4096 bytes of a journal slot;
/// the part's bytes follow it. Little-endian:
/// <code>
///   0 magic "STRGJRNL"  8 array id (16)  24 sequence u64  32 stripe u64  40 offset in chunk u32
///  44 length u32       48 role u32      52 reserved     56 roles written (bit mask) u64
///  64 CRC-32C of the part's bytes u32
/// 128 for each role r in the mask: the member id (16) that held r when the record was written, at 128 + 16·r
/// 4092 CRC-32C of bytes 0..4091 u32
/// </code>
/// The member ids let replay tell a part of the disk that holds the role now from a part written before a
/// replacement took the role (or by the same disk in an earlier life).
/// </summary>
internal sealed record JournalRecord(Guid ArrayId, long Sequence, long Stripe, int Offset, int Length, int Role, ulong Roles, uint DataCrc, Guid[] Members)
{
    public const int HeaderSize = 4096;
    private const ulong Magic = 0x4C4E_524A_4752_5453;   // "STRGJRNL"
    private const int MembersAt = 128;

    public void WriteTo(Span<byte> header) => Write(header, ArrayId, Sequence, Stripe, Offset, Length, Role, Roles, DataCrc, Members);

    /// <summary>Writes a header from its fields without making a record (the write path's, per member part).</summary>
    public static void Write(Span<byte> header, Guid arrayId, long sequence, long stripe, int offset, int length, int role, ulong roles, uint dataCrc, ReadOnlySpan<Guid> members)
    {
        header = header[..HeaderSize];
        header.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(header, Magic);
        arrayId.TryWriteBytes(header[8..]);
        BinaryPrimitives.WriteInt64LittleEndian(header[24..], sequence);
        BinaryPrimitives.WriteInt64LittleEndian(header[32..], stripe);
        BinaryPrimitives.WriteInt32LittleEndian(header[40..], offset);
        BinaryPrimitives.WriteInt32LittleEndian(header[44..], length);
        BinaryPrimitives.WriteInt32LittleEndian(header[48..], role);
        BinaryPrimitives.WriteUInt64LittleEndian(header[56..], roles);
        BinaryPrimitives.WriteUInt32LittleEndian(header[64..], dataCrc);
        for (int r = 0; r < members.Length; r++)
        {
            if ((roles & (1UL << r)) != 0)
                members[r].TryWriteBytes(header[(MembersAt + 16 * r)..]);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(header[(HeaderSize - 4)..], Crc32C.Compute(header[..(HeaderSize - 4)]));
    }

    public static bool TryParse(ReadOnlySpan<byte> header, Guid arrayId, int roleCount, out JournalRecord? record)
    {
        record = null;
        if (header.Length < HeaderSize || BinaryPrimitives.ReadUInt64LittleEndian(header) != Magic
            || BinaryPrimitives.ReadUInt32LittleEndian(header[(HeaderSize - 4)..]) != Crc32C.Compute(header[..(HeaderSize - 4)])
            || new Guid(header.Slice(8, 16)) != arrayId)
            return false;
        ulong roles = BinaryPrimitives.ReadUInt64LittleEndian(header[56..]);
        var members = new Guid[roleCount];
        for (int role = 0; role < roleCount; role++)
        {
            if ((roles & (1UL << role)) != 0)
                members[role] = new Guid(header.Slice(MembersAt + 16 * role, 16));
        }
        record = new JournalRecord(
            arrayId,
            BinaryPrimitives.ReadInt64LittleEndian(header[24..]),
            BinaryPrimitives.ReadInt64LittleEndian(header[32..]),
            BinaryPrimitives.ReadInt32LittleEndian(header[40..]),
            BinaryPrimitives.ReadInt32LittleEndian(header[44..]),
            BinaryPrimitives.ReadInt32LittleEndian(header[48..]),
            roles,
            BinaryPrimitives.ReadUInt32LittleEndian(header[64..]),
            members);
        return true;
    }
}
