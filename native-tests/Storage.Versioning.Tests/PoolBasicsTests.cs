using Storage.Devices;
using Storage.Raid;
using Storage.Raid.Tests;

namespace Storage.Versioning.Tests;

public class PoolBasicsTests
{
    private static readonly PoolOpenOptions Manual = new() { CommitInterval = TimeSpan.Zero };

    [Fact]
    public async Task Volume_reads_back_what_was_written_and_zeros_elsewhere_across_reopen()
    {
        var disk = new MemoryBlockDevice(64L << 20, 512, "disk");
        var pool = await Pool.CreateAsync(disk, new PoolCreateOptions { Name = "p" }, Manual);
        await pool.CreateVolumeAsync("v", 1L << 30);
        var volume = pool.OpenVolume("v");
        var data = Bytes.Random(100_000 / 512 * 512, 1);
        await volume.WriteAsync(512 * 7, data);
        var back = new byte[data.Length];
        await volume.ReadAsync(512 * 7, back);
        Assert.Equal(data, back);
        var zeros = new byte[1 << 20];
        await volume.ReadAsync(500L << 20, zeros);
        Assert.All(zeros, b => Assert.Equal(0, b));
        await pool.DisposeAsync();

        pool = await Pool.OpenAsync(disk, Manual);
        volume = pool.OpenVolume("v");
        Array.Clear(back);
        await volume.ReadAsync(512 * 7, back);
        Assert.Equal(data, back);
        Assert.Equal((512 * 7 + data.Length - 1) / pool.BlockSize + 1, pool.ListVolumes()[0].MappedBytes / pool.BlockSize);
        await pool.DisposeAsync();
    }

    [Fact]
    public async Task Flushed_writes_survive_a_crash_and_unflushed_ones_do_not_break_the_pool()
    {
        var inner = new MemoryBlockDevice(64L << 20, 512, "disk");
        var disk = new FaultInjectingDevice(inner, 5, leaveInnerOpen: true);
        var pool = await Pool.CreateAsync(disk, new PoolCreateOptions { Name = "p" }, Manual);
        await pool.CreateVolumeAsync("v", 256L << 20);
        var volume = pool.OpenVolume("v");
        var first = Bytes.Random(1 << 20, 2);
        await volume.WriteAsync(0, first);
        await volume.FlushAsync();
        await volume.WriteAsync(0, Bytes.Random(1 << 20, 3));
        await disk.CrashAsync(CrashMode.TearUnflushed);
        disk.Restart();

        var again = await Pool.OpenAsync(disk, Manual);
        var back = new byte[first.Length];
        await again.OpenVolume("v").ReadAsync(0, back);
        Assert.Equal(first, back);
        await again.DisposeAsync();
    }

    [Fact]
    public async Task Snapshot_keeps_old_bytes_and_rollback_brings_them_back()
    {
        var disk = new MemoryBlockDevice(64L << 20, 512, "disk");
        await using var pool = await Pool.CreateAsync(disk, new PoolCreateOptions { Name = "p", BlockSize = 4096 }, Manual);
        await pool.CreateVolumeAsync("v", 16L << 20);
        var volume = pool.OpenVolume("v");
        var before = Bytes.Random(1 << 20, 4);
        await volume.WriteAsync(0, before);
        await pool.CreateSnapshotAsync("v", "s1");
        var after = Bytes.Random(1 << 20, 5);
        await volume.WriteAsync(0, after);

        var back = new byte[before.Length];
        await pool.OpenSnapshot("v", "s1").ReadAsync(0, back);
        Assert.Equal(before, back);
        await volume.ReadAsync(0, back);
        Assert.Equal(after, back);
        Assert.Equal(1 << 20, pool.ListSnapshots("v")[0].UniqueBytes);

        await pool.RollbackAsync("v", "s1");
        await volume.ReadAsync(0, back);
        Assert.Equal(before, back);
        await pool.CommitAsync();
        Assert.Equal(before.Length, pool.GetStatus().UsedBytes - CheckpointBytes(pool));
    }

