using System.Buffers.Binary;
using System.Numerics;

namespace Storage.Raid;

/// <summary>CRC-32C (Castagnoli), hardware-accelerated where the CPU has it; used by superblocks and journal records.</summary>
internal static class Crc32C
{
    public static uint Compute(ReadOnlySpan<byte> data)
    {
        uint crc = uint.MaxValue;
        while (data.Length >= 8)
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }
        foreach (byte b in data)
            crc = BitOperations.Crc32C(crc, b);
        return ~crc;
    }
}
