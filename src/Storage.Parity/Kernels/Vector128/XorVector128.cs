using System.Runtime.CompilerServices;
using Vec = System.Runtime.Intrinsics.Vector128;

namespace Storage.Parity.Kernels;

/// <summary>XOR parity with 128-bit vectors (SSE2 or AdvSimd), 64 bytes per step.</summary>
internal static unsafe class XorVector128
{
    // for b: dst[b] = src[count-1][b] ^ … ^ src[0][b]
    // Sources are read last to first: measured on Zen 5, this order runs up to 1.8× faster than first
    // to last when the chunks are consecutive rows of one stripe buffer (docs/benchmarks.md).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(byte** sources, int count, byte* destination, nint length)
    {
        for (nint offset = 0; offset < length; offset += 64)
        {
            byte* s = sources[count - 1] + offset;
            var x0 = Vec.Load(s);
            var x1 = Vec.Load(s + 16);
            var x2 = Vec.Load(s + 32);
            var x3 = Vec.Load(s + 48);
            for (nint i = count - 2; i >= 0; i--)
            {
                s = sources[i] + offset;
                x0 ^= Vec.Load(s);
                x1 ^= Vec.Load(s + 16);
                x2 ^= Vec.Load(s + 32);
                x3 ^= Vec.Load(s + 48);
            }
            byte* d = destination + offset;
            Vec.Store(x0, d);
            Vec.Store(x1, d + 16);
            Vec.Store(x2, d + 32);
            Vec.Store(x3, d + 48);
        }
    }
}
