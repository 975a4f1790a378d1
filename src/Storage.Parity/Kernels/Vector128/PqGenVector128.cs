using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Vec = System.Runtime.Intrinsics.Vector128;

namespace Storage.Parity.Kernels;

/// <summary>P+Q generation with 128-bit vectors (SSE2 or AdvSimd), 64 bytes per step.</summary>
internal static unsafe class PqGenVector128
{
    // for b: p = q = D[k-1][b]; for i = k-2 … 0: p ^= D[i][b]; q = 2·q ^ D[i][b]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(byte** data, int count, byte* p, byte* q, nint length)
    {
        var poly = Vec.Create((byte)0x1D);
        for (nint offset = 0; offset < length; offset += 64)
        {
            byte* s = data[count - 1] + offset;
            var p0 = Vec.Load(s);
            var p1 = Vec.Load(s + 16);
            var p2 = Vec.Load(s + 32);
            var p3 = Vec.Load(s + 48);
            var q0 = p0;
            var q1 = p1;
            var q2 = p2;
            var q3 = p3;
            for (int i = count - 2; i >= 0; i--)
            {
                s = data[i] + offset;
                var d0 = Vec.Load(s);
                var d1 = Vec.Load(s + 16);
                var d2 = Vec.Load(s + 32);
                var d3 = Vec.Load(s + 48);
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
            Vec.Store(p1, p + offset + 16);
            Vec.Store(p2, p + offset + 32);
            Vec.Store(p3, p + offset + 48);
            Vec.Store(q0, q + offset);
            Vec.Store(q1, q + offset + 16);
            Vec.Store(q2, q + offset + 32);
            Vec.Store(q3, q + offset + 48);
        }
    }

    /// <summary>x + x, then XOR 0x1D into every byte whose top bit was set (signed compare with zero gives that mask).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> MulBy2(Vector128<byte> x, Vector128<byte> poly)
        => (x + x) ^ (Vec.LessThan(x.AsSByte(), Vector128<sbyte>.Zero).AsByte() & poly);
}
