using System.Diagnostics;
using Storage.Devices;

namespace Storage.Raid.Tests;

/// <summary>
/// The write-intent bitmap: an unclean stop resyncs only the marked regions, and a member that was away comes back
/// with only the regions written meanwhile rebuilt. Bytes read and written are counted on the member devices.
/// </summary>
public class BitmapTests(ITestOutputHelper output)
{
    private const int Chunk = 64 * 1024;
    private const long Region = 1L << 20;

    [Fact]
    public async Task After_an_unclean_stop_only_the_marked_regions_are_resynced()
    {
        // RAID-5 4+1, 1 GiB, 1 MiB regions: 1024 bits. No journal, so the resync is what keeps parity right.
        var test = new TestArray(RaidLevel.Raid5, 5, 1, Chunk, (256L << 20) + (1 << 20), seed: 31) { BitmapRegionBytes = Region };
        var array = await test.CreateAsync(journal: false);
        Assert.Equal(1L << 30, array.Capacity);
        Assert.Equal(1024, array.BitmapRegions);
        var reference = new byte[array.Capacity];   // created on zeroed disks: nothing marked yet, everything reads as zeros
        Assert.Equal(0, array.BitmapDirtyRegions);

        // 1 % of the regions written, then the process dies (no clean stop).
        var random = new Random(2);
        var regions = Enumerable.Range(0, 1024).OrderBy(_ => random.Next()).Take(10).ToArray();
        foreach (int region in regions)
        {
            long offset = region * Region + random.Next(0, (int)(Region / 4096)) * 4096L;
            var data = Bytes.Random(4096, region);
            await array.WriteAsync(offset, data);
            data.CopyTo(reference, offset);
        }
        await array.FlushAsync();
        Assert.Equal(10, array.BitmapDirtyRegions);
        await test.PowerCutAsync(CrashMode.DropUnflushed);

        // The write hole in one marked region: a parity chunk that did not get its update.
        long stripe = regions[0] * Region / array.Geometry.StripeDataSize;
        ulong dataRoles = array.RolesHolding(stripe * array.Geometry.StripeDataSize, array.Geometry.StripeDataSize);
        int parityDisk = Enumerable.Range(0, 5).First(d => (dataRoles & (1UL << d)) == 0);
        await test.Disks[parityDisk].WriteAsync(array.Geometry.DataOffset + stripe * Chunk, Bytes.Random(Chunk, 99));

        var again = await test.AssembleAsync(1);
        long read = test.Faults.Take(5).Sum(f => f.BytesRead);
        long full = 5 * again.Geometry.MemberDataSize;   // what a resync of every stripe reads
        output.WriteLine($"assembly read {read} bytes = {100.0 * read / full:F2} % of a full resync ({full} bytes)");
        Assert.Contains(again.Assembly!.Warnings, w => w.Contains("resynced the 10 bitmap region(s)", StringComparison.Ordinal));
        Assert.InRange(read, full / 100, full * 2 / 100);
        Assert.Equal(0, (await again.ScrubAsync(repair: false)).Mismatches);   // every stripe, the torn one included
        foreach (int region in regions)
        {
            var back = new byte[Region];
            await again.ReadAsync(region * Region, back);
            Assert.True(back.AsSpan().SequenceEqual(reference.AsSpan((int)(region * Region), (int)Region)), $"region {region} reads back as written");
        }
        await again.StopAsync();
    }

    [Theory]
    [InlineData("absent")]
    [InlineData("removed")]
    public async Task A_member_back_after_missing_writes_is_resynced_from_the_bitmap_only(string how)
    {
        var (readd, readdBytes, reference) = await RunAwayAndBackAsync(bitmap: true, how);
        var (full, fullBytes, _) = await RunAwayAndBackAsync(bitmap: false, how);
        output.WriteLine($"{how}: re-add from the bitmap {readd.TotalMilliseconds:F0} ms, {readdBytes} bytes written to it; full rebuild {full.TotalMilliseconds:F0} ms, {fullBytes} bytes");
        Assert.True(readdBytes * 20 < fullBytes, $"the re-add wrote {readdBytes} bytes, a full rebuild {fullBytes}");
        Assert.NotNull(reference);
    }

