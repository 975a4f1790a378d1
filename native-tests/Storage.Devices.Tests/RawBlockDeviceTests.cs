namespace Storage.Devices.Tests;

/// <summary>Raw block devices, on loop devices (root and losetup; skipped without them, failed with CI=true).</summary>
[Collection(LoopDeviceGroup.Name)]
public class RawBlockDeviceTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(512)]
    [InlineData(4096)]
    public void Capacity_and_sector_size_come_from_the_kernel(int sectorSize)
    {
        using var loop = LoopDevice.Attach(8 << 20, sectorSize);
        using var device = RawBlockDevice.Open(loop.Path);
        Assert.Equal(8 << 20, device.Capacity);
        Assert.Equal(sectorSize, device.SectorSize);
        Assert.True(device.IsDirectIo);
        Assert.Equal(loop.Path, device.Name);
    }

    [Fact]
    public async Task Writes_reach_the_loop_devices_backing_file_at_their_offsets()
    {
        using var loop = LoopDevice.Attach(4 << 20);
        var data = Bytes.Random(64 * 1024, 1);
        using (var device = RawBlockDevice.Open(loop.Path))
        {
            await device.WriteAsync(1 << 20, data, cancellationToken: Ct);
            await device.FlushAsync(Ct);
        }
        using var file = File.OpenHandle(loop.BackingFile);
        var back = new byte[data.Length];
        Assert.Equal(back.Length, RandomAccess.Read(file, back, 1 << 20));
        Bytes.Equal(data, back, "backing file");
        var before = new byte[1 << 20];
        RandomAccess.Read(file, before, 0);
        Assert.True(before.AsSpan().IndexOfAnyExcept((byte)0) < 0, "bytes before the write changed");
    }

    [Fact]
    public void A_mounted_device_is_refused_with_its_mount_point()
    {
        Requires.Tool("mkfs.ext4");
        Requires.Tool("mount");
        using var loop = LoopDevice.Attach(16 << 20);
        Shell.Check("mkfs.ext4", "-q", "-F", loop.Path);
        using var mountPoint = new TempDirectory();
        Shell.Check("mount", "-t", "ext4", loop.Path, mountPoint.Path);
        try
        {
            var e = Assert.Throws<BlockDeviceException>(() => RawBlockDevice.Open(loop.Path));
            Assert.Contains("mounted on " + mountPoint.Path, e.Message, StringComparison.Ordinal);
            Assert.Equal(loop.Path, e.Device);
            Assert.Throws<BlockDeviceException>(() => RawBlockDevice.Open(loop.Path, readOnly: true));
        }
        finally
        {
            Shell.Check("umount", mountPoint.Path);
        }
        using var device = RawBlockDevice.Open(loop.Path);
        Assert.Equal(16 << 20, device.Capacity);
    }

    [Fact]
    public void A_device_held_exclusively_is_refused_until_released()
    {
        using var loop = LoopDevice.Attach(4 << 20);
        using (var first = RawBlockDevice.Open(loop.Path))
        {
            // Not mounted, so this is the kernel's O_EXCL refusal (EBUSY), not the mount check.
            var e = Assert.Throws<BlockDeviceException>(() => RawBlockDevice.Open(loop.Path));
            Assert.Contains("in use", e.Message, StringComparison.Ordinal);
        }
        using var again = RawBlockDevice.Open(loop.Path);
        Assert.Equal(4 << 20, again.Capacity);
    }

    [Fact]
    public async Task A_read_only_device_reads_and_refuses_writes()
    {
        using var loop = LoopDevice.Attach(4 << 20);
        var data = Bytes.Random(8192, 2);
        using (var device = RawBlockDevice.Open(loop.Path))
            await device.WriteAsync(8192, data, forceUnitAccess: true, Ct);
        using var readOnly = RawBlockDevice.Open(loop.Path, readOnly: true);
        Assert.True(readOnly.IsReadOnly);
        var back = new byte[8192];
        await readOnly.ReadAsync(8192, back, Ct);
        Bytes.Equal(data, back, "read-only raw device");
        await Assert.ThrowsAsync<NotSupportedException>(() => readOnly.WriteAsync(0, back, cancellationToken: Ct).AsTask());
    }

    [Fact]
    public void Paths_that_are_not_block_devices_are_refused()
    {
        using var directory = new TempDirectory();
        string file = directory.File("disk.img");
        File.WriteAllBytes(file, new byte[4096]);
        var regular = Assert.Throws<ArgumentException>(() => RawBlockDevice.Open(file));
        Assert.Contains("regular file, not a block device", regular.Message, StringComparison.Ordinal);
        var character = Assert.Throws<ArgumentException>(() => RawBlockDevice.Open("/dev/null"));
        Assert.Contains("character device", character.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => RawBlockDevice.Open(directory.Path));
        Assert.Throws<FileNotFoundException>(() => RawBlockDevice.Open(directory.File("missing")));
    }
}
