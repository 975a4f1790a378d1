namespace Storage.Parity;

/// <summary>
/// Arithmetic in GF(2^8) with the polynomial x^8+x^4+x^3+x^2+1 (0x11D) and generator {02} —
/// the field of Linux md RAID-6 and Intel ISA-L. Addition is XOR. All members are thread-safe.
/// </summary>
public static class Gf256
{
    /// <summary>The reduction polynomial, including the x^8 term.</summary>
    public const int Polynomial = 0x11D;

    private static readonly byte[] ExpTable = BuildExp();   // 510 entries: exp[i] = g^i, doubled to skip a modulo.
    private static readonly byte[] LogTable = BuildLog();   // log[0] is undefined and left 0.
    private static readonly byte[] Products = BuildProducts();

    /// <summary>The full 256×256 product table, row-major: <c>Products[a * 256 + b] = a·b</c>.</summary>
    internal static ReadOnlySpan<byte> ProductTable => Products;

    /// <summary>a·b.</summary>
    public static byte Mul(byte a, byte b) => Products[(a << 8) | b];

    /// <summary>a / b.</summary>
    /// <exception cref="DivideByZeroException"><paramref name="b"/> is 0.</exception>
    public static byte Div(byte a, byte b)
    {
        if (b == 0)
            throw new DivideByZeroException("Division by zero in GF(2^8).");
        if (a == 0)
            return 0;
        return ExpTable[LogTable[a] + 255 - LogTable[b]];
    }

    /// <summary>The multiplicative inverse of a.</summary>
    /// <exception cref="DivideByZeroException"><paramref name="a"/> is 0.</exception>
    public static byte Inverse(byte a) => Div(1, a);

    /// <summary>g^n for the generator g = {02}; n may be negative.</summary>
    public static byte Exp(int n)
    {
        n %= 255;
        if (n < 0)
            n += 255;
        return ExpTable[n];
    }

    /// <summary>The discrete logarithm base {02}: the n in 0..254 with g^n = a.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="a"/> is 0, which has no logarithm.</exception>
    public static int Log(byte a)
    {
        ArgumentOutOfRangeException.ThrowIfZero(a);
        return LogTable[a];
    }

    /// <summary>a^n (a^0 = 1, including 0^0); n ≥ 0.</summary>
    public static byte Pow(byte a, int n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        if (n == 0)
            return 1;
        if (a == 0)
            return 0;
        return ExpTable[(int)((long)LogTable[a] * n % 255)];
    }

    /// <summary>Carry-less multiply then reduce by 0x11D, bit by bit: the definition the tables are built from.</summary>
    internal static byte MulSlow(int a, int b)
    {
        int product = 0;
        while (b != 0)
        {
            if ((b & 1) != 0)
                product ^= a;
            a <<= 1;
            if ((a & 0x100) != 0)
                a ^= Polynomial;
            b >>= 1;
        }
        return (byte)product;
    }

    private static byte[] BuildExp()
    {
        var exp = new byte[510];
        int x = 1;
        for (int i = 0; i < 255; i++)
        {
            exp[i] = (byte)x;
            exp[i + 255] = (byte)x;
            x = MulSlow(x, 2);
        }
        return exp;
    }

    private static byte[] BuildLog()
    {
        var log = new byte[256];
        for (int i = 0; i < 255; i++)
            log[ExpTable[i]] = (byte)i;
        return log;
    }

    private static byte[] BuildProducts()
    {
        var table = new byte[256 * 256];
        for (int a = 1; a < 256; a++)
            for (int b = 1; b < 256; b++)
                table[(a << 8) | b] = ExpTable[LogTable[a] + LogTable[b]];
        return table;
    }
}