    /// <summary>
    /// RAID-6 4+2 of about 128 MiB: written, then member 2 is away (left out at assembly, or failed and removed) while
    /// three regions are written, then it comes back. Returns the time and the bytes written to it until the array is in
    /// sync, after checking that the data reads back with two other members failed (so its chunks are used).
    /// </summary>
    private async Task<(TimeSpan Time, long Bytes, byte[] Reference)> RunAwayAndBackAsync(bool bitmap, string how)
    {
        var test = new TestArray(RaidLevel.Raid6, 6, 2, Chunk, (32L << 20) + (2 << 20), seed: 32) { Bitmap = bitmap, BitmapRegionBytes = Region };
        var array = await test.CreateAsync();
        var reference = Bytes.Random((int)array.Capacity, 3);
        await array.WriteAsync(0, reference);
        await array.StopAsync();

        RaidArray degraded;
        if (how == "absent")
        {
            degraded = await test.AssembleAsync(1, leaveOut: [2]);
        }
        else
        {
            degraded = await test.AssembleAsync(1);
            await degraded.FailAsync(2);
            (await degraded.RemoveAsync(2)).Dispose();
        }
        var random = new Random(4);
        foreach (int region in Enumerable.Range(0, (int)(array.Capacity / Region)).OrderBy(_ => random.Next()).Take(3))
        {
            long offset = region * Region + random.Next(0, (int)(Region / 4096)) * 4096L;
            var data = Bytes.Random(4096, region);
            await degraded.WriteAsync(offset, data);
            data.CopyTo(reference, offset);
        }
        if (bitmap)
        {
            Assert.Equal(0, await degraded.ClearIdleBitmapRegionsAsync());   // the marks wait for the member that missed them
            Assert.Equal(3, degraded.BitmapDirtyRegions);
        }
        await degraded.StopAsync();

        var again = await test.AssembleAsync(2);
        var clock = Stopwatch.StartNew();
        await again.WaitForRebuildsAsync();
        var time = clock.Elapsed;
        long written = test.Faults[2].BytesWritten;
        Assert.Contains(again.Assembly!.Warnings, w => w.Contains(bitmap ? $"re-added, resyncing the 3 of {again.BitmapRegions} bitmap regions" : "rebuilding it", StringComparison.Ordinal));
        Assert.Equal("clean", again.Status().State);
        test.Faults[0].FailAll();
        test.Faults[5].FailAll();
        var back = new byte[again.Capacity];
        await again.ReadAsync(0, back);
        Assert.True(back.AsSpan().SequenceEqual(reference), "the data reads back through the returned member");
        await again.StopAsync();
        return (time, written, reference);
    }

    [Fact]
    public async Task A_removed_member_added_back_while_running_takes_its_role_back_and_resyncs_from_the_bitmap()
    {
        var test = new TestArray(RaidLevel.Raid6, 6, 2, Chunk, (16L << 20) + (2 << 20), seed: 35) { BitmapRegionBytes = Region };
        var array = await test.CreateAsync();
        var reference = Bytes.Random((int)array.Capacity, 7);
        await array.WriteAsync(0, reference);
        Assert.True(await array.ClearIdleBitmapRegionsAsync() > 0);
        await array.FailAsync(4);
        var removed = await array.RemoveAsync(4);
        var update = Bytes.Random(4096, 8);
        await array.WriteAsync(3 * Region, update);
        update.CopyTo(reference, 3 * Region);
        test.Faults[4].ResetCounters();

        await array.AddAsync(removed);   // no force needed: it is this array's own member coming back
        await array.WaitForRebuildsAsync();
        Assert.Equal("clean", array.Status().State);
        Assert.Equal("active", array.Status().Disks[4].State);
        Assert.True(test.Faults[4].BytesWritten < 2 * Region, $"{test.Faults[4].BytesWritten} bytes rewritten on the returning member");
        test.Faults[0].FailAll();
        test.Faults[1].FailAll();
        var back = new byte[array.Capacity];
        await array.ReadAsync(0, back);
        Assert.True(back.AsSpan().SequenceEqual(reference));
        await array.StopAsync();
    }

