namespace Storage.Parity.Tests;

/// <summary>Hot paths allocate nothing once warm (a decode plan is built once per erasure pattern).</summary>
public class AllocationTests
{
    [Fact]
    public void Parity_generation_update_recovery_and_verify_allocate_nothing()
    {
        foreach (var set in KernelSets.Available)
        {
            var r5 = new Raid5Codec(set);
            var r6 = new Raid6Codec(set);
            var rs = new ReedSolomonCodec(10, 4, set);
            var five = new TestStripe(9, 4096, seed: 1, misalign: 3);
            var six = new TestStripe(10, 4096, seed: 2);
            var ten = new TestStripe(14, 4096, seed: 3, pitch: 64);
            var scratch = new byte[4096];
            int[] lost = [1, 7, 12];

            void Work()
            {
                r5.ComputeParity(five.Span);
                r5.Recover(five.Span, 2);
                r5.UpdateParity(five.Row(0), scratch, five.Row(8));
                r5.Verify(five.Span);
                r6.ComputeParity(six.Span);
                r6.Recover(six.Span, 3, 6);
                r6.UpdateParity(4, six.Row(4), scratch, six.Row(8), six.Row(9));
                r6.Verify(six.Span);
                rs.Encode(ten.Span);
                rs.Reconstruct(ten.Span, lost);
                rs.UpdateParity(2, ten.Row(2), scratch, ten.Span.Slice(10, 0, 4, 4096));
                rs.Verify(ten.Span);
                GfVector.Multiply(0x8E, scratch, six.Row(0), set);
                GfVector.MultiplyAccumulate(0x8E, scratch, six.Row(1), set);
            }

            // The runtime itself may allocate once while it tiers up freshly called methods, so a path
            // passes when one of several measured windows allocates nothing; a path that allocates per
            // call shows it in every window.
            var windows = new List<long>();
            for (int window = 0; window < 5 && (windows.Count == 0 || windows[^1] != 0); window++)
            {
                Work();
                long before = GC.GetAllocatedBytesForCurrentThread();
                for (int i = 0; i < 20; i++)
                    Work();
                windows.Add(GC.GetAllocatedBytesForCurrentThread() - before);
            }
            Assert.True(windows[^1] == 0, $"{set.Name}: bytes allocated per 20 warm rounds: {string.Join(", ", windows)}.");
        }
    }
}
