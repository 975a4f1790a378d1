using Storage.Devices;

namespace Storage.Raid.Tests;

public class ArrayTests
{
    public static TheoryData<RaidLevel, int, int> Levels => new()
    {
        { RaidLevel.Raid0, 3, 0 },
        { RaidLevel.Raid1, 3, 2 },
        { RaidLevel.Raid5, 4, 1 },
        { RaidLevel.Raid6, 6, 2 },
        { RaidLevel.ReedSolomon, 7, 3 },
    };

    [Theory]
    [MemberData(nameof(Levels))]
    public async Task Writes_read_back_across_chunk_and_stripe_boundaries(RaidLevel level, int members, int parity)
    {
        var test = new TestArray(level, members, parity, 4096, 4 << 20, seed: 1);
        await using var array = await test.CreateAsync();
        var reference = new byte[array.Capacity];
        var random = new Random(5);
        for (int i = 0; i < 60; i++)
        {
            int length = random.Next(1, 40) * TestArray.Sector;
            long offset = random.NextInt64(0, (array.Capacity - length) / TestArray.Sector) * TestArray.Sector;
            var data = Bytes.Random(length, i);
            await array.WriteAsync(offset, data);
            data.CopyTo(reference, offset);
        }
        var back = new byte[array.Capacity];
        await array.ReadAsync(0, back);
        Assert.Equal(reference, back);
        var scrub = await array.ScrubAsync(repair: false);
        Assert.Equal(0, scrub.Mismatches);
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public async Task Survives_as_many_failures_as_the_level_tolerates_and_no_more(RaidLevel level, int members, int parity)
    {
        var test = new TestArray(level, members, parity, 4096, 2 << 20, seed: 2);
        var array = await test.CreateAsync();
        var data = Bytes.Random((int)Math.Min(array.Capacity, 256 * 1024), 9);
        await array.WriteAsync(0, data);
        for (int failed = 0; failed < parity; failed++)
        {
            test.Faults[failed * 2 % members].FailAll();
            var back = new byte[data.Length];
            await array.ReadAsync(0, back);
            Assert.Equal(data, back);
            // Writes while degraded keep parity right: overwrite, then read through another failure.
            var update = Bytes.Random(8192, 100 + failed);
            await array.WriteAsync(12288, update);
            update.CopyTo(data, 12288);
        }
        if (parity == 0)
            await array.FlushAsync();   // RAID-0 has no journal: only flushed writes are promised
        var last = Enumerable.Range(0, members).First(i => !test.Faults[i].IsFailed);
        test.Faults[last].FailAll();
        await Assert.ThrowsAsync<ArrayFailedException>(async () =>
        {
            await array.ReadAsync(0, new byte[data.Length]);
            await array.WriteAsync(0, new byte[4096]);
        });
        await Assert.ThrowsAsync<ArrayFailedException>(async () => await array.WriteAsync(0, new byte[4096]));
        await array.StopAsync();

        // The failure one too many was not recorded: when that disk comes back (a cable, a controller reset), the
        // array assembles with it, and every acknowledged write is there.
        var again = await test.AssembleAsync(1);
        Assert.Equal(members - parity, again.Status().Disks.Count(d => d.State == "active"));
        var after = new byte[data.Length];
        await again.ReadAsync(0, after);
        Assert.Equal(data, after);
        await again.StopAsync();
    }

    [Fact]
    public async Task Failing_a_member_by_request_beyond_the_tolerance_is_refused()
    {
        var test = new TestArray(RaidLevel.Raid5, 4, 1, 4096, 2 << 20, seed: 2);
        var array = await test.CreateAsync();
        await array.FailAsync(1);
        var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => array.FailAsync(2));
        Assert.Contains("refused", refused.Message, StringComparison.Ordinal);
        await array.WriteAsync(0, new byte[4096]);
        await array.StopAsync();
    }