    [Fact]
    public async Task A_re_add_cut_off_by_a_stop_resumes_from_the_bitmap_at_the_next_assembly()
    {
        var test = new TestArray(RaidLevel.Raid5, 4, 1, Chunk, (64L << 20) + (1 << 20), seed: 33) { BitmapRegionBytes = Region };
        var array = await test.CreateAsync();
        var reference = Bytes.Random((int)array.Capacity, 5);
        await array.WriteAsync(0, reference);
        await array.StopAsync();
        var degraded = await test.AssembleAsync(1, leaveOut: [1]);
        var update = Bytes.Random(8 << 20, 6);   // 9 regions of 960 KiB (5 stripes of 3 chunks)
        await degraded.WriteAsync(16 << 20, update);
        update.CopyTo(reference, 16 << 20);
        int dirty = degraded.BitmapDirtyRegions;
        await degraded.StopAsync();

        var slow = await test.AssembleAsync(2, run: TestArray.Quiet with { RebuildBytesPerSecond = 2 << 20 });
        await Task.Delay(300);
        Assert.Single(slow.Rebuilds);
        await slow.StopAsync();
        var label = await MemberLabel.ReadAsync(test.Disks[0]);
        var record = label.Superblock!.Roles[1];
        Assert.Equal(MemberState.Rebuilding, record.State);
        Assert.True(record.ResyncFromBitmap, "the superblock says the rebuild is a resync from the bitmap");

        var again = await test.AssembleAsync(3);
        await again.WaitForRebuildsAsync();
        long written = test.Faults[1].BytesWritten;
        Assert.True(written < 8L * Region, $"the resumed resync wrote {written} bytes to the member");
        test.Faults[0].FailAll();
        var back = new byte[again.Capacity];
        await again.ReadAsync(0, back);
        Assert.True(back.AsSpan().SequenceEqual(reference));
        Assert.Equal(dirty, again.BitmapDirtyRegions);
        Assert.Equal(0, await again.ClearIdleBitmapRegionsAsync());   // member 0 is failed: out of sync again
        await again.StopAsync();
    }

    [Fact]
    public async Task Regions_are_marked_on_every_member_before_the_write_and_cleared_only_when_idle_and_in_sync()
    {
        var test = new TestArray(RaidLevel.Raid6, 5, 2, Chunk, (8L << 20) + (1 << 20), seed: 34) { BitmapRegionBytes = Region };
        var array = await test.CreateAsync();
        // 3 data chunks of 64 KiB: 1 MiB holds 5 whole stripes (960 KiB) per bit.
        Assert.Equal((array.Geometry.StripeCount + 4) / 5, array.BitmapRegions);
        var status = array.Status();
        Assert.Equal(RaidArray.LabelAreaSize, status.BitmapOffset);
        Assert.Equal(Region - Region % array.Geometry.StripeDataSize, status.BitmapRegionBytes);

        foreach (var fault in test.Faults)
            fault.ResetCounters();
        await array.WriteAsync(5 * Region, Bytes.Random(4096, 1));
        long marking = test.Faults.Sum(f => f.Writes);
        Assert.Equal(1, array.BitmapDirtyRegions);
        foreach (var disk in test.Disks.Take(5))
        {
            var bits = new byte[4096];
            await disk.ReadAsync(RaidArray.LabelAreaSize, bits);   // durable on the disk itself, not just in memory
            Assert.NotEqual(0, bits[0] | bits[1] | bits[2]);
        }
        foreach (var fault in test.Faults)
            fault.ResetCounters();
        await array.WriteAsync(5 * Region + 8192, Bytes.Random(4096, 2));
        Assert.Equal(marking - 5, test.Faults.Sum(f => f.Writes));   // the same update again, without the bitmap write to each member

        Assert.Equal(1, await array.ClearIdleBitmapRegionsAsync());
        Assert.Equal(0, array.BitmapDirtyRegions);
        var cleared = new byte[4096];
        await test.Disks[0].ReadAsync(RaidArray.LabelAreaSize, cleared);
        Assert.All(cleared, b => Assert.Equal(0, b));
        await array.StopAsync();
    }
}
