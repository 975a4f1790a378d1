using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;

namespace Storage.Parity.Tests;

public class Raid5CodecTests
{
    [Property(MaxTest = 100)]
    public Property Any_single_lost_chunk_recovers_and_updates_match_regeneration() =>
        Prop.ForAll(Generators.Stripes(24, 1, 1).Filter(c => c.Length > 0), c =>
        {
            var rng = new Random(c.Seed);
            int lost = rng.Next(c.DataCount + 1);
            int index = rng.Next(c.DataCount);
            var newData = new byte[c.Length];
            rng.NextBytes(newData);
            foreach (var set in KernelSets.Available)
            {
                var codec = new Raid5Codec(set);
                var stripe = c.NewStripe();
                codec.ComputeParity(stripe.Span);
                Assert.True(codec.Verify(stripe.Span));
                var good = stripe.Snapshot();
                Raid6CodecTests.Wipe(stripe, lost);
                Assert.False(codec.Verify(stripe.Span) && lost < c.DataCount && good[lost].Any(b => b != 0xEE));
                codec.Recover(stripe.Span, lost);
                Raid6CodecTests.AssertStripe(good, stripe, $"{set.Name} lost {lost} {c}");

                codec.UpdateParity(stripe.RowCopy(index), newData, stripe.Row(c.DataCount));
                newData.CopyTo(stripe.Row(index));
                Assert.True(codec.Verify(stripe.Span), $"{set.Name} update {index} {c}");
            }
        });
}