    [Fact]
    public async Task Pool_on_raid6_heals_bit_rot_from_parity()
    {
        var test = new TestArray(RaidLevel.Raid6, 6, 2, 64 * 1024, 16L << 20, 7);
        var array = await test.CreateAsync();
        var pool = await Pool.CreateAsync(array, new PoolCreateOptions { Name = "p" }, Manual);
        await pool.CreateVolumeAsync("v", 32L << 20);
        var volume = pool.OpenVolume("v");
        var data = Bytes.Random(8 << 20, 8);
        await volume.WriteAsync(0, data);
        await volume.FlushAsync();
        // Rot a byte on every member, each in another stripe: one bad chunk per stripe, which parity repairs.
        for (int disk = 0; disk < 6; disk++)
            await test.Faults[disk].CorruptAtAsync(array.Geometry.DataOffset + (1 << 20) + disk * 3 * 65536 + 1000);
        var back = new byte[data.Length];
        await volume.ReadAsync(0, back);
        Assert.Equal(data, back);
        Assert.True(pool.GetStatus().Repairs > 0);
        var scrub = await pool.ScrubAsync();
        Assert.Equal(0, scrub.Unrecoverable);
        await pool.DisposeAsync();
        await array.StopAsync();
    }

    private static long CheckpointBytes(Pool pool) => pool.CheckpointBlockCount * (long)pool.BlockSize;
}

public class PoolCleanerTests(ITestOutputHelper output)
{
    /// <summary>
    /// Random overwrites at a given fill keep going long after the first pass has used every fresh segment: the
    /// cleaner makes fresh ones (at 50 % no block needs the journal), data and space stay right, reopening agrees.
    /// </summary>
    [Theory]
    [InlineData(50)]
    [InlineData(90)]
    public async Task Random_overwrites_at_fill_are_cleaned_into_fresh_segments(int fillPercent)
    {
        var disk = new MemoryBlockDevice(40L << 20, 512, "disk");
        var pool = await Pool.CreateAsync(disk, new PoolCreateOptions { Name = "p", BlockSize = 4096 }, new PoolOpenOptions { CommitInterval = TimeSpan.Zero });
        long size = pool.GetStatus().TotalBytes * fillPercent / 100 / 4096 * 4096;
        await pool.CreateVolumeAsync("v", size);
        var volume = pool.OpenVolume("v");
        var reference = Bytes.Random((int)size, 1);
        await volume.WriteAsync(0, reference);
        var random = new Random(2);
        for (int i = 0; i < 30_000; i++)
        {
            long offset = random.NextInt64(size / 4096) * 4096;
            var data = Bytes.Random(4096, i);
            await volume.WriteAsync(offset, data);
            data.CopyTo(reference, offset);
            if (i % 500 == 0)
                await volume.FlushAsync();
        }
        var status = pool.GetStatus();
        output.WriteLine($"fill {fillPercent} %: {status.CleanedSegments} segments cleaned, {status.JournalledBlockWrites} of 30000 block writes through the journal");
        Assert.True(status.CleanedSegments > 0, "the cleaner never ran");
        if (fillPercent <= 50)
            Assert.Equal(0, status.JournalledBlockWrites);
        var back = new byte[size];
        await volume.ReadAsync(0, back);
        Assert.Equal(reference, back);
        Assert.Null(pool.CheckSpace());
        await pool.DisposeAsync();
        pool = await Pool.OpenAsync(disk);
        await pool.OpenVolume("v").ReadAsync(0, back);
        Assert.Equal(reference, back);
        await pool.DisposeAsync();
    }

    /// <summary>
    /// 32 writers overwriting a half-full pool with no timed commit: space comes back only through commits the
    /// writers trigger when they find none, and a writer must wait for one in progress rather than fail with ENOSPC.
    /// </summary>
    [Fact]
    public async Task Concurrent_overwrites_of_a_half_full_pool_never_see_enospc()
    {
        var disk = new MemoryBlockDevice(40L << 20, 512, "disk");
        await using var pool = await Pool.CreateAsync(disk, new PoolCreateOptions { Name = "p" }, new PoolOpenOptions { CommitInterval = TimeSpan.Zero });
        long size = pool.GetStatus().TotalBytes / 2 / 4096 * 4096;
        await pool.CreateVolumeAsync("v", size);
        using var volume = pool.OpenVolume("v");
        await volume.WriteAsync(0, Bytes.Random((int)size, 1));
        await Task.WhenAll(Enumerable.Range(0, 32).Select(writer => Task.Run(async () =>
        {
            var random = new Random(writer);
            var data = Bytes.Random(4096, writer);
            for (int i = 0; i < 400; i++)
                await volume.WriteAsync(random.NextInt64(size / 4096) * 4096, data);
        })));
        Assert.Null(pool.CheckSpace());
    }
}

