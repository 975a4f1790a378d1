using System.Diagnostics;

namespace Storage.Devices.Tests;

/// <summary>Each fault of <see cref="FaultInjectingDevice"/>, its write cache and its crash semantics.</summary>
public class FaultInjectingDeviceTests
{
    private const int Sector = 512;
    private const long Capacity = 256 * Sector;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static (FaultInjectingDevice Device, MemoryBlockDevice Inner) Create(int seed = 1)
    {
        var inner = new MemoryBlockDevice(Capacity, Sector, "disk0");
        return (new FaultInjectingDevice(inner, seed), inner);
    }

    private static async Task<byte[]> Read(FaultInjectingDevice device, long offset, int length)
    {
        var bytes = new byte[length];
        await device.ReadAsync(offset, bytes, Ct);
        return bytes;
    }

    [Fact]
    public async Task Unflushed_writes_are_read_back_but_reach_the_inner_device_only_on_flush()
    {
        var (device, inner) = Create();
        using var _ = device;
        Assert.Equal("disk0", device.Name);
        var data = Bytes.Random(4 * Sector, 1);
        await device.WriteAsync(8 * Sector, data, cancellationToken: Ct);

        Bytes.Equal(data, await Read(device, 8 * Sector, data.Length), "read-your-writes");
        Assert.True(inner.Bytes.IndexOfAnyExcept((byte)0) < 0, "an unflushed write reached the inner device");
        Assert.Equal(4, device.UnflushedSectors);

        // A read that spans cached and uncached sectors.
        var wide = await Read(device, 6 * Sector, 8 * Sector);
        Assert.True(wide.AsSpan(0, 2 * Sector).IndexOfAnyExcept((byte)0) < 0);
        Bytes.Equal(data, wide.AsSpan(2 * Sector, 4 * Sector), "cached part of a wide read");

        await device.FlushAsync(Ct);
        Assert.Equal(0, device.UnflushedSectors);
        Bytes.Equal(data, inner.Bytes.Slice(8 * Sector, data.Length), "inner device after flush");
        Assert.Equal((2, 1, 1, 0), (device.Reads, device.Writes, device.Flushes, device.Trims));
        device.ResetCounters();
        Assert.Equal(0, device.Reads + device.Writes + device.Flushes);
    }

    [Fact]
    public async Task A_fua_write_is_durable_at_once_and_leaves_other_unflushed_writes_unflushed()
    {
        var (device, inner) = Create();
        using var _ = device;
        var a = Bytes.Random(Sector, 1);
        var b = Bytes.Random(2 * Sector, 2);
        var c = Bytes.Random(Sector, 3);
        await device.WriteAsync(0, a, cancellationToken: Ct);
        await device.WriteAsync(16 * Sector, c, cancellationToken: Ct);
        await device.WriteAsync(8 * Sector, b, forceUnitAccess: true, Ct);
        // A FUA write over an unflushed sector supersedes it.
        var d = Bytes.Random(Sector, 4);
        await device.WriteAsync(16 * Sector, d, forceUnitAccess: true, Ct);

        Bytes.Equal(b, inner.Bytes.Slice(8 * Sector, b.Length), "FUA data on the inner device");
        Bytes.Equal(d, inner.Bytes.Slice(16 * Sector, Sector), "FUA over an unflushed sector");
        Assert.True(inner.Bytes[..Sector].IndexOfAnyExcept((byte)0) < 0, "FUA flushed another write");
        Assert.Equal(1, device.UnflushedSectors);

        await device.CrashAsync(CrashMode.DropUnflushed);
        device.Restart();
        Assert.True((await Read(device, 0, Sector)).AsSpan().IndexOfAnyExcept((byte)0) < 0, "an unflushed write survived a drop crash");
        Bytes.Equal(b, await Read(device, 8 * Sector, b.Length), "FUA write after crash");
        Bytes.Equal(d, await Read(device, 16 * Sector, Sector), "FUA write over an unflushed one after crash");
    }

