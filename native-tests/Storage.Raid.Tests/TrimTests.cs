using Storage.Devices;
using Storage.Devices.Tests;
using Storage.Native;

namespace Storage.Raid.Tests;

/// <summary>
/// Trim reaches the members: whole stripes are discarded on every member (parity too), partial ones written as zeros;
/// the range reads as zeros, parity stays consistent, file members give the space back, and a crash cannot bring
/// trimmed data back from the journal.
/// </summary>
public sealed class TrimTests
{
    private const int Chunk = 4096;

    [Theory]
    [InlineData(RaidLevel.Raid5, 4, 1)]
    [InlineData(RaidLevel.Raid6, 6, 2)]
    [InlineData(RaidLevel.ReedSolomon, 7, 3)]
    [InlineData(RaidLevel.Raid1, 3, 2)]
    [InlineData(RaidLevel.Raid0, 3, 0)]
    public async Task Random_trims_and_writes_match_a_reference_and_scrub_finds_parity_consistent(RaidLevel level, int members, int parity)
    {
        var test = new TestArray(level, members, parity, Chunk, 2 << 20, seed: 11);
        var array = await test.CreateAsync();
        var reference = new byte[array.Capacity];
        var random = new Random(members * 10 + parity);
        long stripe = array.Geometry.StripeDataSize;
        for (int step = 0; step < 120; step++)
        {
            long sectors = array.Capacity / 512;
            long start = random.NextInt64(0, sectors - 1), count = random.NextInt64(1, Math.Min(sectors - start, step % 4 == 0 ? 4 * stripe / 512 : 64) + 1);
            if (step % 2 == 0)
            {
                var data = Bytes.Random((int)(count * 512), step);
                await array.WriteAsync(start * 512, data);
                data.CopyTo(reference, start * 512);
            }
            else
            {
                await array.TrimAsync(start * 512, count * 512);
                Array.Clear(reference, (int)(start * 512), (int)(count * 512));
            }
        }
        var back = new byte[array.Capacity];
        await array.ReadAsync(0, back);
        Assert.Equal(reference, back);
        if (parity > 0)
        {
            var scrub = await array.ScrubAsync(repair: false);
            Assert.Equal(0, scrub.Mismatches);
        }
        Assert.True(test.Faults.All(f => f.Trims > 0), "every member was trimmed");
        await array.StopAsync();
    }

    [Fact]
    public async Task A_trim_of_whole_stripes_gives_the_space_of_file_members_back()
    {
        using var directory = new TempDirectory();
        var disks = Enumerable.Range(0, 4).Select(i => (IBlockDevice)FileBlockDevice.Create(directory.File($"d{i}.img"), 8 << 20)).ToArray();
        var array = await RaidArray.CreateAsync(disks, new ArrayCreateOptions { Level = RaidLevel.Raid5, ChunkSize = 64 * 1024, AssumeZeroed = true, Name = "trim" });
        var data = Bytes.Random((int)(array.Capacity / 2), 3);
        await array.WriteAsync(0, data);
        await array.FlushAsync();
        long before = Allocated(directory);
        await array.TrimAsync(0, data.Length);
        await array.FlushAsync();
        long after = Allocated(directory);
        Assert.True(after < before - data.Length, $"allocated {before} -> {after} bytes: a trim of {data.Length} data bytes (plus parity) must free at least that much");
        var back = new byte[data.Length];
        await array.ReadAsync(0, back);
        Assert.All(back, b => Assert.Equal(0, b));
        Assert.Equal(0, (await array.ScrubAsync(repair: false)).Mismatches);
        await array.StopAsync();
    }