/// <summary>A pool on a memory disk that can lose its unflushed writes, committing every change at once.</summary>
internal static class CrashablePool
{
    public static async Task<(FaultInjectingDevice Disk, Pool Pool)> CreateAsync()
    {
        var disk = new FaultInjectingDevice(new MemoryBlockDevice(32L << 20, 512, "disk"), 3, leaveInnerOpen: true);
        return (disk, await Pool.CreateAsync(disk, new PoolCreateOptions { Name = "p" }, new PoolOpenOptions { CommitInterval = TimeSpan.Zero }));
    }
}

/// <summary>Renaming a snapshot: through the log (a crash before any checkpoint) and through a checkpoint.</summary>
public class PoolSnapshotRenameTests
{
    [Fact]
    public async Task A_renamed_snapshot_keeps_its_bytes_and_its_new_name_survives_replay_and_checkpoint()
    {
        var (disk, pool) = await CrashablePool.CreateAsync();
        await pool.CreateVolumeAsync("v", 4L << 20);
        var before = Bytes.Random(1 << 20, 4);
        await pool.OpenVolume("v").WriteAsync(0, before);
        await pool.CreateSnapshotAsync("v", "staged");
        await pool.OpenVolume("v").WriteAsync(0, Bytes.Random(1 << 20, 5));
        await Assert.ThrowsAsync<PoolConfigurationException>(() => pool.RenameSnapshotAsync("v", "nope", "x"));
        await pool.CreateSnapshotAsync("v", "other");
        await Assert.ThrowsAsync<PoolConfigurationException>(() => pool.RenameSnapshotAsync("v", "staged", "other"));
        await pool.RenameSnapshotAsync("v", "staged", "final");
        await disk.CrashAsync(CrashMode.DropUnflushed);   // no checkpoint since: the rename comes back from the log
        disk.Restart();

        pool = await Pool.OpenAsync(disk);
        Assert.Equal(["final", "other"], pool.ListSnapshots("v").Select(s => s.Name));
        var back = new byte[before.Length];
        await pool.OpenSnapshot("v", "final").ReadAsync(0, back);
        Assert.Equal(before, back);
        await pool.DisposeAsync();   // checkpoint
        pool = await Pool.OpenAsync(disk);
        Assert.Equal(["final", "other"], pool.ListSnapshots("v").Select(s => s.Name));
        await pool.DisposeAsync();
    }
}

/// <summary>Several snapshots taken as one: one version, all or none, through the log.</summary>
public class PoolSnapshotBatchTests
{
    [Fact]
    public async Task A_batch_of_snapshots_is_one_instant_and_a_bad_one_takes_none()
    {
        var (disk, pool) = await CrashablePool.CreateAsync();
        await pool.CreateVolumeAsync("a", 4L << 20);
        await pool.CreateVolumeAsync("b", 4L << 20);
        var first = Bytes.Random(1 << 20, 6);
        await pool.OpenVolume("a").WriteAsync(0, first);
        await pool.OpenVolume("b").WriteAsync(0, first);
        await pool.CreateSnapshotAsync("b", "taken");

        await Assert.ThrowsAsync<PoolConfigurationException>(() => pool.CreateSnapshotsAsync([("a", "cut"), ("b", "taken")]));
        await Assert.ThrowsAsync<PoolConfigurationException>(() => pool.CreateSnapshotsAsync([("a", "cut"), ("a", "cut")]));
        await Assert.ThrowsAsync<PoolConfigurationException>(() => pool.CreateSnapshotsAsync([("a", "cut"), ("nope", "cut")]));
        Assert.Empty(pool.ListSnapshots("a"));

        await pool.CreateSnapshotsAsync([("a", "cut"), ("b", "cut")]);
        await pool.OpenVolume("a").WriteAsync(0, Bytes.Random(1 << 20, 7));
        await disk.CrashAsync(CrashMode.DropUnflushed);   // the batch comes back from the log
        disk.Restart();

        pool = await Pool.OpenAsync(disk);
        var a = pool.ListSnapshots("a").Single();
        var b = pool.ListSnapshots("b").Single(s => s.Name == "cut");
        Assert.Equal(a.Version, b.Version);
        var back = new byte[first.Length];
        await pool.OpenSnapshot("a", "cut").ReadAsync(0, back);
        Assert.Equal(first, back);
        Assert.Null(pool.CheckSpace());
        await pool.DisposeAsync();
    }
}
