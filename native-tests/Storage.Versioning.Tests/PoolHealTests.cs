using Storage.Raid;
using Storage.Raid.Tests;

namespace Storage.Versioning.Tests;

/// <summary>Bit rot under a live volume: every rotten block is detected by its checksum and repaired from parity.</summary>
public class PoolHealTests
{
    private static readonly PoolOpenOptions Manual = new() { CommitInterval = TimeSpan.Zero };

    [Theory]
    [InlineData(RaidLevel.Raid5, 4, 1)]
    [InlineData(RaidLevel.Raid6, 6, 2)]
    public async Task Rot_within_the_arrays_tolerance_is_all_detected_and_all_repaired(RaidLevel level, int members, int parity)
    {
        const int chunk = 16 * 1024;
        var test = new TestArray(level, members, parity, chunk, 24L << 20, seed: members);
        var array = await test.CreateAsync();
        var pool = await Pool.CreateAsync(array, new PoolCreateOptions { Name = "p", BlockSize = 16 * 1024 }, Manual);
        await pool.CreateVolumeAsync("v", 48L << 20);
        var volume = pool.OpenVolume("v");
        var data = Bytes.Random(40 << 20, 9);
        await volume.WriteAsync(0, data);
        await volume.FlushAsync();

        // Rot one byte in up to `parity` chunks of each chosen stripe, inside the volume's data.
        var random = new Random(5);
        long stripeData = array.Geometry.StripeDataSize, stripes = (40L << 20) / stripeData;
        int rottenData = 0;
        foreach (long stripe in Enumerable.Range(0, 60).Select(_ => random.NextInt64(100, stripes)).Distinct())
        {
            ulong dataRoles = array.RolesHolding(stripe * stripeData, stripeData);
            foreach (int disk in Enumerable.Range(0, members).OrderBy(_ => random.Next()).Take(random.Next(1, parity + 1)))
            {
                await test.Faults[disk].CorruptAtAsync(array.Geometry.DataOffset + stripe * chunk + random.Next(chunk));
                if ((dataRoles & (1UL << disk)) != 0)
                    rottenData++;
            }
        }
        var back = new byte[data.Length];
        await volume.ReadAsync(0, back);
        Assert.Equal(data, back);
        var status = pool.GetStatus();
        Assert.True(rottenData > 20, $"only {rottenData} data chunks rotten");
        Assert.Equal(rottenData, status.ChecksumErrors);   // every rotten block detected
        Assert.Equal(rottenData, status.Repairs);          // and repaired
        Assert.Equal(0, status.Unrecoverable);
        // Repaired in place: a second pass and a scrub find nothing.
        await volume.ReadAsync(0, back);
        Assert.Equal(status.Repairs, pool.GetStatus().Repairs);
        var scrub = await pool.ScrubAsync();
        Assert.Equal(0, scrub.Repaired);
        Assert.Equal(0, scrub.Unrecoverable);
        await pool.DisposeAsync();
        await array.StopAsync();
    }

    [Fact]
    public async Task Rot_beyond_the_tolerance_fails_the_read_instead_of_returning_wrong_bytes()
    {
        const int chunk = 16 * 1024;
        var test = new TestArray(RaidLevel.Raid5, 4, 1, chunk, 16L << 20, seed: 3);
        var array = await test.CreateAsync();
        var pool = await Pool.CreateAsync(array, new PoolCreateOptions { Name = "p", BlockSize = 16 * 1024 }, Manual);
        await pool.CreateVolumeAsync("v", 16L << 20);
        var volume = pool.OpenVolume("v");
        await volume.WriteAsync(0, Bytes.Random(8 << 20, 2));
        await volume.FlushAsync();
        const long stripe = 100;   // inside the volume's data
        for (int disk = 0; disk < 2; disk++)
            await test.Faults[disk].CorruptAtAsync(array.Geometry.DataOffset + stripe * chunk + 100);
        var back = new byte[8 << 20];
        await Assert.ThrowsAsync<ChecksumMismatchException>(async () => await volume.ReadAsync(0, back));
        var scrub = await pool.ScrubAsync();
        Assert.True(scrub.Unrecoverable >= 1);
        Assert.NotEmpty(scrub.Errors);
        await pool.DisposeAsync();
        await array.StopAsync();
    }
}

/// <summary>A scrub that runs while blocks are freed and reused checks only entries that still hold their block.</summary>
public class PoolScrubRaceTests
{
    private sealed class Inline(Action<PoolProgress> report) : IProgress<PoolProgress>
    {
        public void Report(PoolProgress value) => report(value);
    }

    [Fact]
    public async Task Blocks_freed_and_reused_during_a_scrub_are_not_reported_as_unrecoverable()
    {
        // A plain device: any checksum mismatch the scrub finds is unrecoverable, so a false one shows.
        var disk = new Storage.Devices.MemoryBlockDevice(24L << 20, 512, "disk");
        var pool = await Pool.CreateAsync(disk, new PoolCreateOptions { Name = "p", BlockSize = 4096 }, new PoolOpenOptions { CommitInterval = TimeSpan.Zero });
        await pool.CreateVolumeAsync("a", 12L << 20);
        await pool.OpenVolume("a").WriteAsync(0, Bytes.Random(12 << 20, 1));
        await pool.CommitAsync();

        bool replaced = false;
        var progress = new Inline(_ =>
        {
            if (replaced)
                return;
            replaced = true;
            // Free every block of 'a' and fill the same space with other bytes, under the scrub's feet.
            pool.DeleteVolumeAsync("a").GetAwaiter().GetResult();
            pool.CreateVolumeAsync("b", 12L << 20).GetAwaiter().GetResult();
            pool.OpenVolume("b").WriteAsync(0, Bytes.Random(12 << 20, 2)).AsTask().GetAwaiter().GetResult();
            pool.CommitAsync().GetAwaiter().GetResult();
        });
        var result = await pool.ScrubAsync(progress);

        Assert.True(replaced);
        Assert.Equal(0, result.Unrecoverable);
        Assert.Empty(result.Errors);
        Assert.Equal(0, (await pool.ScrubAsync()).Unrecoverable);
        await pool.DisposeAsync();
    }

    [Fact]
    public async Task A_pool_name_of_the_longest_allowed_length_is_kept()
    {
        var disk = new Storage.Devices.MemoryBlockDevice(24L << 20, 512, "disk");
        string name = new('n', 64);
        var pool = await Pool.CreateAsync(disk, new PoolCreateOptions { Name = name }, new PoolOpenOptions { CommitInterval = TimeSpan.Zero });
        await pool.DisposeAsync();
        pool = await Pool.OpenAsync(disk);
        Assert.Equal(name, pool.Name);
        await pool.DisposeAsync();
        await Assert.ThrowsAsync<PoolConfigurationException>(() => Pool.CreateAsync(new Storage.Devices.MemoryBlockDevice(24L << 20, 512, "d2"), new PoolCreateOptions { Name = new('n', 65) }));
    }
}
