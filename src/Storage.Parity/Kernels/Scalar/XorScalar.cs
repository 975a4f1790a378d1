using System.Runtime.CompilerServices;

namespace Storage.Parity.Kernels;

/// <summary>Reference XOR parity, eight bytes at a time.</summary>
internal static unsafe class XorScalar
{
    // for b in 0..length-1: dst[b] = src[count-1][b] ^ … ^ src[1][b] ^ src[0][b]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(byte** sources, int count, byte* destination, nint length)
    {
        for (nint offset = 0; offset < length; offset += sizeof(ulong))
        {
            ulong x = Unsafe.ReadUnaligned<ulong>(sources[count - 1] + offset);
            for (nint i = count - 2; i >= 0; i--)
                x ^= Unsafe.ReadUnaligned<ulong>(sources[i] + offset);
            Unsafe.WriteUnaligned(destination + offset, x);
        }
    }
}
