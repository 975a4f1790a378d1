using Microsoft.Win32.SafeHandles;
using Storage.Native;

namespace Storage.Devices;

/// <summary>
/// A disk held in a regular file (a disk image). Created sparse unless preallocated; locked against a second
/// opener in any process (flock: exclusive for read-write, shared for read-only). See <see cref="HandleBlockDevice"/>
/// for how reads, writes, flush, FUA, trim and O_DIRECT behave.
/// </summary>
public sealed partial class FileBlockDevice : HandleBlockDevice, IAllocationStatus
{
    private FileBlockDevice(string path, SafeFileHandle handle, long capacity, int sectorSize, bool directIo, bool readOnly)
        : base(path, handle, capacity, sectorSize, directIo, readOnly, memoryFileSystem: LibC.IsOnMemoryFileSystem(handle))
    {
    }

    /// <summary>
    /// Creates the file <paramref name="path"/> of <paramref name="capacity"/> bytes, reading as zeros, and opens it
    /// read-write.
    /// </summary>
    /// <param name="path">File to create.</param>
    /// <param name="capacity">Size in bytes; a multiple of <paramref name="sectorSize"/>.</param>
    /// <param name="sectorSize">512 or 4096.</param>
    /// <param name="preallocate">Reserve every block now (fallocate), so later writes cannot run out of space;
    /// otherwise the file is sparse and takes space as it is written.</param>
    /// <param name="directIo">Open with O_DIRECT (bypass the page cache).</param>
    /// <param name="overwrite">Replace an existing file; without it an existing file is an error.</param>
    /// <exception cref="BlockDeviceException">The file exists and <paramref name="overwrite"/> is not set, or the file
    /// system cannot do O_DIRECT with this sector size.</exception>
    /// <exception cref="IOException">The file could not be created (no space, locked by another opener, …).</exception>
    public static FileBlockDevice Create(string path, long capacity, int sectorSize = 512, bool preallocate = false, bool directIo = false, bool overwrite = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (sectorSize is not (512 or 4096))
            throw new ArgumentOutOfRangeException(nameof(sectorSize), sectorSize, "Sector size must be 512 or 4096 bytes.");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        if (capacity % sectorSize != 0)
            throw new ArgumentException($"{path}: capacity {capacity} is not a multiple of the {sectorSize}-byte sector.", nameof(capacity));

        SafeFileHandle handle;
        try
        {
            // .NET truncates an existing file only after it holds the lock, so a disk in use is never clobbered.
            handle = File.OpenHandle(path, overwrite ? FileMode.Create : FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None,
                FileOptions.None, preallocationSize: preallocate ? capacity : 0);
        }
        catch (IOException e) when (!overwrite && File.Exists(path))
        {
            throw new BlockDeviceException(path, "the file already exists; pass overwrite: true to replace it", e);
        }
        try
        {
            RandomAccess.SetLength(handle, capacity);
            if (directIo)
                EnableDirectIo(handle, path, sectorSize);
            return new FileBlockDevice(path, handle, capacity, sectorSize, directIo, readOnly: false);
        }
        catch
        {
            handle.Dispose();
            File.Delete(path);
            throw;
        }
    }

    /// <summary>Opens the existing disk image <paramref name="path"/>; its length is the capacity.</summary>
    /// <param name="path">A regular file whose length is a multiple of <paramref name="sectorSize"/>.</param>
    /// <param name="directIo">Open with O_DIRECT (bypass the page cache).</param>
    /// <param name="readOnly">Open read-only; writes and trims then throw <see cref="NotSupportedException"/>.</param>
    /// <param name="sectorSize">512 or 4096; the file does not record it.</param>
    /// <exception cref="BlockDeviceException">The path is not a regular file, its length is not a multiple of the
    /// sector, or the file system cannot do O_DIRECT with this sector size.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="IOException">The file is open read-write by another opener.</exception>
    public static FileBlockDevice Open(string path, bool directIo = false, bool readOnly = false, int sectorSize = 512)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (sectorSize is not (512 or 4096))
            throw new ArgumentOutOfRangeException(nameof(sectorSize), sectorSize, "Sector size must be 512 or 4096 bytes.");
        var handle = File.OpenHandle(path, FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite, readOnly ? FileShare.Read : FileShare.None);
        try
        {
            int errno = LibC.Stat(handle, Statx.TypeMask, out var stat);
            if (errno != 0)
                throw new BlockDeviceException(path, $"statx failed: {LibC.Describe(errno)}", null);
            if (stat.FileType != Statx.RegularFile)
                throw new BlockDeviceException(path, $"is a {stat.Kind}, not a disk image file{(stat.FileType == Statx.BlockDevice ? "; open block devices with RawBlockDevice" : "")}", null);
            long length = RandomAccess.GetLength(handle);
            if (length == 0 || length % sectorSize != 0)
                throw new BlockDeviceException(path, $"the file is {length} bytes, not a positive multiple of the {sectorSize}-byte sector", null);
            if (directIo)
                EnableDirectIo(handle, path, sectorSize);
            return new FileBlockDevice(path, handle, length, sectorSize, directIo, readOnly);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Sets O_DIRECT on an open file (Linux allows it through F_SETFL; .NET's FileOptions have no O_DIRECT), after
    /// checking that the file system accepts direct I/O at this sector size.
    /// </summary>
    private static void EnableDirectIo(SafeFileHandle handle, string path, int sectorSize)
    {
        // STATX_DIOALIGN (Linux 6.1+) says what alignment O_DIRECT needs; older kernels leave the bit clear.
        if (LibC.Stat(handle, Statx.DioAlignMask, out var stat) == 0 && (stat.Mask & Statx.DioAlignMask) != 0)
        {
            if (stat.DioOffsetAlign == 0)
                throw new BlockDeviceException(path, "the file system does not support O_DIRECT on this file", null);
            if (stat.DioOffsetAlign > sectorSize)
                throw new BlockDeviceException(path, $"O_DIRECT on this file system needs {stat.DioOffsetAlign}-byte alignment; use that sector size", null);
        }
        int flags = LibC.Fcntl(handle, LibC.FGetFl, 0);
        if (flags < 0 || LibC.Fcntl(handle, LibC.FSetFl, flags | LibC.ODirect) < 0)
        {
            int errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            throw new BlockDeviceException(path, $"cannot enable O_DIRECT: {LibC.Describe(errno)}", null);
        }
    }
}
