using System.Buffers.Binary;
using System.Numerics;

namespace Storage.Native;

/// <summary>CRC-32C (Castagnoli): the checksum of superblocks, journal records, log records and network frames.</summary>
/// <remarks>
/// <see cref="BitOperations.Crc32C(uint, ulong)"/> compiles to the SSE4.2 / ARMv8 CRC32 instruction where
/// there is one and to a table walk otherwise; this walks the buffer eight bytes at a time.
/// </remarks>
internal static class Crc32C
{
    /// <summary>The CRC-32C of <paramref name="data"/> (initial value and final XOR 0xFFFFFFFF).</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => ~Append(~0u, data);

    /// <summary>Continues a running (not yet inverted) CRC over <paramref name="data"/>.</summary>
    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        while (data.Length >= 8)
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }
        foreach (byte b in data)
            crc = BitOperations.Crc32C(crc, b);
        return crc;
    }
}
