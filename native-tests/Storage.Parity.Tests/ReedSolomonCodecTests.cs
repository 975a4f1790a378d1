using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;

namespace Storage.Parity.Tests;

public class ReedSolomonCodecTests
{
    [Property(MaxTest = 150)]
    public Property Any_m_or_fewer_lost_chunks_reconstruct_exactly() =>
        Prop.ForAll(Generators.Stripes(20, 1, 8), c =>
        {
            var rng = new Random(c.Seed);
            int n = c.DataCount + c.ParityCount;
            int lostCount = rng.Next(1, c.ParityCount + 1);
            int[] lost = Enumerable.Range(0, n).OrderBy(_ => rng.Next()).Take(lostCount).ToArray();
            foreach (var set in KernelSets.Available)
            {
                var codec = new ReedSolomonCodec(c.DataCount, c.ParityCount, set);
                var stripe = c.NewStripe();
                codec.Encode(stripe.Span);
                Assert.Equal(0, codec.Verify(stripe.Span));
                var good = stripe.Snapshot();
                foreach (int row in lost)
                    Raid6CodecTests.Wipe(stripe, row);
                codec.Reconstruct(stripe.Span, lost);
                Raid6CodecTests.AssertStripe(good, stripe, $"{set.Name} lost [{string.Join(",", lost)}] {c}");
            }
        });

    [Property(MaxTest = 60)]
    public Property Encode_matches_the_generator_matrix_definition() =>
        Prop.ForAll(Generators.Stripes(12, 1, 6), c =>
        {
            var codec = new ReedSolomonCodec(c.DataCount, c.ParityCount, KernelSets.Scalar);
            var stripe = c.NewStripe();
            codec.Encode(stripe.Span);
            var rows = stripe.Snapshot();
            var g = codec.GeneratorMatrix.ToArray();
            int k = c.DataCount;
            for (int r = 0; r < c.ParityCount; r++)
                for (int b = 0; b < c.Length; b++)
                {
                    int sum = 0;
                    for (int j = 0; j < k; j++)
                        sum ^= Gf256.Mul(g[(k + r) * k + j], rows[j][b]);
                    Assert.Equal(sum, rows[k + r][b]);
                }
        });

    [Property(MaxTest = 100)]
    public Property Read_modify_write_update_equals_regenerating_parity() =>
        Prop.ForAll(Generators.Stripes(16, 1, 6).Filter(c => c.Length > 0), c =>
        {
            var rng = new Random(c.Seed);
            int index = rng.Next(c.DataCount);
            var newData = new byte[c.Length];
            rng.NextBytes(newData);
            foreach (var set in KernelSets.Available)
            {
                var codec = new ReedSolomonCodec(c.DataCount, c.ParityCount, set);
                var stripe = c.NewStripe();
                codec.Encode(stripe.Span);
                var oldData = stripe.RowCopy(index);
                codec.UpdateParity(index, oldData, newData, stripe.Span.Slice(c.DataCount, 0, c.ParityCount, c.Length));
                newData.CopyTo(stripe.Row(index));
                Assert.Equal(0, codec.Verify(stripe.Span));
            }
        });

    [Fact]
    public void Verify_names_the_parity_rows_that_disagree()
    {
        var codec = new ReedSolomonCodec(10, 4);
        var stripe = new TestStripe(14, 4096, seed: 5);
        codec.Encode(stripe.Span);
        stripe.Row(11)[7] ^= 1;
        stripe.Row(13)[4095] ^= 0x80;
        Span<int> mismatched = stackalloc int[4];
        Assert.Equal(2, codec.Verify(stripe.Span, mismatched));
        Assert.Equal([11, 13], mismatched[..2].ToArray());

        stripe.Row(0)[0] ^= 1;   // a data change shows in every parity row
        Assert.Equal(4, codec.Verify(stripe.Span, mismatched));
    }

    [Fact]
    public void Bad_shapes_and_indices_get_clear_errors()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ReedSolomonCodec(0, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ReedSolomonCodec(250, 6));
        var codec = new ReedSolomonCodec(4, 2);
        var wrongRows = new TestStripe(5, 64, seed: 1);
        var e = Assert.Throws<ArgumentException>(() => codec.Encode(wrongRows.Span));
        Assert.Contains("4+2", e.Message, StringComparison.Ordinal);
        var stripe = new TestStripe(6, 64, seed: 1);
        Assert.Throws<ArgumentOutOfRangeException>(() => codec.Reconstruct(stripe.Span, [6]));
        Assert.Throws<ArgumentException>(() => codec.Reconstruct(stripe.Span, [1, 1]));
        Assert.Throws<TooManyLostChunksException>(() => codec.Reconstruct(stripe.Span, [0, 1, 2]));
    }

    [Fact]
    public void The_largest_code_255_chunks_round_trips()
    {
        var codec = new ReedSolomonCodec(251, 4);
        var stripe = new TestStripe(255, 64, seed: 9);
        codec.Encode(stripe.Span);
        var good = stripe.Snapshot();
        int[] lost = [0, 128, 250, 254];
        foreach (int row in lost)
            Raid6CodecTests.Wipe(stripe, row);
        codec.Reconstruct(stripe.Span, lost);
        Raid6CodecTests.AssertStripe(good, stripe, "251+4");
    }
}
