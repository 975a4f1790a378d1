using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Vec = System.Runtime.Intrinsics.Vector256;

namespace Storage.Parity.Kernels;

/// <summary>
/// Multi-output GF(2^8) dot product with 256-bit GFNI.
/// One <c>gf2p8affineqb</c> per coefficient with the 8×8 bit matrix of multiply-by-c over 0x11D
/// (never <c>gf2p8mulb</c>, which reduces by 0x11B); up to four outputs per pass over the inputs.
/// </summary>
internal static unsafe class DotProductGfni256
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
            ulong* tables = c.AffineMatrices + first * c.Inputs;
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
    private static Vector256<byte> Mul(ulong matrix, Vector256<byte> x)
        => Gfni.V256.GaloisFieldAffineTransform(x, Vec.Create(matrix).AsByte(), 0);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot1(ulong* t, int k, byte** inputs, byte** outputs, nint length, bool accumulate)
    {
        byte* o0 = outputs[0];
        for (nint offset = 0; offset < length; offset += Width)
        {
            var a0 = accumulate ? Vec.Load(o0 + offset) : default;
            for (nint j = k - 1; j >= 0; j--)
            {
                var d = Vec.Load(inputs[j] + offset);
                a0 ^= Mul(t[j], d);
            }
            Vec.Store(a0, o0 + offset);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot2(ulong* t, int k, byte** inputs, byte** outputs, nint length, bool accumulate)
    {
        byte* o0 = outputs[0], o1 = outputs[1];
        ulong* t1 = t + k;
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
                a0 ^= Mul(t[j], d);
                a1 ^= Mul(t1[j], d);
            }
            Vec.Store(a0, o0 + offset);
            Vec.Store(a1, o1 + offset);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot3(ulong* t, int k, byte** inputs, byte** outputs, nint length, bool accumulate)
    {
        byte* o0 = outputs[0], o1 = outputs[1], o2 = outputs[2];
        ulong* t1 = t + k, t2 = t + 2 * k;
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
                a0 ^= Mul(t[j], d);
                a1 ^= Mul(t1[j], d);
                a2 ^= Mul(t2[j], d);
            }
            Vec.Store(a0, o0 + offset);
            Vec.Store(a1, o1 + offset);
            Vec.Store(a2, o2 + offset);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot4(ulong* t, int k, byte** inputs, byte** outputs, nint length, bool accumulate)
    {
        byte* o0 = outputs[0], o1 = outputs[1], o2 = outputs[2], o3 = outputs[3];
        ulong* t1 = t + k, t2 = t + 2 * k, t3 = t + 3 * k;
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
                a0 ^= Mul(t[j], d);
                a1 ^= Mul(t1[j], d);
                a2 ^= Mul(t2[j], d);
                a3 ^= Mul(t3[j], d);
            }
            Vec.Store(a0, o0 + offset);
            Vec.Store(a1, o1 + offset);
            Vec.Store(a2, o2 + offset);
            Vec.Store(a3, o3 + offset);
        }
    }
}