    [Fact]
    public async Task A_drop_crash_loses_every_unflushed_write_and_the_device_refuses_calls_until_restart()
    {
        var (device, inner) = Create();
        using var _ = device;
        var flushed = Bytes.Random(8 * Sector, 1);
        await device.WriteAsync(0, flushed, cancellationToken: Ct);
        await device.FlushAsync(Ct);
        await device.WriteAsync(2 * Sector, Bytes.Random(4 * Sector, 2), cancellationToken: Ct);
        await device.WriteAsync(20 * Sector, Bytes.Random(Sector, 3), cancellationToken: Ct);

        await device.CrashAsync(CrashMode.DropUnflushed);
        Assert.True(device.IsCrashed);
        Assert.Equal(0, device.UnflushedSectors);
        foreach (var call in Calls(device))
        {
            var e = await Assert.ThrowsAsync<BlockDeviceException>(call);
            Assert.Contains("device crashed", e.Message, StringComparison.Ordinal);
            Assert.Equal("disk0", e.Device);
        }

        device.Restart();
        Assert.False(device.IsCrashed);
        var all = await Bytes.ReadAllAsync(device);
        Bytes.Equal(flushed, all.AsSpan(0, flushed.Length), "flushed data after crash");
        Assert.True(all.AsSpan(flushed.Length).IndexOfAnyExcept((byte)0) < 0, "unflushed data survived a drop crash");
        Bytes.Equal(all, inner.Bytes, "the wrapper reads what the inner device holds after restart");
    }

    [Fact]
    public async Task A_torn_crash_keeps_a_random_subset_of_sectors_and_replays_from_its_seed()
    {
        async Task<byte[]> Run(int seed)
        {
            var (device, inner) = Create(seed);
            using var _ = device;
            await device.WriteAsync(0, Bytes.Random(64 * Sector, 1), cancellationToken: Ct);
            await device.FlushAsync(Ct);
            await device.WriteAsync(0, Bytes.Random(64 * Sector, 2), cancellationToken: Ct);
            await device.CrashAsync(CrashMode.TearUnflushed);
            return inner.Bytes.ToArray();
        }

        var old = Bytes.Random(64 * Sector, 1);
        var @new = Bytes.Random(64 * Sector, 2);
        var first = await Run(seed: 5);
        int kept = 0;
        for (int s = 0; s < 64; s++)
        {
            var sector = first.AsSpan(s * Sector, Sector);
            bool isNew = sector.SequenceEqual(@new.AsSpan(s * Sector, Sector));
            Assert.True(isNew || sector.SequenceEqual(old.AsSpan(s * Sector, Sector)), $"sector {s} is neither old nor new");
            kept += isNew ? 1 : 0;
        }
        Assert.InRange(kept, 1, 63);
        Bytes.Equal(first, await Run(seed: 5), "same seed, same crash");
        Assert.NotEqual(first, await Run(seed: 6));
    }

    [Fact]
    public async Task A_call_in_flight_at_a_crash_fails_even_if_the_device_restarts_before_it_completes()
    {
        var (device, _) = Create();
        using var __ = device;
        device.Latency = TimeSpan.FromMilliseconds(200);
        var read = device.ReadAsync(0, new byte[Sector], Ct).AsTask();
        var write = device.WriteAsync(0, new byte[Sector], cancellationToken: Ct).AsTask();
        await device.CrashAsync(CrashMode.DropUnflushed);
        device.Restart();
        Assert.Contains("crashed", (await Assert.ThrowsAsync<BlockDeviceException>(() => read)).Message, StringComparison.Ordinal);
        Assert.Contains("crashed", (await Assert.ThrowsAsync<BlockDeviceException>(() => write)).Message, StringComparison.Ordinal);
        Assert.Equal(0, device.UnflushedSectors);
    }

    [Fact]
    public async Task Bad_read_ranges_fail_reads_that_touch_them_until_cleared()
    {
        var (device, _) = Create();
        using var __ = device;
        var data = Bytes.Random(16 * Sector, 1);
        await device.WriteAsync(0, data, cancellationToken: Ct);
        device.FailReads(4 * Sector, 2 * Sector);

        var e = await Assert.ThrowsAsync<BlockDeviceException>(() => device.ReadAsync(0, new byte[16 * Sector], Ct).AsTask());
        Assert.Equal((4L * Sector, 2L * Sector), (e.Offset, e.Length));
        Assert.Contains("injected read error", e.Message, StringComparison.Ordinal);
        e = await Assert.ThrowsAsync<BlockDeviceException>(() => device.ReadAsync(5 * Sector, new byte[4 * Sector], Ct).AsTask());
        Assert.Equal((5L * Sector, 1L * Sector), (e.Offset, e.Length));
        var beside = await Read(device, 0, 4 * Sector);
        Bytes.Equal(data.AsSpan(0, 4 * Sector), beside, "read beside the bad range");
        var after = await Read(device, 6 * Sector, 10 * Sector);
        Bytes.Equal(data.AsSpan(6 * Sector), after, "read after the bad range");
        // Writes to the range still work; the bad sectors stay bad.
        await device.WriteAsync(4 * Sector, new byte[Sector], cancellationToken: Ct);
        await Assert.ThrowsAsync<BlockDeviceException>(() => device.ReadAsync(4 * Sector, new byte[Sector], Ct).AsTask());
        Assert.Equal(3, device.InjectedErrors);

        device.ClearFaults();
        Assert.True((await Read(device, 4 * Sector, Sector)).AsSpan().IndexOfAnyExcept((byte)0) < 0);
        Assert.Throws<ArgumentException>(() => device.FailReads(1, Sector));
    }