    [Fact]
    public async Task Rebuilds_onto_a_spare_while_writes_continue_and_assembles_again()
    {
        var test = new TestArray(RaidLevel.Raid6, 6, 2, 4096, 2 << 20, seed: 3, spares: 2);
        var array = await test.CreateAsync();
        var reference = Bytes.Random((int)array.Capacity, 1);
        await array.WriteAsync(0, reference);
        test.Faults[1].FailAll();
        test.Faults[4].FailAll();
        await array.WriteAsync(0, reference.AsMemory(0, 65536));   // a write before the spares are caught up
        var writes = Task.Run(async () =>
        {
            var random = new Random(7);
            for (int i = 0; i < 50; i++)
            {
                int length = random.Next(1, 16) * 512;
                long offset = random.NextInt64(0, (array.Capacity - length) / 512) * 512;
                var data = Bytes.Random(length, 1000 + i);
                await array.WriteAsync(offset, data);
                lock (reference)
                    data.CopyTo(reference, offset);
            }
        });
        await writes;
        await array.WaitForRebuildsAsync();
        var status = array.Status();
        Assert.Equal("clean", status.State);
        Assert.Equal(["active", "active", "active", "active", "active", "active"], status.Disks.Where(d => d.Role >= 0).Select(d => d.State));
        Assert.Contains("mem6", status.Disks.Select(d => d.Device));
        Assert.Equal(0, (await array.ScrubAsync(repair: false)).Mismatches);
        await array.StopAsync();

        // The failed disks are stale now; assembly leaves them out and reports why.
        var again = await test.AssembleAsync(1);
        Assert.Equal(2, again.Assembly!.Warnings.Count);
        var back = new byte[again.Capacity];
        await again.ReadAsync(0, back);
        Assert.Equal(reference, back);
        await again.StopAsync();
    }

    [Theory]
    [InlineData(false, "rebuilding it")]
    [InlineData(true, "re-added, resyncing the 1 of 1 bitmap regions")]
    public async Task A_member_missing_at_one_assembly_is_rebuilt_when_it_comes_back(bool bitmap, string warning)
    {
        var test = new TestArray(RaidLevel.Raid5, 4, 1, 4096, 2 << 20, seed: 13) { Bitmap = bitmap };
        var array = await test.CreateAsync();
        var reference = Bytes.Random((int)array.Capacity, 6);
        await array.WriteAsync(0, reference);
        await array.StopAsync();

        var degraded = await test.AssembleAsync(1, leaveOut: [2]);   // disk 2 is not there this time
        var update = Bytes.Random(65536, 7);
        await degraded.WriteAsync(8192, update);                     // it misses this write
        update.CopyTo(reference, 8192);
        await degraded.StopAsync();

        var again = await test.AssembleAsync(2);
        Assert.Contains(again.Assembly!.Warnings, w => w.Contains(warning, StringComparison.Ordinal));
        await again.WaitForRebuildsAsync();
        Assert.Equal("clean", again.Status().State);
        test.Faults[0].FailAll();   // the returned disk now carries real data
        var back = new byte[again.Capacity];
        await again.ReadAsync(0, back);
        Assert.Equal(reference, back);
        await again.StopAsync();
    }