    [Fact]
    public async Task Stripes_that_every_file_member_holds_as_a_hole_are_reported_as_holes()
    {
        using var directory = new TempDirectory();
        var disks = Enumerable.Range(0, 4).Select(i => (IBlockDevice)FileBlockDevice.Create(directory.File($"d{i}.img"), 8 << 20)).ToArray();
        var array = await RaidArray.CreateAsync(disks, new ArrayCreateOptions { Level = RaidLevel.Raid5, ChunkSize = 64 * 1024, AssumeZeroed = true, Name = "holes" });
        long stripe = array.Geometry.StripeDataSize;
        Assert.Equal([new AllocationExtent(array.Capacity, AllocationState.Hole | AllocationState.Zero)], await AllExtentsAsync(array));

        await array.WriteAsync(0, Bytes.Random((int)(2 * stripe), 1));          // stripes 0 and 1
        await array.WriteAsync(10 * stripe + 4096, Bytes.Random(4096, 2));      // part of stripe 10
        await array.TrimAsync(0, stripe);                                       // stripe 0 again
        await array.FlushAsync();
        Assert.Equal(
            [
                new AllocationExtent(stripe, AllocationState.Hole | AllocationState.Zero),
                new AllocationExtent(stripe, AllocationState.Data),
                new AllocationExtent(8 * stripe, AllocationState.Hole | AllocationState.Zero),
                new AllocationExtent(stripe, AllocationState.Data),
                new AllocationExtent(array.Capacity - 11 * stripe, AllocationState.Hole | AllocationState.Zero),
            ],
            await AllExtentsAsync(array));
        var inside = await array.GetAllocationAsync(stripe + 512, 1024);        // a query inside one stripe
        Assert.Equal([new AllocationExtent(1024, AllocationState.Data)], inside);
        await array.StopAsync();

        var memory = new TestArray(RaidLevel.Raid5, 4, 1, Chunk, 2 << 20, seed: 13);
        var other = await memory.CreateAsync();
        Assert.Equal([new AllocationExtent(other.Capacity, AllocationState.Data)], await AllExtentsAsync(other));   // memory disks cannot say
        await other.StopAsync();
    }

    private static async Task<List<AllocationExtent>> AllExtentsAsync(RaidArray array)
    {
        var all = new List<AllocationExtent>();
        for (long position = 0; position < array.Capacity;)
        {
            foreach (var extent in await array.GetAllocationAsync(position, array.Capacity - position))
            {
                if (all.Count > 0 && all[^1].State == extent.State)
                    all[^1] = new AllocationExtent(all[^1].Length + extent.Length, extent.State);
                else
                    all.Add(extent);
                position += extent.Length;
            }
        }
        return all;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_power_cut_after_a_flushed_trim_does_not_replay_older_data_over_it(bool assembleBetween)
    {
        var test = new TestArray(RaidLevel.Raid6, 5, 2, Chunk, 2 << 20, seed: 12);
        var array = await test.CreateAsync();
        long stripe = array.Geometry.StripeDataSize;
        var old = Bytes.Random((int)(4 * stripe), 1);
        await array.WriteAsync(0, old);                // journalled: these records stay in the ring
        await array.FlushAsync();
        int generation = 0;
        if (assembleBetween)
        {
            await array.StopAsync();                   // the records are still on disk after a clean stop
            array = await test.AssembleAsync(++generation);
        }
        await array.TrimAsync(0, 4 * stripe);
        await array.FlushAsync();
        await test.PowerCutAsync(CrashMode.DropUnflushed);

        var again = await test.AssembleAsync(++generation);
        var back = new byte[4 * stripe];
        await again.ReadAsync(0, back);
        Assert.True(back.All(b => b == 0), "trimmed stripes read as zeros after the crash, not as the data a journal replay brought back");
        Assert.Equal(0, (await again.ScrubAsync(repair: false)).Mismatches);
        await again.StopAsync();
    }

    private static long Allocated(TempDirectory directory) => Directory.GetFiles(directory.Path).Sum(path =>
        LibC.Stat(path, Statx.BlocksMask, out var stat) == 0 ? stat.AllocatedBytes : throw new IOException($"statx {path} failed"));
}
