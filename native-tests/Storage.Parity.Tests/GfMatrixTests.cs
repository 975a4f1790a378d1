using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;

namespace Storage.Parity.Tests;

public class GfMatrixTests
{
    [Property(MaxTest = 200)]
    public Property Any_k_rows_of_the_Cauchy_generator_invert_to_the_identity()
    {
        var cases = (from k in Gen.Choose(1, 24)
                     from m in Gen.Choose(0, 12)
                     from seed in Gen.Choose(0, int.MaxValue)
                     select (k, m, seed)).ToArbitrary();
        return Prop.ForAll(cases, c =>
        {
            var (k, m, seed) = c;
            var generator = GfMatrix.Cauchy(k + m, k);
            var rng = new Random(seed);
            var rows = Enumerable.Range(0, k + m).OrderBy(_ => rng.Next()).Take(k).ToArray();
            var sub = new byte[k * k];
            for (int i = 0; i < k; i++)
                generator.AsSpan(rows[i] * k, k).CopyTo(sub.AsSpan(i * k));
            var original = (byte[])sub.Clone();
            var inverse = new byte[k * k];
            Assert.True(GfMatrix.TryInvert(sub, inverse, k), $"rows {string.Join(",", rows)} of {k}+{m} are singular");
            var product = new byte[k * k];
            GfMatrix.Multiply(original, inverse, product, k, k, k);
            for (int i = 0; i < k; i++)
                for (int j = 0; j < k; j++)
                    Assert.Equal(i == j ? 1 : 0, product[i * k + j]);
        });
    }

    [Fact]
    public void A_singular_matrix_is_reported()
    {
        byte[] m = [1, 2, 2, 4];   // row 2 = 2·row 1
        Assert.False(GfMatrix.TryInvert(m, new byte[4], 2));
    }

    [Fact]
    public void The_Cauchy_generator_has_ISA_L_entries()
    {
        var a = GfMatrix.Cauchy(6, 4);
        Assert.Equal(1, a[0]);
        Assert.Equal(0, a[1]);
        Assert.Equal(Gf256.Inverse(4 ^ 0), a[16]);
        Assert.Equal(Gf256.Inverse(5 ^ 3), a[23]);
    }
}
