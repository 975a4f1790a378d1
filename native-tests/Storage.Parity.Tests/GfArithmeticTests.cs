namespace Storage.Parity.Tests;

public class GfArithmeticTests
{
    [Fact]
    public void Mul_matches_the_bitwise_definition_for_every_pair()
    {
        for (int a = 0; a < 256; a++)
            for (int b = 0; b < 256; b++)
                Assert.Equal(Gf256.MulSlow(a, b), Gf256.Mul((byte)a, (byte)b));
    }

    [Fact]
    public void Div_undoes_Mul_and_Inverse_is_a_reciprocal()
    {
        for (int a = 0; a < 256; a++)
            for (int b = 1; b < 256; b++)
                Assert.Equal((byte)a, Gf256.Div(Gf256.Mul((byte)a, (byte)b), (byte)b));
        for (int a = 1; a < 256; a++)
            Assert.Equal(1, Gf256.Mul((byte)a, Gf256.Inverse((byte)a)));
    }

    [Fact]
    public void Exp_and_Log_are_inverse_and_the_generator_has_order_255()
    {
        var seen = new HashSet<byte>();
        for (int n = 0; n < 255; n++)
        {
            byte x = Gf256.Exp(n);
            Assert.True(seen.Add(x), $"g^{n} repeats an earlier power: 2 is not a generator.");
            Assert.Equal(n, Gf256.Log(x));
        }
        Assert.Equal(1, Gf256.Exp(255));
        Assert.Equal(Gf256.Inverse(2), Gf256.Exp(-1));
        Assert.Equal(0x1D, Gf256.Exp(8));   // x^8 = x^4 + x^3 + x^2 + 1 under 0x11D
    }

    [Fact]
    public void Pow_is_repeated_multiplication()
    {
        for (int a = 0; a < 256; a++)
        {
            byte expected = 1;
            for (int n = 0; n < 300; n++)
            {
                Assert.Equal(expected, Gf256.Pow((byte)a, n));
                expected = Gf256.Mul(expected, (byte)a);
            }
        }
    }

    [Fact]
    public void Division_by_zero_and_log_of_zero_are_rejected()
    {
        Assert.Throws<DivideByZeroException>(() => Gf256.Div(5, 0));
        Assert.Throws<DivideByZeroException>(() => Gf256.Inverse(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Gf256.Log(0));
    }

    [Fact]
    public void Affine_matrices_multiply_under_0x11D_by_the_gf2p8affineqb_definition()
    {
        // gf2p8affineqb: result bit i = parity(x AND matrix.byte[7 - i]).
        for (int c = 0; c < 256; c++)
        {
            ulong matrix = GfCoefficients.AffineMatrix((byte)c);
            for (int x = 0; x < 256; x++)
            {
                int result = 0;
                for (int i = 0; i < 8; i++)
                {
                    int row = (int)(matrix >> (8 * (7 - i))) & 0xFF;
                    result |= (System.Numerics.BitOperations.PopCount((uint)(row & x)) & 1) << i;
                }
                Assert.Equal(Gf256.Mul((byte)c, (byte)x), result);
            }
        }
    }

    [Fact]
    public void Nibble_tables_split_a_product_into_low_and_high_halves()
    {
        Span<byte> table = stackalloc byte[32];
        for (int c = 0; c < 256; c++)
        {
            GfCoefficients.WriteNibbleTables((byte)c, table);
            for (int x = 0; x < 256; x++)
                Assert.Equal(Gf256.Mul((byte)c, (byte)x), table[x & 15] ^ table[16 + (x >> 4)]);
        }
    }
}
