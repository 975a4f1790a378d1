namespace Storage.Parity;

/// <summary>
/// Matrices over GF(2^8), stored row-major in a flat array. Used to build Reed-Solomon generator
/// matrices and the decode matrices for an erasure pattern.
/// </summary>
public static class GfMatrix
{
    /// <summary>
    /// The systematic Cauchy generator of ISA-L's <c>gf_gen_cauchy1_matrix</c>: <paramref name="rows"/>×<paramref name="columns"/>,
    /// identity on top, then <c>a[i,j] = 1 / (i ^ j)</c> for the parity rows i ≥ columns.
    /// Any <paramref name="columns"/> of its rows are invertible.
    /// </summary>
    /// <param name="rows">k + m, at most 256.</param>
    /// <param name="columns">k, the data chunk count.</param>
    public static byte[] Cauchy(int rows, int columns)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(columns, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, columns);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(rows, 256);
        var a = new byte[rows * columns];
        for (int i = 0; i < columns; i++)
            a[i * columns + i] = 1;
        for (int i = columns; i < rows; i++)
            for (int j = 0; j < columns; j++)
                a[i * columns + j] = Gf256.Inverse((byte)(i ^ j));
        return a;
    }

    /// <summary>
    /// The RAID-6 generator: identity on top, then P = [1 … 1] and Q = [g^0 … g^(k-1)].
    /// </summary>
    public static byte[] Raid6(int dataCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(dataCount, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(dataCount, Raid6Codec.MaxDataChunks);
        int k = dataCount;
        var a = new byte[(k + 2) * k];
        for (int i = 0; i < k; i++)
        {
            a[i * k + i] = 1;
            a[k * k + i] = 1;
            a[(k + 1) * k + i] = Gf256.Exp(i);
        }
        return a;
    }

    /// <summary>
    /// Inverts the n×n matrix in <paramref name="matrix"/> by Gauss-Jordan elimination, writing the inverse to
    /// <paramref name="inverse"/>. <paramref name="matrix"/> is destroyed.
    /// </summary>
    /// <returns>false if the matrix is singular.</returns>
    public static bool TryInvert(Span<byte> matrix, Span<byte> inverse, int n)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        if (matrix.Length < n * n || inverse.Length < n * n)
            throw new ArgumentException($"Both spans must hold n*n = {n * n} bytes.");
        inverse[..(n * n)].Clear();
        for (int i = 0; i < n; i++)
            inverse[i * n + i] = 1;

        for (int col = 0; col < n; col++)
        {
            int pivot = col;
            while (pivot < n && matrix[pivot * n + col] == 0)
                pivot++;
            if (pivot == n)
                return false;
            if (pivot != col)
            {
                SwapRows(matrix, n, pivot, col);
                SwapRows(inverse, n, pivot, col);
            }

            byte scale = Gf256.Inverse(matrix[col * n + col]);
            ScaleRow(matrix, n, col, scale);
            ScaleRow(inverse, n, col, scale);

            for (int row = 0; row < n; row++)
            {
                byte factor = matrix[row * n + col];
                if (row == col || factor == 0)
                    continue;
                AddScaledRow(matrix, n, col, row, factor);
                AddScaledRow(inverse, n, col, row, factor);
            }
        }
        return true;
    }

    /// <summary>c = a × b, with a: r×inner, b: inner×cols.</summary>
    public static void Multiply(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b, Span<byte> c, int rows, int inner, int columns)
    {
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < columns; j++)
            {
                byte sum = 0;
                for (int t = 0; t < inner; t++)
                    sum ^= Gf256.Mul(a[i * inner + t], b[t * columns + j]);
                c[i * columns + j] = sum;
            }
    }

    private static void SwapRows(Span<byte> m, int n, int a, int b)
    {
        for (int j = 0; j < n; j++)
            (m[a * n + j], m[b * n + j]) = (m[b * n + j], m[a * n + j]);
    }

    private static void ScaleRow(Span<byte> m, int n, int row, byte scale)
    {
        for (int j = 0; j < n; j++)
            m[row * n + j] = Gf256.Mul(m[row * n + j], scale);
    }

    private static void AddScaledRow(Span<byte> m, int n, int source, int target, byte factor)
    {
        for (int j = 0; j < n; j++)
            m[target * n + j] ^= Gf256.Mul(m[source * n + j], factor);
    }
}
