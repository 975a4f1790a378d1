using System.Runtime.CompilerServices;
namespace Storage.Parity.Kernels;

/// <summary>Reference multi-output dot product through the full 64 KiB product table.</summary>
internal static unsafe class DotProductScalar
{
    // for o, b: out[o][b] = (accumulate ? out[o][b] : 0) ^ Σ_j c[o,j]·in[j][b]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(GfCoefficients c, byte** inputs, byte** outputs, nint length, bool accumulate)
    {
        ReadOnlySpan<byte> products = Gf256.ProductTable;
        ReadOnlySpan<byte> values = c.Values;
        for (int o = 0; o < c.Outputs; o++)
        {
            byte* output = outputs[o];
            for (nint b = 0; b < length; b++)
            {
                int sum = accumulate ? output[b] : 0;
                for (int j = 0; j < c.Inputs; j++)
                    sum ^= products[(values[o * c.Inputs + j] << 8) | inputs[j][b]];
                output[b] = (byte)sum;
            }
        }
    }
}
