using Storage.Native;

namespace Storage.Devices.Tests;

public class FileBlockDeviceTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Create_refuses_an_existing_file_unless_told_to_overwrite_it()
    {
        using var directory = new TempDirectory();
        string path = directory.File("disk.img");
        var marker = Bytes.Random(512, 1);
        using (var device = FileBlockDevice.Create(path, 1 << 20))
            await device.WriteAsync(0, marker, forceUnitAccess: true, Ct);

        var refused = Assert.Throws<BlockDeviceException>(() => FileBlockDevice.Create(path, 2 << 20));
        Assert.Contains("already exists", refused.Message, StringComparison.Ordinal);
        Assert.Contains("overwrite", refused.Message, StringComparison.Ordinal);
        Assert.Equal(path, refused.Device);
        using (var kept = FileBlockDevice.Open(path))
        {
            Assert.Equal(1 << 20, kept.Capacity);
            var back = new byte[512];
            await kept.ReadAsync(0, back, Ct);
            Bytes.Equal(marker, back, "the refused create must leave the file alone");
        }

        using var replaced = FileBlockDevice.Create(path, 2 << 20, overwrite: true);
        Assert.Equal(2 << 20, replaced.Capacity);
        var all = await Bytes.ReadAllAsync(replaced);
        Assert.True(all.AsSpan().IndexOfAnyExcept((byte)0) < 0, "an overwritten disk reads as zeros");
    }

    [Fact]
    public void Create_rejects_a_bad_geometry_without_creating_a_file()
    {
        using var directory = new TempDirectory();
        string path = directory.File("disk.img");
        Assert.Throws<ArgumentException>(() => FileBlockDevice.Create(path, 1000));
        Assert.Throws<ArgumentOutOfRangeException>(() => FileBlockDevice.Create(path, 1 << 20, sectorSize: 1024));
        Assert.Throws<ArgumentOutOfRangeException>(() => FileBlockDevice.Create(path, 0));
        Assert.False(File.Exists(path));
    }

    [Fact]
    public async Task A_new_disk_is_sparse_and_preallocate_reserves_every_block()
    {
        using var directory = new TempDirectory();
        const long Capacity = 16 << 20;
        using var sparse = FileBlockDevice.Create(directory.File("sparse.img"), Capacity);
        using var full = FileBlockDevice.Create(directory.File("full.img"), Capacity, preallocate: true);
        Assert.Equal(Capacity, new FileInfo(directory.File("sparse.img")).Length);
        Assert.Equal(Capacity, new FileInfo(directory.File("full.img")).Length);
        Assert.True(Allocated(sparse) < Capacity / 16, $"sparse disk has {Allocated(sparse)} bytes allocated");
        Assert.True(Allocated(full) >= Capacity, $"preallocated disk has only {Allocated(full)} bytes allocated");
        var all = await Bytes.ReadAllAsync(full);
        Assert.True(all.AsSpan().IndexOfAnyExcept((byte)0) < 0, "a preallocated disk reads as zeros");
    }

    [Fact]
    public async Task Trim_punches_a_hole_in_the_file()
    {
        using var directory = new TempDirectory();
        using var device = FileBlockDevice.Create(directory.File("disk.img"), 4 << 20);
        await device.WriteAsync(0, Bytes.Random(4 << 20, 2), cancellationToken: Ct);
        await device.FlushAsync(Ct);
        long before = Allocated(device);
        await device.TrimAsync(1 << 20, 2 << 20, Ct);
        long after = Allocated(device);
        Assert.True(before - after >= 2 << 20, $"trim freed {before - after} bytes, expected 2 MiB");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Trim_writes_zeros_where_holes_cannot_be_punched(bool directIo)
    {
        using var directory = new TempDirectory();
        using var device = FileBlockDevice.Create(directory.File("disk.img"), 2 << 20, directIo: directIo);
        device.DisablePunchHole();
        var data = Bytes.Random(2 << 20, 3);
        await device.WriteAsync(0, data, cancellationToken: Ct);
        await device.TrimAsync(4096, 600 * 1024, Ct);
        var back = await Bytes.ReadAllAsync(device);
        Array.Clear(data, 4096, 600 * 1024);
        Bytes.Equal(data, back, "after trim by writing zeros");
    }

    [Fact]
    public void Direct_io_sets_O_DIRECT_on_the_descriptor_and_buffered_io_does_not()
    {
        using var directory = new TempDirectory();
        using var direct = FileBlockDevice.Create(directory.File("direct.img"), 1 << 20, directIo: true);
        using var buffered = FileBlockDevice.Create(directory.File("buffered.img"), 1 << 20);
        Assert.True(direct.IsDirectIo);
        Assert.False(buffered.IsDirectIo);
        Assert.NotEqual(0, OpenFlags(direct) & LibC.ODirect);
        Assert.Equal(0, OpenFlags(buffered) & LibC.ODirect);
    }

    [Fact]
    public async Task Open_takes_the_capacity_from_the_file_and_can_be_read_only()
    {
        using var directory = new TempDirectory();
        string path = directory.File("disk.img");
        var data = Bytes.Random(8192, 4);
        using (var device = FileBlockDevice.Create(path, 3 << 20, sectorSize: 4096))
            await device.WriteAsync(4096, data, forceUnitAccess: true, Ct);

        using var readOnly = FileBlockDevice.Open(path, readOnly: true, sectorSize: 4096);
        Assert.True(readOnly.IsReadOnly);
        Assert.Equal(3 << 20, readOnly.Capacity);
        Assert.Equal(4096, readOnly.SectorSize);
        var back = new byte[8192];
        await readOnly.ReadAsync(4096, back, Ct);
        Bytes.Equal(data, back, "read-only open");
        await Assert.ThrowsAsync<NotSupportedException>(() => readOnly.WriteAsync(0, new byte[4096], cancellationToken: Ct).AsTask());
        await Assert.ThrowsAsync<NotSupportedException>(() => readOnly.TrimAsync(0, 4096, Ct).AsTask());

        // Two read-only openers may share the file; a read-write opener may not join them.
        using var second = FileBlockDevice.Open(path, readOnly: true, sectorSize: 4096);
        Assert.ThrowsAny<IOException>(() => FileBlockDevice.Open(path, sectorSize: 4096));
    }

    [Fact]
    public void A_disk_open_for_writing_cannot_be_opened_again()
    {
        using var directory = new TempDirectory();
        string path = directory.File("disk.img");
        using var device = FileBlockDevice.Create(path, 1 << 20);
        Assert.ThrowsAny<IOException>(() => FileBlockDevice.Open(path));
        Assert.ThrowsAny<IOException>(() => FileBlockDevice.Create(path, 1 << 20, overwrite: true));
        Assert.Equal(1 << 20, new FileInfo(path).Length);
    }

    [Fact]
    public void Open_refuses_files_that_are_not_whole_sectors_and_things_that_are_not_files()
    {
        using var directory = new TempDirectory();
        string odd = directory.File("odd.img");
        File.WriteAllBytes(odd, new byte[1000]);
        var e = Assert.Throws<BlockDeviceException>(() => FileBlockDevice.Open(odd));
        Assert.Contains("1000 bytes", e.Message, StringComparison.Ordinal);
        File.WriteAllBytes(odd, new byte[1024]);
        Assert.Throws<BlockDeviceException>(() => FileBlockDevice.Open(odd, sectorSize: 4096));
        File.WriteAllBytes(odd, []);
        Assert.Throws<BlockDeviceException>(() => FileBlockDevice.Open(odd));

        var device = Assert.Throws<BlockDeviceException>(() => FileBlockDevice.Open("/dev/null", readOnly: true));
        Assert.Contains("character device", device.Message, StringComparison.Ordinal);
        Assert.Throws<FileNotFoundException>(() => FileBlockDevice.Open(directory.File("missing.img")));
    }

    [Fact]
    public async Task An_io_error_names_the_device_and_the_range()
    {
        using var directory = new TempDirectory();
        string path = directory.File("disk.img");
        using var device = FileBlockDevice.Create(path, 1 << 20);
        // The file shrinks behind the device's back: reads past its end fail.
        RandomAccess.SetLength(device.Handle, 512 * 1024);
        var e = await Assert.ThrowsAsync<BlockDeviceException>(() => device.ReadAsync(768 * 1024, new byte[4096], Ct).AsTask());
        Assert.Equal(path, e.Device);
        Assert.Equal(768 * 1024, e.Offset);
        Assert.Equal(4096, e.Length);
        Assert.StartsWith(path, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task On_a_memory_file_system_reads_writes_and_flushes_complete_on_the_calling_thread()
    {
        if (!Directory.Exists("/dev/shm"))
            Assert.Skip("no /dev/shm (tmpfs) on this machine");
        string path = $"/dev/shm/storage-test-{Guid.NewGuid():N}.img";
        try
        {
            using var device = FileBlockDevice.Create(path, 1 << 20);
            var data = Bytes.Random(12288, 5);
#pragma warning disable CA2012 // each ValueTask is looked at, then awaited once below
            var write = device.WriteAsync(4096, data, cancellationToken: Ct);
            Assert.True(write.IsCompletedSuccessfully, "a tmpfs write went to the thread pool");
            var back = new byte[data.Length];
            var read = device.ReadAsync(4096, back, Ct);
            Assert.True(read.IsCompletedSuccessfully, "a tmpfs read went to the thread pool");
            Assert.Equal(data, back);
            var flush = device.FlushAsync(Ct);
            Assert.True(flush.IsCompletedSuccessfully, "a tmpfs flush went to the thread pool");
#pragma warning restore CA2012
            await write;
            await read;
            await flush;
            await device.WriteAsync(0, data.AsMemory(0, 4096), forceUnitAccess: true, Ct);

            // Larger transfers go to the thread pool, and come back right.
            var large = Bytes.Random(HandleBlockDevice.InlineLimit + 8192, 7);
            await device.WriteAsync(65536, large, cancellationToken: Ct);
            var largeBack = new byte[large.Length];
            await device.ReadAsync(65536, largeBack, Ct);
            Assert.Equal(-1, Bytes.FirstDifference(large, largeBack));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Reads_the_page_cache_no_longer_holds_come_back_right(bool partly)
    {
        using var directory = new TempDirectory();
        using var device = FileBlockDevice.Create(directory.File("disk.img"), 4 << 20);
        var data = Bytes.Random(1 << 20, 6);
        await device.WriteAsync(0, data, cancellationToken: Ct);
        await device.FlushAsync(Ct);
        Assert.Equal(0, DropCache(device.Handle, 0, 0));   // written back, so the pages can go
        if (partly)
            await device.ReadAsync(0, new byte[64 << 10], Ct);   // the first 64 KiB come back into the cache
        var back = new byte[data.Length];
        await device.ReadAsync(0, back, Ct);
        Assert.Equal(-1, Bytes.FirstDifference(data, back));
    }

    [Fact]
    public void Without_waiting_a_memory_file_system_moves_a_whole_megabyte_on_the_calling_thread()
    {
        if (!Directory.Exists("/dev/shm"))
            Assert.Skip("no /dev/shm (tmpfs) on this machine");
        string path = $"/dev/shm/storage-test-{Guid.NewGuid():N}.img";
        try
        {
            using var device = FileBlockDevice.Create(path, 4 << 20);
            var data = Bytes.Random(1 << 20, 8);
            Assert.Equal(data.Length, device.WriteWithoutWaiting(512, data));
            var back = new byte[data.Length];
            Assert.Equal(back.Length, device.ReadWithoutWaiting(512, back));
            Assert.Equal(-1, Bytes.FirstDifference(data, back));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task Without_waiting_a_partly_cached_file_gives_right_bytes_and_the_rest_reads_right()
    {
        using var directory = new TempDirectory();
        using var device = FileBlockDevice.Create(directory.File("disk.img"), 4 << 20);
        var data = Bytes.Random(1 << 20, 9);
        await device.WriteAsync(0, data, cancellationToken: Ct);
        await device.FlushAsync(Ct);
        Assert.Equal(0, DropCache(device.Handle, 0, 0));
        await device.ReadAsync(0, new byte[64 << 10], Ct);   // the first 64 KiB (and what readahead adds) come back
        var back = new byte[data.Length];
        // How far the copy gets depends on readahead and on RWF_NOWAIT support (none: nothing comes); what does come
        // must be right, and the asynchronous read takes over from there, as the NBD server does.
        int done = device.ReadWithoutWaiting(0, back);
        done -= done % device.SectorSize;
        await device.ReadAsync(done, back.AsMemory(done), Ct);
        Assert.Equal(-1, Bytes.FirstDifference(data, back));
    }

    [Fact]
    public void Without_waiting_does_nothing_with_direct_io_and_checks_its_arguments()
    {
        using var directory = new TempDirectory();
        string path = directory.File("disk.img");
        FileBlockDevice.Create(path, 1 << 20).Dispose();
        using (var direct = FileBlockDevice.Open(path, directIo: true))
        {
            Assert.Equal(0, direct.ReadWithoutWaiting(0, new byte[4096]));
            Assert.Equal(0, direct.WriteWithoutWaiting(0, new byte[4096]));
        }
        using var readOnly = FileBlockDevice.Open(path, readOnly: true);
        Assert.Throws<NotSupportedException>(() => readOnly.WriteWithoutWaiting(0, new byte[512]));
        Assert.Throws<ArgumentOutOfRangeException>(() => readOnly.ReadWithoutWaiting(1 << 20, new byte[512]));
        Assert.Throws<ArgumentException>(() => readOnly.ReadWithoutWaiting(100, new byte[512]));
    }

    [Fact]
    public async Task A_full_file_system_is_reported_as_no_space_on_every_path()
    {
        Requires.Tool("mount");
        using var fs = SmallTmpfs.TryMount(1 << 20, out string reason);
        if (fs is null)
            Requires.Missing(reason);
        using var device = FileBlockDevice.Create(fs!.File("disk.img"), 8 << 20);   // sparse, larger than the file system
        var data = Bytes.Random(1 << 20, 10);
        var inPlace = Assert.Throws<BlockDeviceException>(() =>
        {
            for (long at = 0; at < device.Capacity; at += data.Length)
                device.WriteWithoutWaiting(at, data);
        });
        var small = await Assert.ThrowsAsync<BlockDeviceException>(() => device.WriteAsync(6 << 20, data.AsMemory(0, 4096), cancellationToken: Ct).AsTask());
        var large = await Assert.ThrowsAsync<BlockDeviceException>(() => device.WriteAsync(7 << 20, data, cancellationToken: Ct).AsTask());
        foreach (var e in new[] { inPlace, small, large })
        {
            // ENOSPC travels as the cause's HResult, so that an NBD client is told "no space", not "I/O error".
            Assert.Equal(28, Assert.IsType<IOException>(e.InnerException, exactMatch: false).HResult);
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "posix_fadvise")]
    private static extern int Fadvise(Microsoft.Win32.SafeHandles.SafeFileHandle fd, long offset, long length, int advice);

    private static int DropCache(Microsoft.Win32.SafeHandles.SafeFileHandle fd, long offset, long length) => Fadvise(fd, offset, length, 4 /* POSIX_FADV_DONTNEED */);

    internal static long Allocated(HandleBlockDevice device)
    {
        Assert.Equal(0, LibC.Stat(device.Handle, Statx.BlocksMask, out var stat));
        return stat.AllocatedBytes;
    }

    private static int OpenFlags(HandleBlockDevice device)
    {
        string fd = device.Handle.DangerousGetHandle().ToString();
        string line = File.ReadLines($"/proc/self/fdinfo/{fd}").Single(l => l.StartsWith("flags:", StringComparison.Ordinal));
        return Convert.ToInt32(line["flags:".Length..].Trim(), 8);
    }
}
