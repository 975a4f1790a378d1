using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Storage.Native;

/// <summary>CRC-32C (Castagnoli): the checksum of superblocks, journal records, log records, network frames and pool blocks.</summary>
/// <remarks>
/// <see cref="BitOperations.Crc32C(uint, ulong)"/> compiles to the SSE4.2 / ARMv8 CRC32 instruction where there is
/// one and to a table walk otherwise. The instruction takes three cycles but can start every cycle, so buffers of
/// <see cref="ParallelThreshold"/> bytes or more are walked as three interleaved streams whose CRCs are then joined
/// (shifting a CRC over n zero bytes is a fixed linear map: a 32×32 bit matrix per length, cached), about three
/// times the rate of one stream.
/// </remarks>
internal static class Crc32C
{
    /// <summary>Buffers at least this long are walked as three streams.</summary>
    public const int ParallelThreshold = 3 * 1024;

    private const uint Polynomial = 0x82F63B78; // reflected Castagnoli
    private static readonly ConcurrentDictionary<int, uint[]> Shifts = new();

    /// <summary>The CRC-32C of <paramref name="data"/> (initial value and final XOR 0xFFFFFFFF).</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => ~Append(~0u, data);

    /// <summary>Continues a running (not yet inverted) CRC over <paramref name="data"/>.</summary>
    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        if (data.Length >= ParallelThreshold)
        {
            int part = data.Length / 24 * 8;
            crc = ThreeStreams(crc, data[..(3 * part)], part);
            data = data[(3 * part)..];
        }
        return Serial(crc, data);
    }

    private static uint Serial(uint crc, ReadOnlySpan<byte> data)
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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static uint ThreeStreams(uint crc, ReadOnlySpan<byte> data, int part)
    {
        ref byte a = ref MemoryMarshal.GetReference(data);
        ref byte b = ref Unsafe.Add(ref a, part);
        ref byte c = ref Unsafe.Add(ref b, part);
        uint ca = crc, cb = 0, cc = 0;
        for (int i = 0; i < part; i += 8)
        {
            ca = BitOperations.Crc32C(ca, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref a, i)));
            cb = BitOperations.Crc32C(cb, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref b, i)));
            cc = BitOperations.Crc32C(cc, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref c, i)));
        }
        var shift = Shifts.GetOrAdd(part, ShiftMatrix);
        return Apply(shift, Apply(shift, ca) ^ cb) ^ cc;
    }

    /// <summary>The matrix that advances a CRC register over <paramref name="bytes"/> zero bytes.</summary>
    private static uint[] ShiftMatrix(int bytes)
    {
        // One zero bit: shift right, fold the polynomial in when the low bit falls out.
        var bit = new uint[32];
        bit[0] = Polynomial;
        for (int i = 1; i < 32; i++)
            bit[i] = 1u << (i - 1);
        var power = bit;
        for (int i = 0; i < 3; i++)
            power = Square(power);   // 8 bits: one zero byte
        uint[]? result = null;
        for (long n = bytes; n > 0; n >>= 1)
        {
            if ((n & 1) != 0)
                result = result is null ? power : Multiply(power, result);
            power = Square(power);
        }
        return result ?? Identity();
    }

    private static uint Apply(uint[] matrix, uint vector)
    {
        uint sum = 0;
        for (int i = 0; vector != 0; i++, vector >>= 1)
        {
            if ((vector & 1) != 0)
                sum ^= matrix[i];
        }
        return sum;
    }

    private static uint[] Square(uint[] matrix) => Multiply(matrix, matrix);

    /// <summary>The matrix of applying <paramref name="second"/> after <paramref name="first"/>.</summary>
    private static uint[] Multiply(uint[] second, uint[] first)
    {
        var product = new uint[32];
        for (int i = 0; i < 32; i++)
            product[i] = Apply(second, first[i]);
        return product;
    }

    private static uint[] Identity()
    {
        var identity = new uint[32];
        for (int i = 0; i < 32; i++)
            identity[i] = 1u << i;
        return identity;
    }
}
