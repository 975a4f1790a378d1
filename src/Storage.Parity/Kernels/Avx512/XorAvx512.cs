using Vec = System.Runtime.Intrinsics.Vector512;

namespace Storage.Parity.Kernels;

/// <summary>XOR parity with 512-bit vectors: 256 bytes per step, then 64-byte steps.</summary>
internal static unsafe class XorAvx512
{
    private const int Width = 64;

    // for b: dst[b] = src[0][b] ^ … ^ src[count-1][b]
    public static void Run(byte** sources, int count, byte* destination, nint length)
    {
        nint offset = 0;
        for (; offset + 4 * Width <= length; offset += 4 * Width)
        {
            byte* s = sources[0] + offset;
            var x0 = Vec.Load(s);
            var x1 = Vec.Load(s + Width);
            var x2 = Vec.Load(s + 2 * Width);
            var x3 = Vec.Load(s + 3 * Width);
            for (int i = 1; i < count; i++)
            {
                s = sources[i] + offset;
                x0 ^= Vec.Load(s);
                x1 ^= Vec.Load(s + Width);
                x2 ^= Vec.Load(s + 2 * Width);
                x3 ^= Vec.Load(s + 3 * Width);
            }
            byte* d = destination + offset;
            Vec.Store(x0, d);
            Vec.Store(x1, d + Width);
            Vec.Store(x2, d + 2 * Width);
            Vec.Store(x3, d + 3 * Width);
        }
        for (; offset < length; offset += Width)
        {
            var x0 = Vec.Load(sources[0] + offset);
            for (int i = 1; i < count; i++)
                x0 ^= Vec.Load(sources[i] + offset);
            Vec.Store(x0, destination + offset);
        }
    }
}