    [Fact]
    public async Task Bad_write_ranges_fail_writes_and_trims_without_changing_anything()
    {
        var (device, inner) = Create();
        using var _ = device;
        var data = Bytes.Random(8 * Sector, 1);
        await device.WriteAsync(0, data, forceUnitAccess: true, Ct);
        device.FailWrites(2 * Sector, Sector);

        await Assert.ThrowsAsync<BlockDeviceException>(() => device.WriteAsync(0, new byte[4 * Sector], cancellationToken: Ct).AsTask());
        await Assert.ThrowsAsync<BlockDeviceException>(() => device.WriteAsync(2 * Sector, new byte[Sector], forceUnitAccess: true, Ct).AsTask());
        await Assert.ThrowsAsync<BlockDeviceException>(() => device.TrimAsync(0, 8 * Sector, Ct).AsTask());
        Bytes.Equal(data, await Read(device, 0, data.Length), "after refused writes");
        Bytes.Equal(data, inner.Bytes[..data.Length], "inner after refused writes");
        Assert.Equal(0, device.UnflushedSectors);
        await device.WriteAsync(3 * Sector, new byte[Sector], cancellationToken: Ct);

        device.ClearFaults();
        await device.WriteAsync(2 * Sector, new byte[Sector], cancellationToken: Ct);
    }

    [Fact]
    public async Task Error_rates_fail_about_that_share_of_calls_and_replay_from_the_seed()
    {
        async Task<bool[]> Run(int seed)
        {
            var (device, _) = Create(seed);
            using var __ = device;
            device.ReadErrorRate = 0.3;
            device.WriteErrorRate = 0.3;
            var failed = new bool[400];
            for (int i = 0; i < failed.Length; i++)
            {
                try
                {
                    if (i % 2 == 0)
                        await device.ReadAsync(0, new byte[Sector], Ct);
                    else
                        await device.WriteAsync(0, new byte[Sector], cancellationToken: Ct);
                }
                catch (BlockDeviceException)
                {
                    failed[i] = true;
                }
            }
            Assert.Equal(failed.Count(f => f), device.InjectedErrors);
            return failed;
        }

        var first = await Run(3);
        Assert.InRange(first.Count(f => f), 80, 160);
        Assert.InRange(first.Where((_, i) => i % 2 == 0).Count(f => f), 30, 90);
        Assert.Equal(first, await Run(3));
        Assert.NotEqual(first, await Run(4));

        var (device, _) = Create();
        using var ___ = device;
        Assert.Throws<ArgumentOutOfRangeException>(() => device.ReadErrorRate = 1.5);
        Assert.Throws<ArgumentOutOfRangeException>(() => device.WriteErrorRate = double.NaN);
        device.WriteErrorRate = 1;
        await Assert.ThrowsAsync<BlockDeviceException>(() => device.WriteAsync(0, new byte[Sector], cancellationToken: Ct).AsTask());
    }

