namespace Storage.Devices.Tests;

/// <summary>
/// The <see cref="IBlockDevice"/> contract, on every kind of device: memory, file, file with O_DIRECT, a raw loop
/// device, and the fault-injecting wrapper with no fault configured. Serialised with the other loop-device tests.
/// </summary>
[Collection(LoopDeviceGroup.Name)]
public class DeviceContractTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [MemberData(nameof(TestDisk.Kinds), MemberType = typeof(TestDisk))]
    public async Task A_new_device_has_its_geometry_and_reads_zeros(string kind, int sectorSize)
    {
        using var disk = TestDisk.Create(kind, sectorSize);
        var device = disk.Device;
        Assert.Equal(TestDisk.DefaultCapacity, device.Capacity);
        Assert.Equal(sectorSize, device.SectorSize);
        Assert.False(string.IsNullOrEmpty(device.Name));
        var all = await Bytes.ReadAllAsync(device);
        Assert.True(all.AsSpan().IndexOfAnyExcept((byte)0) < 0, "a new device must read as zeros");
    }

    [Theory]
    [MemberData(nameof(TestDisk.Kinds), MemberType = typeof(TestDisk))]
    public async Task Misaligned_or_out_of_range_calls_are_refused_before_touching_the_disk(string kind, int sectorSize)
    {
        using var disk = TestDisk.Create(kind, sectorSize);
        var device = disk.Device;
        long capacity = device.Capacity;
        var sector = Bytes.Random(sectorSize, 1);

        await Assert.ThrowsAnyAsync<ArgumentException>(() => device.WriteAsync(1, sector, cancellationToken: Ct).AsTask());
        await Assert.ThrowsAnyAsync<ArgumentException>(() => device.WriteAsync(sectorSize / 2, sector, cancellationToken: Ct).AsTask());
        await Assert.ThrowsAnyAsync<ArgumentException>(() => device.WriteAsync(0, sector.AsMemory(0, sectorSize - 1), cancellationToken: Ct).AsTask());
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => device.WriteAsync(capacity, sector, cancellationToken: Ct).AsTask());
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => device.WriteAsync(-sectorSize, sector, cancellationToken: Ct).AsTask());
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => device.WriteAsync(capacity - sectorSize, new byte[2 * sectorSize], cancellationToken: Ct).AsTask());
        await Assert.ThrowsAnyAsync<ArgumentException>(() => device.ReadAsync(sectorSize + 3, new byte[sectorSize], Ct).AsTask());
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => device.ReadAsync(capacity - sectorSize, new byte[2 * sectorSize], Ct).AsTask());
        await Assert.ThrowsAnyAsync<ArgumentException>(() => device.TrimAsync(0, sectorSize + 1, Ct).AsTask());
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => device.TrimAsync(0, capacity + sectorSize, Ct).AsTask());

        // The last sector is inside, and empty calls are no-ops.
        await device.WriteAsync(capacity - sectorSize, sector, cancellationToken: Ct);
        await device.WriteAsync(capacity, ReadOnlyMemory<byte>.Empty, cancellationToken: Ct);
        await device.ReadAsync(0, Memory<byte>.Empty, Ct);

        var all = await Bytes.ReadAllAsync(device);
        Bytes.Equal(sector, all.AsSpan((int)(capacity - sectorSize)), "last sector");
        Assert.True(all.AsSpan(0, (int)(capacity - sectorSize)).IndexOfAnyExcept((byte)0) < 0, "a refused write changed the disk");
    }

    [Theory]
    [MemberData(nameof(TestDisk.Kinds), MemberType = typeof(TestDisk))]
    public async Task Writes_are_read_back_through_aligned_unaligned_and_large_buffers(string kind, int sectorSize)
    {
        using var disk = TestDisk.Create(kind, sectorSize);
        var device = disk.Device;
        var model = new byte[device.Capacity];

        async Task Write(long offset, ReadOnlyMemory<byte> data, bool fua = false)
        {
            await device.WriteAsync(offset, data, fua, Ct);
            data.Span.CopyTo(model.AsSpan((int)offset));
        }

        // A managed array, a slice at an odd address, aligned and misaligned native memory, more than one
        // bounce buffer (256 KiB) in one call, the first and last sectors, and a FUA write.
        await Write(0, Bytes.Random(sectorSize, 10));
        await Write(8 * sectorSize, Bytes.Random(3 * sectorSize + 1, 11).AsMemory(1));
        using (var aligned = new NativeBuffer(4 * sectorSize, 4096))
        {
            Bytes.Random(4 * sectorSize, 12).CopyTo(aligned.GetSpan());
            await Write(64 * sectorSize, aligned.Memory);
        }
        using (var misaligned = new NativeBuffer(2 * sectorSize, 4096, misalign: 8))
        {
            Bytes.Random(2 * sectorSize, 13).CopyTo(misaligned.GetSpan());
            await Write(80 * sectorSize, misaligned.Memory);
        }
        await Write(256 * 1024, Bytes.Random(600 * 1024, 14));
        await Write(device.Capacity - sectorSize, Bytes.Random(sectorSize, 15));
        await Write(100 * sectorSize, Bytes.Random(2 * sectorSize, 16), fua: true);
        // Overwrite part of an earlier write.
        await Write(9 * sectorSize, Bytes.Random(sectorSize, 17));

        Bytes.Equal(model, await Bytes.ReadAllAsync(device), "whole device");

        // Reads into the same kinds of buffers.
        var slice = new byte[3 * sectorSize + 5];
        await device.ReadAsync(8 * sectorSize, slice.AsMemory(5), Ct);
        Bytes.Equal(model.AsSpan(8 * sectorSize, 3 * sectorSize), slice.AsSpan(5), "read into an odd address");
        using (var aligned = new NativeBuffer(700 * 1024, 4096))
        {
            await device.ReadAsync(200 * 1024, aligned.Memory, Ct);
            Bytes.Equal(model.AsSpan(200 * 1024, 700 * 1024), aligned.GetSpan(), "read into aligned native memory");
        }
        using (var misaligned = new NativeBuffer(4 * sectorSize, 4096, misalign: 24))
        {
            await device.ReadAsync(62 * sectorSize, misaligned.Memory, Ct);
            Bytes.Equal(model.AsSpan(62 * sectorSize, 4 * sectorSize), misaligned.GetSpan(), "read into misaligned native memory");
        }
    }

    [Theory]
    [MemberData(nameof(TestDisk.PersistentKinds), MemberType = typeof(TestDisk))]
    public async Task Flushed_writes_survive_reopening(string kind, int sectorSize)
    {
        using var disk = TestDisk.Create(kind, sectorSize);
        var data = Bytes.Random(300 * 1024, 20);
        await disk.Device.WriteAsync(16 * sectorSize, data, cancellationToken: Ct);
        await disk.Device.FlushAsync(Ct);

        var reopened = disk.Reopen();
        Assert.Equal(TestDisk.DefaultCapacity, reopened.Capacity);
        Assert.Equal(sectorSize, reopened.SectorSize);
        var back = new byte[data.Length];
        await reopened.ReadAsync(16 * sectorSize, back, Ct);
        Bytes.Equal(data, back, "after reopening");
    }

    [Theory]
    [MemberData(nameof(TestDisk.PersistentKinds), MemberType = typeof(TestDisk))]
    public async Task A_force_unit_access_write_survives_reopening_without_a_flush(string kind, int sectorSize)
    {
        using var disk = TestDisk.Create(kind, sectorSize);
        var data = Bytes.Random(4 * sectorSize, 21);
        await disk.Device.WriteAsync(sectorSize, data, forceUnitAccess: true, Ct);

        var reopened = disk.Reopen();
        var back = new byte[data.Length];
        await reopened.ReadAsync(sectorSize, back, Ct);
        Bytes.Equal(data, back, "FUA write after reopening");
    }

    [Theory]
    [MemberData(nameof(TestDisk.Kinds), MemberType = typeof(TestDisk))]
    public async Task Trim_zeroes_exactly_its_range(string kind, int sectorSize)
    {
        using var disk = TestDisk.Create(kind, sectorSize);
        var device = disk.Device;
        var data = Bytes.Random(1 << 20, 30);
        await device.WriteAsync(0, data, cancellationToken: Ct);
        await device.FlushAsync(Ct);

        // Every device here zeroes a trimmed range (the interface allows old bytes too).
        long from = 5 * sectorSize, length = 300 * 1024;
        await device.TrimAsync(from, length, Ct);
        var back = new byte[data.Length];
        await device.ReadAsync(0, back, Ct);
        Bytes.Equal(data.AsSpan(0, (int)from), back.AsSpan(0, (int)from), "before the trimmed range");
        Assert.True(back.AsSpan((int)from, (int)length).IndexOfAnyExcept((byte)0) < 0, "the trimmed range must read as zeros");
        Bytes.Equal(data.AsSpan((int)(from + length)), back.AsSpan((int)(from + length)), "after the trimmed range");

        // A trimmed range takes writes again.
        var again = Bytes.Random(sectorSize, 31);
        await device.WriteAsync(from, again, cancellationToken: Ct);
        await device.ReadAsync(from, back.AsMemory(0, sectorSize), Ct);
        Bytes.Equal(again, back.AsSpan(0, sectorSize), "write after trim");
    }

    [Theory]
    [MemberData(nameof(TestDisk.Kinds), MemberType = typeof(TestDisk))]
    public async Task Concurrent_reads_and_writes_of_separate_ranges_do_not_interfere(string kind, int sectorSize)
    {
        using var disk = TestDisk.Create(kind, sectorSize);
        var device = disk.Device;
        const int Tasks = 32;
        long slot = device.Capacity / Tasks;
        var blocks = Enumerable.Range(0, Tasks).Select(i => Bytes.Random((int)slot, 100 + i)).ToArray();

        await Task.WhenAll(Enumerable.Range(0, Tasks).Select(i => Task.Run(async () =>
        {
            // Several calls per task, so calls of different tasks interleave.
            for (long at = 0; at < slot; at += slot / 4)
                await device.WriteAsync(i * slot + at, blocks[i].AsMemory((int)at, (int)(slot / 4)), cancellationToken: Ct);
        }, Ct)));
        await device.FlushAsync(Ct);

        var read = new byte[Tasks][];
        await Task.WhenAll(Enumerable.Range(0, Tasks).Select(i => Task.Run(async () =>
        {
            read[i] = new byte[slot];
            await device.ReadAsync(i * slot, read[i], Ct);
        }, Ct)));
        for (int i = 0; i < Tasks; i++)
            Bytes.Equal(blocks[i], read[i], $"slot {i}");
    }

    [Theory]
    [MemberData(nameof(TestDisk.Kinds), MemberType = typeof(TestDisk))]
    public async Task A_disposed_device_refuses_calls(string kind, int sectorSize)
    {
        using var disk = TestDisk.Create(kind, sectorSize);
        var device = disk.Device;
        device.Dispose();
        device.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => device.ReadAsync(0, new byte[sectorSize], Ct).AsTask());
        await Assert.ThrowsAsync<ObjectDisposedException>(() => device.WriteAsync(0, new byte[sectorSize], cancellationToken: Ct).AsTask());
        await Assert.ThrowsAsync<ObjectDisposedException>(() => device.FlushAsync(Ct).AsTask());
    }
}

/// <summary>Loop-device tests attach and detach loop devices and mount file systems; they run one at a time.</summary>
[CollectionDefinition(Name)]
public sealed class LoopDeviceGroup
{
    public const string Name = "loop devices";
}