    [Fact]
    public async Task Removing_by_the_spare_role_names_what_to_do_and_the_status_says_where_data_and_journal_lie()
    {
        var test = new TestArray(RaidLevel.Raid5, 4, 1, 4096, 4 << 20, seed: 6, spares: 1);
        var array = await test.CreateAsync();
        var e = await Assert.ThrowsAsync<ArgumentException>(() => array.RemoveAsync(-1));
        Assert.Contains("give the role (0 to 3) of a faulty member", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("RemoveSpareAsync", e.Message, StringComparison.Ordinal);   // named a method that does not exist

        var status = array.Status();
        Assert.Equal(array.Geometry.DataOffset, status.DataOffset);
        Assert.NotNull(status.JournalOffset);
        Assert.InRange(status.JournalOffset!.Value, RaidArray.LabelAreaSize, status.DataOffset - status.JournalBytes);
        Assert.True(status.JournalBytes > 0);
        await array.StopAsync();
    }

    [Fact]
    public async Task A_rebuild_resumes_from_its_checkpoint_after_a_stop()
    {
        var test = new TestArray(RaidLevel.Raid5, 4, 1, 4096, 4 << 20, seed: 4, spares: 1);
        var slow = TestArray.Quiet with { RebuildBytesPerSecond = 2 << 20 };
        var array = await test.CreateAsync(run: slow);
        var reference = Bytes.Random((int)array.Capacity, 2);
        await array.WriteAsync(0, reference);
        await array.FailAsync(2);
        await Task.Delay(400);
        var progress = Assert.Single(array.Rebuilds);
        Assert.InRange(progress.StripesDone, 1, progress.StripesTotal - 1);
        Assert.NotNull(progress.Remaining);
        await array.StopAsync();

        var again = await test.AssembleAsync(1);
        var resumed = again.Status().Disks.Single(d => d.Device == "mem4");
        Assert.Equal("rebuilding", resumed.State);
        Assert.True(resumed.RebuildCheckpoint > 0, "the checkpoint was persisted");
        await again.WaitForRebuildsAsync();
        Assert.Equal("clean", again.Status().State);
        test.Faults[0].FailAll();   // the rebuilt member now carries the array through another failure
        var back = new byte[again.Capacity];
        await again.ReadAsync(0, back);
        Assert.Equal(reference, back);
        await again.StopAsync();
    }

    [Theory]
    [InlineData(RaidLevel.Raid6, 6, 2)]
    [InlineData(RaidLevel.ReedSolomon, 7, 3)]
    [InlineData(RaidLevel.Raid1, 3, 2)]
    public async Task Scrub_finds_and_repairs_a_silently_corrupted_chunk(RaidLevel level, int members, int parity)
    {
        var test = new TestArray(level, members, parity, 4096, 2 << 20, seed: 5);
        var array = await test.CreateAsync();
        var reference = Bytes.Random((int)array.Capacity, 3);
        await array.WriteAsync(0, reference);
        await array.FlushAsync();
        long dataOffset = array.Geometry.DataOffset;
        await test.Faults[1].CorruptAtAsync(dataOffset + 3 * 4096 + 17);   // stripe 3 on member 1
        var check = await array.ScrubAsync(repair: false);
        Assert.Equal(1, check.Mismatches);
        Assert.Equal(1, check.MismatchesPerRole[1]);
        var repair = await array.ScrubAsync(repair: true);
        Assert.Equal(1, repair.Repaired);
        Assert.Equal(0, (await array.ScrubAsync(repair: false)).Mismatches);
        var back = new byte[array.Capacity];
        await array.ReadAsync(0, back);
        Assert.Equal(reference, back);
        await array.StopAsync();
    }

    [Fact]
    public async Task Raid5_scrub_counts_a_mismatch_and_repair_rewrites_parity()
    {
        var test = new TestArray(RaidLevel.Raid5, 4, 1, 4096, 2 << 20, seed: 6);
        var array = await test.CreateAsync();
        await array.WriteAsync(0, Bytes.Random((int)array.Capacity, 4));
        await array.FlushAsync();
        await test.Faults[0].CorruptAtAsync(array.Geometry.DataOffset + 5 * 4096);
        var check = await array.ScrubAsync(repair: false);
        Assert.Equal(1, check.Mismatches);
        Assert.Equal(1, (await array.ScrubAsync(repair: true)).Repaired);
        Assert.Equal(0, (await array.ScrubAsync(repair: false)).Mismatches);
        await array.StopAsync();
    }

    [Fact]
    public async Task Read_errors_while_degraded_fail_only_those_blocks()
    {
        var test = new TestArray(RaidLevel.Raid5, 4, 1, 4096, 2 << 20, seed: 7);
        var array = await test.CreateAsync();
        var reference = Bytes.Random((int)array.Capacity, 5);
        await array.WriteAsync(0, reference);
        test.Faults[3].FailAll();
        long dataOffset = array.Geometry.DataOffset;
        test.Faults[1].FailReads(dataOffset + 2 * 4096, 4096);   // stripe 2 on member 1: now two chunks of that stripe are gone
        long stripe2 = 2 * array.Geometry.StripeDataSize;
        var bad = await Assert.ThrowsAsync<BadBlockException>(async () => await array.ReadAsync(stripe2, new byte[array.Geometry.StripeDataSize]));
        Assert.InRange(bad.Offset, stripe2, stripe2 + array.Geometry.StripeDataSize - 1);
        Assert.Single(array.BadBlocks);
        // Everything else still reads; the array is degraded, not failed.
        var other = new byte[array.Geometry.StripeDataSize];
        await array.ReadAsync(0, other);
        Assert.Equal(reference.AsSpan(0, other.Length).ToArray(), other);
        Assert.Equal("degraded", array.Status().State);
        // Writing the range again makes it readable.
        test.Faults[1].ClearFaults();
        await array.WriteAsync(bad.Offset, new byte[bad.Length]);
        Assert.Empty(array.BadBlocks);
        await array.StopAsync();
    }

    [Fact]
    public async Task Refuses_disks_with_data_or_another_arrays_superblock_and_changes_nothing()
    {
        var test = new TestArray(RaidLevel.Raid5, 3, 1, 4096, 2 << 20, seed: 8);
        test.Disks[1].Bytes[1080] = 0x53;
        test.Disks[1].Bytes[1081] = 0xEF;   // ext4 magic
        var before = test.Disks.Select(d => d.Bytes.ToArray()).ToArray();
        var e = await Assert.ThrowsAsync<ArrayConfigurationException>(() => test.CreateAsync());
        Assert.Contains("mem1 holds an ext2/3/4 filesystem", e.Message, StringComparison.Ordinal);
        for (int i = 0; i < test.Disks.Length; i++)
            Assert.True(before[i].AsSpan().SequenceEqual(test.Disks[i].Bytes), $"disk {i} changed");

        var other = new TestArray(RaidLevel.Raid5, 3, 1, 4096, 2 << 20, seed: 9);
        var first = await other.CreateAsync();
        await first.StopAsync();
        var again = await Assert.ThrowsAsync<ArrayConfigurationException>(() => other.CreateAsync(1));
        Assert.Contains("member 0 of array 'test'", again.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Assembly_refuses_disks_of_two_arrays_and_too_few_members()
    {
        var a = new TestArray(RaidLevel.Raid5, 3, 1, 4096, 2 << 20, seed: 10);
        var b = new TestArray(RaidLevel.Raid5, 3, 1, 4096, 2 << 20, seed: 11);
        await (await a.CreateAsync()).StopAsync();
        await (await b.CreateAsync()).StopAsync();
        var mixed = await Assert.ThrowsAsync<ArrayConfigurationException>(() => RaidArray.AssembleAsync([a.Wrap(1)[0], a.Wrap(2)[1], b.Wrap(1)[2]]));
        Assert.Contains("different arrays", mixed.Message, StringComparison.Ordinal);
        var few = await Assert.ThrowsAsync<ArrayConfigurationException>(() => a.AssembleAsync(2, leaveOut: [0, 1]));
        Assert.Contains("needs at least 2 of its 3 members", few.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Misaligned_or_out_of_range_requests_are_rejected()
    {
        var test = new TestArray(RaidLevel.Raid5, 3, 1, 4096, 2 << 20, seed: 12);
        await using var array = await test.CreateAsync();
        await Assert.ThrowsAsync<ArgumentException>(async () => await array.WriteAsync(100, new byte[512]));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await array.ReadAsync(array.Capacity, new byte[512]));
    }
}
