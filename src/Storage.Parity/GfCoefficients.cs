using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Storage.Parity;

/// <summary>
/// An outputs×inputs coefficient matrix for the multi-output dot product
/// <c>out[o] = Σ_j c[o,j]·in[j]</c>, expanded once into the forms the kernels read:
/// split-nibble tables for byte-shuffle kernels and 8×8 bit matrices for GFNI.
/// Immutable and thread-safe once built; build it once per matrix and reuse it.
/// </summary>
public sealed unsafe class GfCoefficients
{
    /// <summary>Bytes of nibble tables per coefficient: 16 products of the low nibble, then 16 of the high nibble.</summary>
    internal const int NibbleTableBytes = 32;

    private readonly byte[] _values;
    private readonly byte[] _nibbleTables;   // pinned: kernels read it through a raw pointer.
    private readonly ulong[] _affine;        // pinned, likewise.

    /// <summary>Builds the tables for a row-major <paramref name="outputs"/>×<paramref name="inputs"/> matrix.</summary>
    public GfCoefficients(ReadOnlySpan<byte> matrix, int outputs, int inputs)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(outputs, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(inputs, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(outputs, 255);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(inputs, 255);
        if (matrix.Length != outputs * inputs)
            throw new ArgumentException($"The matrix holds {matrix.Length} bytes; {outputs}×{inputs} needs {outputs * inputs}.", nameof(matrix));

        Outputs = outputs;
        Inputs = inputs;
        _values = matrix.ToArray();
        _nibbleTables = GC.AllocateUninitializedArray<byte>(matrix.Length * NibbleTableBytes, pinned: true);
        _affine = GC.AllocateUninitializedArray<ulong>(matrix.Length, pinned: true);
        for (int i = 0; i < matrix.Length; i++)
        {
            WriteNibbleTables(matrix[i], _nibbleTables.AsSpan(i * NibbleTableBytes, NibbleTableBytes));
            _affine[i] = AffineMatrix(matrix[i]);
        }
    }

    /// <summary>Number of output rows.</summary>
    public int Outputs { get; }

    /// <summary>Number of inputs each output reads.</summary>
    public int Inputs { get; }

    /// <summary>The coefficient for output <paramref name="output"/> and input <paramref name="input"/>.</summary>
    public byte this[int output, int input] => _values[output * Inputs + input];

    /// <summary>The 32 table bytes of coefficient (o, j): <c>lo[x] = c·x</c>, <c>hi[x] = c·(x&lt;&lt;4)</c>, x in 0..15.</summary>
    internal byte* NibbleTables => (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_nibbleTables));

    /// <summary>The GFNI affine matrix of each coefficient, same order as the values.</summary>
    internal ulong* AffineMatrices => (ulong*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_affine));

    /// <summary>The row-major coefficients.</summary>
    internal ReadOnlySpan<byte> Values => _values;

    /// <summary>Split-nibble tables for multiplying by <paramref name="c"/>: c·x = lo[x &amp; 15] ^ hi[x &gt;&gt; 4].</summary>
    internal static void WriteNibbleTables(byte c, Span<byte> table)
    {
        for (int x = 0; x < 16; x++)
        {
            table[x] = Gf256.Mul(c, (byte)x);
            table[16 + x] = Gf256.Mul(c, (byte)(x << 4));
        }
    }

    /// <summary>
    /// The 8×8 bit matrix A with A·x = c·x in GF(2^8)/0x11D, laid out for <c>gf2p8affineqb</c>:
    /// output bit i is the parity of (x AND byte[7 - i]), so byte 7-i holds row i, whose bit j is
    /// bit i of c·2^j. (The GFNI multiply instruction reduces by 0x11B and cannot be used.)
    /// </summary>
    internal static ulong AffineMatrix(byte c)
    {
        ulong matrix = 0;
        for (int i = 0; i < 8; i++)
        {
            int row = 0;
            for (int j = 0; j < 8; j++)
                row |= ((Gf256.Mul(c, (byte)(1 << j)) >> i) & 1) << j;
            matrix |= (ulong)row << (8 * (7 - i));
        }
        return matrix;
    }
}
