using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Vec = System.Runtime.Intrinsics.Vector256;

namespace Storage.Parity.Kernels;

/// <summary>P+Q generation with 256-bit vectors: 128 bytes per step, then a 64-byte tail.</summary>
internal static unsafe class PqGenAvx2
{
    private const int Width = 32;

    // for b: p = q = D[k-1][b]; for i = k-2 … 0: p ^= D[i][b]; q = 2·q ^ D[i][b]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(byte** data, int count, byte* p, byte* q, nint length)
    {
        var poly = Vec.Create((byte)0x1D);
        nint offset = 0;
        for (; offset + 4 * Width <= length; offset += 4 * Width)
        {
            byte* s = data[count - 1] + offset;
            var p0 = Vec.Load(s);
            var p1 = Vec.Load(s + Width);
            var p2 = Vec.Load(s + 2 * Width);
            var p3 = Vec.Load(s + 3 * Width);
            var q0 = p0;
            var q1 = p1;
            var q2 = p2;
            var q3 = p3;
            for (int i = count - 2; i >= 0; i--)
            {
                s = data[i] + offset;
                var d0 = Vec.Load(s);
                var d1 = Vec.Load(s + Width);
                var d2 = Vec.Load(s + 2 * Width);
                var d3 = Vec.Load(s + 3 * Width);
                p0 ^= d0;
                p1 ^= d1;
                p2 ^= d2;
                p3 ^= d3;
                q0 = MulBy2(q0, poly) ^ d0;
                q1 = MulBy2(q1, poly) ^ d1;
                q2 = MulBy2(q2, poly) ^ d2;
                q3 = MulBy2(q3, poly) ^ d3;
            }
            Vec.Store(p0, p + offset);
            Vec.Store(p1, p + offset + Width);
            Vec.Store(p2, p + offset + 2 * Width);
            Vec.Store(p3, p + offset + 3 * Width);
            Vec.Store(q0, q + offset);
            Vec.Store(q1, q + offset + Width);
            Vec.Store(q2, q + offset + 2 * Width);
            Vec.Store(q3, q + offset + 3 * Width);
        }
        for (; offset < length; offset += 2 * Width)
        {
            byte* s = data[count - 1] + offset;
            var p0 = Vec.Load(s);
            var p1 = Vec.Load(s + Width);
            var q0 = p0;
            var q1 = p1;
            for (int i = count - 2; i >= 0; i--)
            {
                s = data[i] + offset;
                var d0 = Vec.Load(s);
                var d1 = Vec.Load(s + Width);
                p0 ^= d0;
                p1 ^= d1;
                q0 = MulBy2(q0, poly) ^ d0;
                q1 = MulBy2(q1, poly) ^ d1;
            }
            Vec.Store(p0, p + offset);
            Vec.Store(p1, p + offset + Width);
            Vec.Store(q0, q + offset);
            Vec.Store(q1, q + offset + Width);
        }
    }

    /// <summary>x + x, then XOR 0x1D into every byte whose top bit was set (signed compare with zero gives that mask).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> MulBy2(Vector256<byte> x, Vector256<byte> poly)
        => (x + x) ^ (Vec.LessThan(x.AsSByte(), Vector256<sbyte>.Zero).AsByte() & poly);
}
