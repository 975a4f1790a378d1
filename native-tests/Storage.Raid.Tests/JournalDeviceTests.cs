using Storage.Devices;

namespace Storage.Raid.Tests;

/// <summary>The write journal on a device of its own (md's --write-journal): placement, assembly rules, crashes.</summary>
public class JournalDeviceTests
{
    private const int Chunk = 16 * 1024;

    [Fact]
    public async Task Journalled_writes_go_to_the_journal_device_and_none_to_a_ring_in_the_members()
    {
        var test = new TestArray(RaidLevel.Raid6, 6, 2, Chunk, 8L << 20, seed: 3, separateJournal: true);
        var array = await test.CreateAsync();
        Assert.Equal(RaidArray.HeaderSize(Chunk, journal: false), array.Geometry.DataOffset);   // no ring reserved in the members
        var status = array.Status();
        Assert.Equal("journal", status.JournalDevice);
        Assert.Equal(RaidArray.JournalDeviceSize(6, Chunk, test.JournalSlots) - RaidArray.LabelAreaSize, status.JournalBytes);

        var data = Bytes.Random((int)array.Capacity, 4);
        await array.WriteAsync(0, data);
        foreach (var fault in test.Faults)
            fault.ResetCounters();
        var random = new Random(5);
        var expected = (byte[])data.Clone();
        for (int i = 0; i < 200; i++)
        {
            long offset = random.NextInt64(0, array.Capacity / 4096) * 4096;
            var bytes = Bytes.Random(4096, 100 + i);
            await array.WriteAsync(offset, bytes);
            bytes.CopyTo(expected, offset);
        }
        var journal = test.Faults[test.JournalDisk];
        Assert.Equal(200, journal.Writes);   // one packed write per record
        Assert.Equal(200L * 3 * (4096 + 4096), journal.BytesWritten);   // data, P and Q parts, each a 4 KiB header and 4 KiB of data
        Assert.True(journal.Flushes > 0);
        // Members see only the in-place writes: the read-modify-write's data chunk, P and Q.
        long memberWrites = test.Faults.Take(6).Sum(f => f.Writes);
        Assert.True(memberWrites <= 200 * 3, $"{memberWrites} member writes for 200 updates of one chunk, P and Q");
        await array.StopAsync();

        var again = await test.AssembleAsync(1);
        Assert.True(again.Assembly!.WasClean);
        var back = new byte[expected.Length];
        await again.ReadAsync(0, back);
        Assert.Equal(expected, back);
        Assert.Equal(0, (await again.ScrubAsync(repair: false)).Mismatches);
        Assert.Equal("journal", again.Status().JournalDevice);
        await again.StopAsync();
    }

    [Fact]
    public async Task Assembly_needs_the_journal_device_and_refuses_another_arrays()
    {
        var test = new TestArray(RaidLevel.Raid5, 4, 1, Chunk, 4L << 20, seed: 6, separateJournal: true);
        await (await test.CreateAsync()).StopAsync();
        var other = new TestArray(RaidLevel.Raid5, 4, 1, Chunk, 4L << 20, seed: 7, separateJournal: true);
        await (await other.CreateAsync()).StopAsync();

        var missing = await Assert.ThrowsAsync<ArrayConfigurationException>(() => test.AssembleAsync(1, leaveOut: [test.JournalDisk]));
        Assert.Contains("journal on a separate device", missing.Message, StringComparison.Ordinal);

        var members = test.Wrap(2)[..4];
        var foreign = await Assert.ThrowsAsync<ArrayConfigurationException>(() => RaidArray.AssembleAsync([.. members, other.Wrap(2)[other.JournalDisk]]));
        Assert.Contains("different arrays", foreign.Message, StringComparison.Ordinal);

        var alone = await Assert.ThrowsAsync<ArrayConfigurationException>(() => RaidArray.AssembleAsync([test.Wrap(3)[test.JournalDisk]]));
        Assert.Contains("only the journal device", alone.Message, StringComparison.Ordinal);

        var label = await MemberLabel.ReadAsync(test.Disks[test.JournalDisk]);
        Assert.Equal(Superblock.JournalRole, label.Superblock!.Role);
        Assert.Contains("journal device", label.Description, StringComparison.Ordinal);
        var fine = await test.AssembleAsync(4);
        await fine.StopAsync();
    }

