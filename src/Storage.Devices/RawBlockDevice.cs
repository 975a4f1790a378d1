using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Storage.Native;

namespace Storage.Devices;

/// <summary>
/// A Linux block device (<c>/dev/loopN</c>, <c>/dev/sdX</c>, <c>/dev/nvmeXnY</c>) opened with O_DIRECT and
/// O_EXCL: the kernel then refuses it to file systems, md, device-mapper and other exclusive openers for as long
/// as it is open, and refuses it to us while any of them holds it. Capacity and logical sector size come from the
/// device (BLKGETSIZE64, BLKSSZGET). See <see cref="HandleBlockDevice"/> for the I/O behaviour; trim zeroes the
/// range (fallocate punch hole, which the kernel turns into write-zeroes or discard with zeroing).
/// </summary>
public sealed class RawBlockDevice : HandleBlockDevice
{
    private RawBlockDevice(string path, SafeFileHandle handle, long capacity, int sectorSize, bool readOnly)
        : base(path, handle, capacity, sectorSize, directIo: true, readOnly)
    {
    }

    /// <summary>Opens the block device <paramref name="path"/> for exclusive use.</summary>
    /// <param name="path">A block device node, or a link to one (<c>/dev/disk/by-id/…</c>).</param>
    /// <param name="readOnly">Open read-only; writes and trims then throw <see cref="NotSupportedException"/>.</param>
    /// <exception cref="ArgumentException"><paramref name="path"/> is not a block device (a regular file, a
    /// directory, a character device…).</exception>
    /// <exception cref="BlockDeviceException">The device, one of its partitions, or a device built on it is
    /// mounted or otherwise in use; or its logical sector size is neither 512 nor 4096.</exception>
    /// <exception cref="FileNotFoundException">Nothing exists at <paramref name="path"/>.</exception>
    /// <exception cref="UnauthorizedAccessException">No permission to open the device.</exception>
    public static RawBlockDevice Open(string path, bool readOnly = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        int errno = LibC.Stat(path, Statx.TypeMask, out var stat);
        if (errno != 0)
            throw OpenError(path, errno);
        if (stat.FileType != Statx.BlockDevice)
            throw new ArgumentException($"{path} is a {stat.Kind}, not a block device; use FileBlockDevice for disk image files.", nameof(path));
        BlockDeviceUsage.ThrowIfInUse(path, stat.RdevMajor, stat.RdevMinor);

        int fd = LibC.Open(path, (readOnly ? LibC.ORdOnly : LibC.ORdWr) | LibC.ODirect | LibC.OExcl | LibC.OCloExec);
        if (fd < 0)
        {
            errno = Marshal.GetLastPInvokeError();
            if (errno == LibC.EBusy)
                throw new BlockDeviceException(path, "the device is in use (mounted, part of an md, device-mapper or LVM device, or open exclusively by another program); refusing to open it", null);
            throw OpenError(path, errno);
        }
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        try
        {
            if (LibC.Ioctl(handle, LibC.BlkGetSize64, out ulong size) != 0)
                throw new BlockDeviceException(path, $"BLKGETSIZE64 failed: {LibC.Describe(Marshal.GetLastPInvokeError())}", null);
            if (LibC.Ioctl(handle, LibC.BlkSszGet, out int sectorSize) != 0)
                throw new BlockDeviceException(path, $"BLKSSZGET failed: {LibC.Describe(Marshal.GetLastPInvokeError())}", null);
            if (sectorSize is not (512 or 4096))
                throw new BlockDeviceException(path, $"the logical sector size is {sectorSize} bytes; only 512 and 4096 are supported", null);
            if (size == 0)
                throw new BlockDeviceException(path, "the device is empty (0 bytes; a loop device with no backing file?)", null);
            return new RawBlockDevice(path, handle, (long)size, sectorSize, readOnly);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static Exception OpenError(string path, int errno) => errno switch
    {
        LibC.ENoEnt => new FileNotFoundException($"{path} does not exist.", path),
        LibC.EAcces or LibC.EPerm => new UnauthorizedAccessException($"{path}: no permission to open the device ({LibC.Describe(errno)})."),
        _ => new BlockDeviceException(path, $"cannot open the device: {LibC.Describe(errno)}", null),
    };
}
