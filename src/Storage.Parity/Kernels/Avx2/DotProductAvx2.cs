using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Vec = System.Runtime.Intrinsics.Vector256;

namespace Storage.Parity.Kernels;

/// <summary>
/// Multi-output GF(2^8) dot product with AVX2 <c>vpshufb</c>; the 16-byte tables sit in both 128-bit lanes because the shuffle is lane-local:
/// c·x = lo[x &amp; 15] ^ hi[x &gt;&gt; 4], up to four outputs per pass over the inputs.
/// </summary>
internal static unsafe class DotProductAvx2
{
    private const int Width = 32;

    // for o, b: out[o][b] = (accumulate ? out[o][b] : 0) ^ Σ_j c[o,j]·in[j][b]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(GfCoefficients c, byte** inputs, byte** outputs, nint length, bool accumulate)
    {
        int first = 0;
        while (first < c.Outputs)
        {
            int group = Math.Min(4, c.Outputs - first);
            byte* tables = c.NibbleTables + first * c.Inputs * GfCoefficients.NibbleTableBytes;
            switch (group)
            {
                case 4: Dot4(tables, c.Inputs, inputs, outputs + first, length, accumulate); break;
                case 3: Dot3(tables, c.Inputs, inputs, outputs + first, length, accumulate); break;
                case 2: Dot2(tables, c.Inputs, inputs, outputs + first, length, accumulate); break;
                default: Dot1(tables, c.Inputs, inputs, outputs + first, length, accumulate); break;
            }
            first += group;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Mul(byte* table, Vector256<byte> lo, Vector256<byte> hi)
        => Avx2.Shuffle(Avx2.BroadcastVector128ToVector256(table), lo) ^ Avx2.Shuffle(Avx2.BroadcastVector128ToVector256(table + 16), hi);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot1(byte* t, int k, byte** inputs, byte** outputs, nint length, bool accumulate)
    {
        byte* o0 = outputs[0];
        var mask = Vec.Create((byte)0x0F);
        for (nint offset = 0; offset < length; offset += Width)
        {
            var a0 = accumulate ? Vec.Load(o0 + offset) : default;
            for (nint j = k - 1; j >= 0; j--)
            {
                var d = Vec.Load(inputs[j] + offset);
                var lo = d & mask;
                var hi = Vec.ShiftRightLogical(d, 4);
                a0 ^= Mul(t + j * 32, lo, hi);
            }
            Vec.Store(a0, o0 + offset);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot2(byte* t, int k, byte** inputs, byte** outputs, nint length, bool accumulate)
    {
        byte* o0 = outputs[0], o1 = outputs[1];
        byte* t1 = t + k * 32;
        var mask = Vec.Create((byte)0x0F);
        for (nint offset = 0; offset < length; offset += Width)
        {
            Vector256<byte> a0 = default, a1 = default;
            if (accumulate)
            {
                a0 = Vec.Load(o0 + offset);
                a1 = Vec.Load(o1 + offset);
            }
            for (nint j = k - 1; j >= 0; j--)
            {
                var d = Vec.Load(inputs[j] + offset);
                var lo = d & mask;
                var hi = Vec.ShiftRightLogical(d, 4);
                a0 ^= Mul(t + j * 32, lo, hi);
                a1 ^= Mul(t1 + j * 32, lo, hi);
            }
            Vec.Store(a0, o0 + offset);
            Vec.Store(a1, o1 + offset);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot3(byte* t, int k, byte** inputs, byte** outputs, nint length, bool accumulate)
    {
        byte* o0 = outputs[0], o1 = outputs[1], o2 = outputs[2];
        byte* t1 = t + k * 32, t2 = t + 2 * k * 32;
        var mask = Vec.Create((byte)0x0F);
        for (nint offset = 0; offset < length; offset += Width)
        {
            Vector256<byte> a0 = default, a1 = default, a2 = default;
            if (accumulate)
            {
                a0 = Vec.Load(o0 + offset);
                a1 = Vec.Load(o1 + offset);
                a2 = Vec.Load(o2 + offset);
            }
            for (nint j = k - 1; j >= 0; j--)
            {
                var d = Vec.Load(inputs[j] + offset);
                var lo = d & mask;
                var hi = Vec.ShiftRightLogical(d, 4);
                a0 ^= Mul(t + j * 32, lo, hi);
                a1 ^= Mul(t1 + j * 32, lo, hi);
                a2 ^= Mul(t2 + j * 32, lo, hi);
            }
            Vec.Store(a0, o0 + offset);
            Vec.Store(a1, o1 + offset);
            Vec.Store(a2, o2 + offset);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot4(byte* t, int k, byte** inputs, byte** outputs, nint length, bool accumulate)
    {
        byte* o0 = outputs[0], o1 = outputs[1], o2 = outputs[2], o3 = outputs[3];
        byte* t1 = t + k * 32, t2 = t + 2 * k * 32, t3 = t + 3 * k * 32;
        var mask = Vec.Create((byte)0x0F);
        for (nint offset = 0; offset < length; offset += Width)
        {
            Vector256<byte> a0 = default, a1 = default, a2 = default, a3 = default;
            if (accumulate)
            {
                a0 = Vec.Load(o0 + offset);
                a1 = Vec.Load(o1 + offset);
                a2 = Vec.Load(o2 + offset);
                a3 = Vec.Load(o3 + offset);
            }
            for (nint j = k - 1; j >= 0; j--)
            {
                var d = Vec.Load(inputs[j] + offset);
                var lo = d & mask;
                var hi = Vec.ShiftRightLogical(d, 4);
                a0 ^= Mul(t + j * 32, lo, hi);
                a1 ^= Mul(t1 + j * 32, lo, hi);
                a2 ^= Mul(t2 + j * 32, lo, hi);
                a3 ^= Mul(t3 + j * 32, lo, hi);
            }
            Vec.Store(a0, o0 + offset);
            Vec.Store(a1, o1 + offset);
            Vec.Store(a2, o2 + offset);
            Vec.Store(a3, o3 + offset);
        }
    }
}
