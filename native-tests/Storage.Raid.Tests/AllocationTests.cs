using Storage.Devices;

namespace Storage.Raid.Tests;

/// <summary>
/// Once warm, 4 KiB and full-stripe writes and reads of a RAID-6 array allocate nothing, healthy and with a member
/// failed, journal on and off. Memory disks complete every call at once, so the whole request runs on the test's
/// thread and <see cref="GC.GetAllocatedBytesForCurrentThread"/> sees all of it (tests on other threads do not
/// disturb it). This checks allocation, not time.
/// </summary>
public class AllocationTests
{
    private const int Chunk = 16 * 1024, Members = 6, Parity = 2, Rounds = 64;

    public enum Op
    {
        Write4K,
        Read4K,
        WriteStripe,
        ReadStripe,
    }

    public static TheoryData<Op, bool, bool> Cases()
    {
        var cases = new TheoryData<Op, bool, bool>();
        foreach (var op in Enum.GetValues<Op>())
        {
            foreach (bool degraded in new[] { false, true })
            {
                cases.Add(op, degraded, true);
                if (op is Op.Write4K or Op.WriteStripe)
                    cases.Add(op, degraded, false);
            }
        }
        return cases;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Warm_requests_allocate_nothing(Op op, bool degraded, bool journal)
    {
        var disks = Enumerable.Range(0, Members).Select(i => (IBlockDevice)new MemoryBlockDevice(8 << 20, 512, $"mem{i}")).ToArray();
        var options = new ArrayCreateOptions { Level = RaidLevel.Raid6, ChunkSize = Chunk, Name = "alloc", AssumeZeroed = true, Journal = journal, JournalSlots = 16 };
        await using var array = await RaidArray.CreateAsync(disks, options);
        if (degraded)
            await array.FailAsync(0);
        int stripeBytes = (int)array.Geometry.StripeDataSize;
        int length = op is Op.Write4K or Op.Read4K ? 4096 : stripeBytes;
        var buffer = new byte[length];
        new Random(3).NextBytes(buffer);
        // Offsets walk every data index and, for 4 KiB, every position in a chunk, over more stripes than one
        // rotation of the parity, so every row (the failed member's included) is hit in each window.
        long span = (long)stripeBytes * Members * 4;
        long At(int i) => i * (long)length % span;

        async ValueTask Run(int i)
        {
            if (op is Op.Write4K or Op.WriteStripe)
                await array.WriteAsync(At(i), buffer);
            else
                await array.ReadAsync(At(i), buffer);
        }

        // The runtime may allocate while it tiers up freshly called methods, so the path passes when one of
        // several measured windows allocates less than a byte per request; a per-request allocation shows in
        // every window.
        for (int i = 0; i < 4 * Rounds; i++)
            await Run(i);
        var windows = new List<long>();
        for (int window = 0; window < 20 && (windows.Count == 0 || windows[^1] >= Rounds); window++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < Rounds; i++)
                await Run(i);
            windows.Add(GC.GetAllocatedBytesForCurrentThread() - before);
        }
        Assert.True(windows[^1] < Rounds, $"bytes allocated per {Rounds} warm requests: {string.Join(", ", windows)}");
    }
}
