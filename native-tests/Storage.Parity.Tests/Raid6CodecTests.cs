using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;

namespace Storage.Parity.Tests;

public class Raid6CodecTests
{
    [Property(MaxTest = 40)]
    public Property Every_pattern_of_up_to_two_lost_chunks_recovers_exactly() =>
        Prop.ForAll(Generators.Stripes(12, 2, 2), c =>
        {
            foreach (var set in KernelSets.Available)
            {
                var codec = new Raid6Codec(set);
                var stripe = c.NewStripe();
                codec.ComputeParity(stripe.Span);
                var good = stripe.Snapshot();
                int n = stripe.Rows;
                for (int x = 0; x < n; x++)
                    for (int y = x; y < n; y++)
                    {
                        var damaged = stripe.Clone();
                        Wipe(damaged, x);
                        Wipe(damaged, y);
                        if (x == y)
                            codec.Recover(damaged.Span, x);
                        else
                            codec.Recover(damaged.Span, y, x);
                        AssertStripe(good, damaged, $"{set.Name} lost {x},{y} {c}");
                    }
            }
        });

    [Property(MaxTest = 100)]
    public Property Two_lost_data_chunks_equal_Anvins_formula() =>
        Prop.ForAll(Generators.Stripes(20, 2, 2).Filter(c => c.DataCount >= 2), c =>
        {
            var stripe = c.NewStripe();
            new Raid6Codec(KernelSets.Scalar).ComputeParity(stripe.Span);
            var rng = new Random(c.Seed);
            int x = rng.Next(c.DataCount - 1);
            int y = rng.Next(x + 1, c.DataCount);
            var rows = stripe.Snapshot();
            int k = c.DataCount;
            // A = g^(y-x)·(g^(y-x)^1)^-1, B = g^(-x)·(g^(y-x)^1)^-1
            byte denominator = Gf256.Inverse((byte)(Gf256.Exp(y - x) ^ 1));
            byte a = Gf256.Mul(Gf256.Exp(y - x), denominator);
            byte b = Gf256.Mul(Gf256.Exp(-x), denominator);
            for (int i = 0; i < c.Length; i++)
            {
                int pxy = 0, qxy = 0;
                for (int d = 0; d < k; d++)
                    if (d != x && d != y)
                    {
                        pxy ^= rows[d][i];
                        qxy ^= Gf256.Mul(Gf256.Exp(d), rows[d][i]);
                    }
                int dx = Gf256.Mul(a, (byte)(rows[k][i] ^ pxy)) ^ Gf256.Mul(b, (byte)(rows[k + 1][i] ^ qxy));
                int dy = rows[k][i] ^ pxy ^ dx;
                Assert.Equal(rows[x][i], dx);
                Assert.Equal(rows[y][i], dy);
            }
        });

    [Property(MaxTest = 100)]
    public Property Read_modify_write_update_equals_regenerating_parity() =>
        Prop.ForAll(Generators.Stripes(16, 2, 2).Filter(c => c.Length > 0), c =>
        {
            int k = c.DataCount;
            var rng = new Random(c.Seed);
            int index = rng.Next(k);
            var newData = new byte[c.Length];
            rng.NextBytes(newData);
            foreach (var set in KernelSets.Available)
            {
                var codec = new Raid6Codec(set);
                var stripe = c.NewStripe();
                codec.ComputeParity(stripe.Span);
                var oldData = stripe.RowCopy(index);
                codec.UpdateParity(index, oldData, newData, stripe.Row(k), stripe.Row(k + 1));
                newData.CopyTo(stripe.Row(index));
                var expected = stripe.Clone();
                codec.ComputeParity(expected.Span);
                AssertStripe(expected.Snapshot(), stripe, $"{set.Name} update {index} {c}");
            }
        });

    [Property(MaxTest = 100)]
    public Property Verify_locates_a_single_silently_corrupt_chunk() =>
        Prop.ForAll(Generators.Stripes(20, 2, 2).Filter(c => c.Length > 0), c =>
        {
            int k = c.DataCount;
            var rng = new Random(c.Seed);
            int bad = rng.Next(k + 2);
            foreach (var set in KernelSets.Available)
            {
                var codec = new Raid6Codec(set);
                var stripe = c.NewStripe();
                codec.ComputeParity(stripe.Span);
                Assert.Equal(new Raid6Check(true, true, -1), codec.Verify(stripe.Span));

                var good = stripe.Snapshot();
                Corrupt(stripe.Row(bad), rng, rng.Next(1, 6));
                var check = codec.Verify(stripe.Span);
                Assert.False(check.IsConsistent);
                Assert.Equal(bad, check.CorruptRow);
                Assert.Equal(bad == k + 1, check.PMatches);
                Assert.Equal(bad == k, check.QMatches);

                codec.Recover(stripe.Span, check.CorruptRow);
                AssertStripe(good, stripe, $"{set.Name} repair of row {bad} {c}");
            }
        });

    [Fact]
    public void Verify_does_not_blame_one_chunk_when_two_are_corrupt()
    {
        var codec = new Raid6Codec();
        var stripe = new TestStripe(8 + 2, 4096, seed: 11);
        codec.ComputeParity(stripe.Span);
        stripe.Row(2)[100] ^= 0x5A;
        stripe.Row(5)[900] ^= 0x33;
        var check = codec.Verify(stripe.Span);
        Assert.Equal(new Raid6Check(false, false, -1), check);
        Assert.False(check.IsRepairable);
    }

    [Fact]
    public void Three_lost_chunks_are_a_specific_error_and_the_stripe_is_untouched()
    {
        var codec = new Raid6Codec();
        var stripe = new TestStripe(6 + 2, 128, seed: 3);
        var before = stripe.Snapshot();
        var e = Assert.Throws<TooManyLostChunksException>(() =>
            new ReedSolomonCodec(6, 2).Reconstruct(stripe.Span, [0, 1, 2]));
        Assert.Equal(3, e.Lost);
        Assert.Equal(2, e.Tolerance);
        AssertStripe(before, stripe, "after refused reconstruct");
        Assert.Throws<ArgumentOutOfRangeException>(() => codec.Recover(stripe.Span, 8));
        Assert.Throws<ArgumentException>(() => codec.Recover(stripe.Span, 1, 1));
    }

    [Fact]
    public void Chunk_lengths_that_are_not_multiples_of_64_are_rejected_with_the_rule()
    {
        var stripe = new TestStripe(4 + 2, 100, seed: 1);
        var e = Assert.Throws<ArgumentException>(() => new Raid6Codec().ComputeParity(stripe.Span));
        Assert.Contains("multiple of 64", e.Message, StringComparison.Ordinal);
        var tooFew = new TestStripe(2, 64, seed: 1);
        Assert.Throws<ArgumentException>(() => new Raid6Codec().ComputeParity(tooFew.Span));
    }

    internal static void Wipe(TestStripe stripe, int row) => stripe.Row(row).Fill(0xEE);

    internal static void Corrupt(Span<byte> row, Random rng, int bytes)
    {
        var positions = new HashSet<int>();
        while (positions.Count < Math.Min(bytes, row.Length))
            positions.Add(rng.Next(row.Length));
        foreach (int at in positions)
            row[at] ^= (byte)rng.Next(1, 256);
    }

    internal static void AssertStripe(byte[][] expected, TestStripe actual, string what)
    {
        for (int r = 0; r < expected.Length; r++)
        {
            int at = expected[r].AsSpan().CommonPrefixLength(actual.Row(r));
            if (at < expected[r].Length)
                Assert.Fail($"{what}: row {r} differs at byte {at}.");
        }
    }
}
