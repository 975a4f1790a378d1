using System.Runtime.CompilerServices;

namespace Storage.Parity.Kernels;

/// <summary>Reference P+Q generation (Horner form), eight bytes at a time.</summary>
internal static unsafe class PqGenScalar
{
    // for b: p = 0; q = 0; for i = k-1 … 0: p ^= D[i][b]; q = 2·q ^ D[i][b]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(byte** data, int count, byte* p, byte* q, nint length)
    {
        for (nint offset = 0; offset < length; offset += sizeof(ulong))
        {
            ulong pw = Unsafe.ReadUnaligned<ulong>(data[count - 1] + offset);
            ulong qw = pw;
            for (int i = count - 2; i >= 0; i--)
            {
                ulong d = Unsafe.ReadUnaligned<ulong>(data[i] + offset);
                pw ^= d;
                qw = MulBy2(qw) ^ d;
            }
            Unsafe.WriteUnaligned(p + offset, pw);
            Unsafe.WriteUnaligned(q + offset, qw);
        }
    }

    /// <summary>Multiplies each of the eight bytes by {02}: shift left, then XOR 0x1D where the top bit fell out.</summary>
    internal static ulong MulBy2(ulong x)
    {
        ulong high = (x >> 7) & 0x0101010101010101UL;
        return ((x & 0x7F7F7F7F7F7F7F7FUL) << 1) ^ (high * 0x1D);
    }
}