    [Fact]
    public async Task A_torn_write_applies_some_of_its_sectors_and_throws()
    {
        var (device, inner) = Create(seed: 9);
        using var _ = device;
        device.TornWriteRate = 1;
        var data = Bytes.Random(32 * Sector, 1);
        var e = await Assert.ThrowsAsync<BlockDeviceException>(() => device.WriteAsync(0, data, cancellationToken: Ct).AsTask());
        Assert.Contains("torn write", e.Message, StringComparison.Ordinal);
        var fua = Bytes.Random(32 * Sector, 2);
        await Assert.ThrowsAsync<BlockDeviceException>(() => device.WriteAsync(64 * Sector, fua, forceUnitAccess: true, Ct).AsTask());
        device.ClearFaults();

        var back = await Read(device, 0, 96 * Sector);
        foreach (var (offset, written) in new[] { (0, data), (64 * Sector, fua) })
        {
            int kept = 0;
            for (int s = 0; s < 32; s++)
            {
                var sector = back.AsSpan(offset + s * Sector, Sector);
                bool isNew = sector.SequenceEqual(written.AsSpan(s * Sector, Sector));
                Assert.True(isNew || sector.IndexOfAnyExcept((byte)0) < 0, $"sector {s} at {offset} is torn inside");
                kept += isNew ? 1 : 0;
            }
            Assert.InRange(kept, 1, 31);
        }
        // The torn FUA write's sectors are durable; the plain one's are not.
        Bytes.Equal(back.AsSpan(64 * Sector, 32 * Sector), inner.Bytes.Slice(64 * Sector, 32 * Sector), "torn FUA write on the inner device");
        Assert.True(inner.Bytes[..(32 * Sector)].IndexOfAnyExcept((byte)0) < 0);
    }

    [Fact]
    public async Task Latency_delays_every_call_until_cleared()
    {
        var (device, _) = Create();
        using var __ = device;
        device.Latency = TimeSpan.FromMilliseconds(60);
        var clock = Stopwatch.StartNew();
        await device.ReadAsync(0, new byte[Sector], Ct);
        await device.WriteAsync(0, new byte[Sector], cancellationToken: Ct);
        await device.FlushAsync(Ct);
        Assert.True(clock.ElapsedMilliseconds >= 170, $"three delayed calls took {clock.ElapsedMilliseconds} ms");
        device.ClearFaults();
        Assert.Equal(TimeSpan.Zero, device.Latency);
        clock.Restart();
        await device.ReadAsync(0, new byte[Sector], Ct);
        Assert.True(clock.ElapsedMilliseconds < 50, $"an undelayed read took {clock.ElapsedMilliseconds} ms");
    }

