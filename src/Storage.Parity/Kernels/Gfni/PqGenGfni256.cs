using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Vec = System.Runtime.Intrinsics.Vector256;

namespace Storage.Parity.Kernels;

/// <summary>P+Q generation (GFNI multiply-by-2) with 256-bit vectors: 128 bytes per step, then a 64-byte tail.</summary>
internal static unsafe class PqGenGfni256
{
    private const int Width = 32;

    // for b: p = q = D[k-1][b]; for i = k-2 … 0: p ^= D[i][b]; q = 2·q ^ D[i][b]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(byte** data, int count, byte* p, byte* q, nint length)
    {
        var times2 = Vec.Create(GfCoefficients.AffineMatrix(2)).AsByte();
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
                q0 = MulBy2(q0, times2) ^ d0;
                q1 = MulBy2(q1, times2) ^ d1;
                q2 = MulBy2(q2, times2) ^ d2;
                q3 = MulBy2(q3, times2) ^ d3;
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
                q0 = MulBy2(q0, times2) ^ d0;
                q1 = MulBy2(q1, times2) ^ d1;
            }
            Vec.Store(p0, p + offset);
            Vec.Store(p1, p + offset + Width);
            Vec.Store(q0, q + offset);
            Vec.Store(q1, q + offset + Width);
        }
    }

    /// <summary>2·x as one affine transform; <paramref name="matrix"/> is the bit matrix of multiply-by-{02} in every 64-bit lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> MulBy2(Vector256<byte> x, Vector256<byte> matrix)
        => Gfni.V256.GaloisFieldAffineTransform(x, matrix, 0);
}
