using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;

namespace Storage.Parity.Tests;

/// <summary>Every kernel set this CPU supports against the scalar reference, and the scalar reference against the definitions.</summary>
public unsafe class KernelTests
{
    [Property(MaxTest = 150)]
    public Property Xor_matches_scalar_on_every_kernel_set() =>
        Prop.ForAll(Generators.Stripes(20, 1, 1), c =>
        {
            var expected = Run(KernelSets.Scalar, c, (set, rows, length) => set.Xor(rows, c.DataCount, rows[c.DataCount], length));
            for (int b = 0; b < c.Length; b++)
            {
                int x = 0;
                for (int i = 0; i < c.DataCount; i++)
                    x ^= expected[i][b];
                Assert.Equal(x, expected[c.DataCount][b]);
            }
            foreach (var set in KernelSets.Available)
                AssertRows(expected, Run(set, c, (s, rows, length) => s.Xor(rows, c.DataCount, rows[c.DataCount], length)), set, c);
        });

    [Property(MaxTest = 150)]
    public Property PqGen_matches_scalar_on_every_kernel_set_and_the_definition() =>
        Prop.ForAll(Generators.Stripes(24, 2, 2), c =>
        {
            int k = c.DataCount;
            var expected = Run(KernelSets.Scalar, c, (set, rows, length) => set.PqGen(rows, k, rows[k], rows[k + 1], length));
            for (int b = 0; b < c.Length; b++)
            {
                int p = 0, q = 0;
                for (int i = 0; i < k; i++)
                {
                    p ^= expected[i][b];
                    q ^= Gf256.Mul(Gf256.Exp(i), expected[i][b]);
                }
                Assert.Equal(p, expected[k][b]);
                Assert.Equal(q, expected[k + 1][b]);
            }
            foreach (var set in KernelSets.Available)
                AssertRows(expected, Run(set, c, (s, rows, length) => s.PqGen(rows, k, rows[k], rows[k + 1], length)), set, c);
        });

    [Property(MaxTest = 150)]
    public Property DotProduct_matches_scalar_on_every_kernel_set() =>
        Prop.ForAll(Generators.Stripes(16, 1, 9), ArbMap.Default.ArbFor<bool>(), (c, accumulate) =>
        {
            var rng = new Random(c.Seed);
            var matrix = new byte[c.ParityCount * c.DataCount];
            rng.NextBytes(matrix);
            matrix[0] = (byte)rng.Next(3);   // 0, 1 and 2 are the edge coefficients
            var coefficients = new GfCoefficients(matrix, c.ParityCount, c.DataCount);
            var expected = Run(KernelSets.Scalar, c, (set, rows, length) =>
                set.DotProduct(coefficients, rows, rows + c.DataCount, length, accumulate));

            var original = c.NewStripe().Snapshot();
            for (int o = 0; o < c.ParityCount; o++)
                for (int b = 0; b < c.Length; b++)
                {
                    int sum = accumulate ? original[c.DataCount + o][b] : 0;
                    for (int j = 0; j < c.DataCount; j++)
                        sum ^= Gf256.Mul(matrix[o * c.DataCount + j], original[j][b]);
                    Assert.Equal(sum, expected[c.DataCount + o][b]);
                }
            foreach (var set in KernelSets.Available)
                AssertRows(expected, Run(set, c, (s, rows, length) =>
                    s.DotProduct(coefficients, rows, rows + c.DataCount, length, accumulate)), set, c);
        });

    [Fact]
    public void Xor_may_accumulate_into_its_first_source()
    {
        byte** sources = stackalloc byte*[3];
        foreach (var set in KernelSets.Available)
        {
            var stripe = new TestStripe(3, 4096 + 64, seed: 7, misalign: 3);
            var expected = stripe.Snapshot();
            fixed (byte* a = stripe.Row(0))
            fixed (byte* b = stripe.Row(1))
            fixed (byte* d = stripe.Row(2))
            {
                sources[0] = a;
                sources[1] = b;
                sources[2] = d;
                set.Xor(sources, 3, a, stripe.Width);
            }
            for (int i = 0; i < stripe.Width; i++)
                Assert.Equal(expected[0][i] ^ expected[1][i] ^ expected[2][i], stripe.Row(0)[i]);
        }
    }

    private delegate void KernelCall(KernelSet set, byte** rows, nint length);

    private static byte[][] Run(KernelSet set, StripeCase c, KernelCall call)
    {
        var stripe = c.NewStripe();
        int n = stripe.Rows;
        byte** rows = stackalloc byte*[n];
        fixed (byte* row0 = &stripe.Span.DangerousGetReference())
        {
            var addresses = new nint[n];
            Stripe.RowAddresses(stripe.Span, row0, addresses);
            for (int i = 0; i < n; i++)
                rows[i] = (byte*)addresses[i];
            call(set, rows, c.Length);
        }
        return stripe.Snapshot();
    }

    private static void AssertRows(byte[][] expected, byte[][] actual, KernelSet set, StripeCase c)
    {
        for (int r = 0; r < expected.Length; r++)
        {
            int at = expected[r].AsSpan().CommonPrefixLength(actual[r]);
            if (at < expected[r].Length)
                Assert.Fail($"{set.Name}: row {r} differs from scalar at byte {at} for {c}.");
        }
    }
}