    [Fact]
    public async Task Bit_rot_flips_one_bit_of_durable_or_cached_data()
    {
        var (device, inner) = Create();
        using var _ = device;
        var data = Bytes.Random(8 * Sector, 1);
        await device.WriteAsync(0, data, cancellationToken: Ct);
        await device.FlushAsync(Ct);

        await device.CorruptAtAsync(1000, bit: 3, Ct);
        var expected = (byte[])data.Clone();
        expected[1000] ^= 8;
        Bytes.Equal(expected, await Read(device, 0, data.Length), "rot on durable data");
        Bytes.Equal(expected, inner.Bytes[..data.Length], "rot is on the medium");

        // Unflushed: the cached copy rots, and a flush carries it down.
        var cached = Bytes.Random(Sector, 2);
        await device.WriteAsync(16 * Sector, cached, cancellationToken: Ct);
        await device.CorruptAtAsync(16 * Sector + 7, cancellationToken: Ct);
        var back = await Read(device, 16 * Sector, Sector);
        int differing = 0;
        for (int i = 0; i < Sector; i++)
            differing += System.Numerics.BitOperations.PopCount((uint)(back[i] ^ cached[i]));
        Assert.Equal(1, differing);
        Assert.NotEqual(cached[7], back[7]);
        Assert.True(inner.Bytes.Slice(16 * Sector, Sector).IndexOfAnyExcept((byte)0) < 0);
        await device.FlushAsync(Ct);
        Bytes.Equal(back, inner.Bytes.Slice(16 * Sector, Sector), "rotted cache after flush");

        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => device.CorruptAtAsync(Capacity, cancellationToken: Ct).AsTask());
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => device.CorruptAtAsync(0, 8, Ct).AsTask());
    }

    [Fact]
    public async Task A_failed_disk_refuses_every_call_until_healed_and_keeps_its_cache()
    {
        var (device, _) = Create();
        using var __ = device;
        var data = Bytes.Random(Sector, 1);
        await device.WriteAsync(0, data, cancellationToken: Ct);
        device.FailAll();
        Assert.True(device.IsFailed);
        foreach (var call in Calls(device))
            Assert.Contains("device failed", (await Assert.ThrowsAsync<BlockDeviceException>(call)).Message, StringComparison.Ordinal);
        Assert.Equal(5, device.InjectedErrors);

        device.Heal();
        Assert.False(device.IsFailed);
        Bytes.Equal(data, await Read(device, 0, Sector), "cache after heal");
    }

    [Fact]
    public async Task A_failed_flush_leaves_writes_unflushed()
    {
        var (device, inner) = Create();
        using var _ = device;
        await device.WriteAsync(0, Bytes.Random(Sector, 1), cancellationToken: Ct);
        device.FailFlushes = true;
        Assert.Contains("flush", (await Assert.ThrowsAsync<BlockDeviceException>(() => device.FlushAsync(Ct).AsTask())).Message, StringComparison.Ordinal);
        Assert.Equal(1, device.UnflushedSectors);
        Assert.True(inner.Bytes.IndexOfAnyExcept((byte)0) < 0);
        await device.CrashAsync(CrashMode.DropUnflushed);
        device.Restart();
        Assert.True((await Read(device, 0, Sector)).AsSpan().IndexOfAnyExcept((byte)0) < 0);
    }

    [Fact]
    public async Task Trim_is_durable_at_once_and_discards_unflushed_writes_of_its_range()
    {
        var (device, inner) = Create();
        using var _ = device;
        var data = Bytes.Random(8 * Sector, 1);
        await device.WriteAsync(0, data, cancellationToken: Ct);
        await device.FlushAsync(Ct);
        await device.WriteAsync(2 * Sector, Bytes.Random(2 * Sector, 2), cancellationToken: Ct);
        await device.WriteAsync(6 * Sector, Bytes.Random(Sector, 3), cancellationToken: Ct);
        await device.TrimAsync(Sector, 4 * Sector, Ct);

        Assert.Equal(1, device.UnflushedSectors);
        Assert.True(inner.Bytes.Slice(Sector, 4 * Sector).IndexOfAnyExcept((byte)0) < 0, "trim did not reach the inner device");
        Assert.True((await Read(device, Sector, 4 * Sector)).AsSpan().IndexOfAnyExcept((byte)0) < 0, "trimmed range reads an unflushed write");
        await device.CrashAsync(CrashMode.DropUnflushed);
        device.Restart();
        var after = await Read(device, 0, 8 * Sector);
        Bytes.Equal(data.AsSpan(0, Sector), after.AsSpan(0, Sector), "before the trim");
        Assert.True(after.AsSpan(Sector, 4 * Sector).IndexOfAnyExcept((byte)0) < 0);
        Bytes.Equal(data.AsSpan(5 * Sector), after.AsSpan(5 * Sector), "after the trim, unflushed write dropped");
        Assert.Equal(1, device.Trims);
    }

    [Fact]
    public async Task After_a_crash_the_inner_file_can_be_reopened_directly()
    {
        using var directory = new TempDirectory();
        string path = directory.File("disk.img");
        var flushed = Bytes.Random(4 * Sector, 1);
        using (var device = new FaultInjectingDevice(FileBlockDevice.Create(path, Capacity), seed: 1))
        {
            await device.WriteAsync(0, flushed, cancellationToken: Ct);
            await device.FlushAsync(Ct);
            await device.WriteAsync(4 * Sector, Bytes.Random(4 * Sector, 2), cancellationToken: Ct);
            await device.CrashAsync(CrashMode.DropUnflushed);
        }
        using var reopened = FileBlockDevice.Open(path);
        var all = await Bytes.ReadAllAsync(reopened);
        Bytes.Equal(flushed, all.AsSpan(0, flushed.Length), "flushed data in the file");
        Assert.True(all.AsSpan(flushed.Length).IndexOfAnyExcept((byte)0) < 0, "unflushed data in the file");
    }

    [Fact]
    public async Task Disposing_disposes_the_inner_device_unless_asked_not_to()
    {
        var inner = new MemoryBlockDevice(Capacity);
        new FaultInjectingDevice(inner, 1, leaveInnerOpen: true).Dispose();
        await inner.ReadAsync(0, new byte[Sector], Ct);
        new FaultInjectingDevice(inner, 1).Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => inner.ReadAsync(0, new byte[Sector], Ct).AsTask());
    }

    private static IEnumerable<Func<Task>> Calls(FaultInjectingDevice device) =>
    [
        () => device.ReadAsync(0, new byte[Sector], Ct).AsTask(),
        () => device.WriteAsync(0, new byte[Sector], cancellationToken: Ct).AsTask(),
        () => device.WriteAsync(0, new byte[Sector], forceUnitAccess: true, Ct).AsTask(),
        () => device.FlushAsync(Ct).AsTask(),
        () => device.TrimAsync(0, Sector, Ct).AsTask(),
    ];
}