    [Fact]
    public async Task A_journal_device_lost_for_good_can_be_left_behind_and_the_array_resyncs_and_runs_without_it()
    {
        var test = new TestArray(RaidLevel.Raid6, 6, 2, Chunk, 8L << 20, seed: 9, separateJournal: true) { BitmapRegionBytes = 1 << 20 };
        var array = await test.CreateAsync();
        var reference = Bytes.Random((int)array.Capacity, 10);
        await array.WriteAsync(0, reference);
        await array.FlushAsync();
        await test.PowerCutAsync(CrashMode.DropUnflushed);   // not stopped cleanly; then the journal device dies

        await Assert.ThrowsAsync<ArrayConfigurationException>(() => test.AssembleAsync(1, leaveOut: [test.JournalDisk]));
        var again = await test.AssembleAsync(2, leaveOut: [test.JournalDisk], run: TestArray.Quiet with { AssembleWithoutJournalDevice = true });
        Assert.Contains(again.Assembly!.Warnings, w => w.Contains("assembled without a journal from now on", StringComparison.Ordinal));
        Assert.Contains(again.Assembly.Warnings, w => w.Contains("resynced", StringComparison.Ordinal));
        Assert.False(again.Status().Journal);
        Assert.Equal(0, (await again.ScrubAsync(repair: false)).Mismatches);
        var back = new byte[again.Capacity];
        await again.ReadAsync(0, back);
        Assert.Equal(reference, back);   // every write had been flushed home
        await again.WriteAsync(4096, Bytes.Random(4096, 11));
        await again.StopAsync();

        var later = await test.AssembleAsync(3, leaveOut: [test.JournalDisk]);   // the superblocks say so now: no option needed
        Assert.False(later.Status().Journal);
        await later.StopAsync();
    }

    [Fact]
    public async Task Creation_refuses_a_journal_device_that_is_too_small_in_use_or_a_member()
    {
        var disks = Enumerable.Range(0, 4).Select(i => (IBlockDevice)new MemoryBlockDevice(4L << 20, 512, $"d{i}")).ToArray();
        var options = new ArrayCreateOptions { Level = RaidLevel.Raid5, ChunkSize = Chunk, AssumeZeroed = true };
        var small = new MemoryBlockDevice(1L << 20, 512, "small");
        var tooSmall = await Assert.ThrowsAsync<ArrayConfigurationException>(() => RaidArray.CreateAsync(disks, options with { JournalDevice = small }));
        Assert.Contains("too small for the journal", tooSmall.Message, StringComparison.Ordinal);
        var twice = await Assert.ThrowsAsync<ArrayConfigurationException>(() => RaidArray.CreateAsync(disks, options with { JournalDevice = disks[0] }));
        Assert.Contains("both as the journal device and as a disk", twice.Message, StringComparison.Ordinal);
        var off = await Assert.ThrowsAsync<ArrayConfigurationException>(() => RaidArray.CreateAsync(disks, options with { Journal = false, JournalDevice = new MemoryBlockDevice(RaidArray.JournalDeviceSize(4, Chunk), 512, "j") }));
        Assert.Contains("journal off", off.Message, StringComparison.Ordinal);

        var used = new MemoryBlockDevice(RaidArray.JournalDeviceSize(4, Chunk), 512, "used");
        await used.WriteAsync(0, Bytes.Random(4096, 1));
        var inUse = await Assert.ThrowsAsync<ArrayConfigurationException>(() => RaidArray.CreateAsync(disks, options with { JournalDevice = used }));
        Assert.Contains("refusing to overwrite", inUse.Message, StringComparison.Ordinal);
        var data = new byte[4096];
        await used.ReadAsync(0, data);
        Assert.Equal(Bytes.Random(4096, 1), data);   // untouched
    }

    [Fact]
    public async Task A_failed_journal_device_fails_the_write_and_leaves_the_members_in_the_array()
    {
        var test = new TestArray(RaidLevel.Raid5, 4, 1, Chunk, 4L << 20, seed: 8, separateJournal: true);
        var array = await test.CreateAsync();
        await array.WriteAsync(0, Bytes.Random(4096, 2));
        test.Faults[test.JournalDisk].FailAll();
        var failure = await Assert.ThrowsAsync<JournalDeviceException>(async () => await array.WriteAsync(8192, Bytes.Random(4096, 3)));
        Assert.Contains("journal device", failure.Message, StringComparison.Ordinal);
        Assert.All(array.Status().Disks, d => Assert.Equal("active", d.State));
        var back = new byte[4096];
        await array.ReadAsync(0, back);
        Assert.Equal(Bytes.Random(4096, 2), back);
        await array.StopAsync();
    }
}
