using System.Runtime.InteropServices;
using Storage.Native;

namespace Storage.Devices;

/// <summary>
/// Holes of a sparse file, found with lseek SEEK_DATA / SEEK_HOLE. Data is rounded outwards to whole sectors (a
/// sector holding any data is data), so a hole is reported only where whole sectors are unallocated; a hole reads as
/// zeros and is reported as <see cref="AllocationState.Hole"/> | <see cref="AllocationState.Zero"/>. A file system
/// without SEEK_DATA support reports the whole file as data (the kernel's own fallback).
/// </summary>
public sealed partial class FileBlockDevice
{
    /// <summary>At most this many extents per call; callers ask again for the rest.</summary>
    private const int MaxExtentsPerCall = 1024;

    /// <inheritdoc />
    public ValueTask<IReadOnlyList<AllocationExtent>> GetAllocationAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, length);
        if (length == 0)
            throw new ArgumentException($"{Name}: an allocation query needs at least one sector.", nameof(length));
        if (cancellationToken.IsCancellationRequested)
            return ValueTask.FromCanceled<IReadOnlyList<AllocationExtent>>(cancellationToken);
        try
        {
            return ValueTask.FromResult<IReadOnlyList<AllocationExtent>>(FindExtents(offset, offset + length));
        }
        catch (BlockDeviceException e)
        {
            return ValueTask.FromException<IReadOnlyList<AllocationExtent>>(e);
        }
    }

    private List<AllocationExtent> FindExtents(long offset, long end)
    {
        var extents = new List<AllocationExtent>();
        long sector = SectorSize;
        long position = offset;
        while (position < end && extents.Count < MaxExtentsPerCall)
        {
            long data = Seek(position, LibC.SeekData, offset, end);
            long dataStart = data < 0 ? end : Math.Min(data / sector * sector, end);
            if (dataStart > position)
            {
                Add(extents, dataStart - position, AllocationState.Hole | AllocationState.Zero);
                position = dataStart;
                continue;
            }
            long hole = Seek(position, LibC.SeekHole, offset, end);
            long holeStart = hole < 0 ? end : Math.Min((hole + sector - 1) / sector * sector, end);
            if (holeStart <= position)
                holeStart = position + sector;
            Add(extents, holeStart - position, AllocationState.Data);
            position = holeStart;
        }
        return extents;
    }

    private static void Add(List<AllocationExtent> extents, long length, AllocationState state)
    {
        if (extents.Count > 0 && extents[^1].State == state)
            extents[^1] = new AllocationExtent(extents[^1].Length + length, state);
        else
            extents.Add(new AllocationExtent(length, state));
    }

    /// <summary>lseek with <paramref name="whence"/>; -1 for ENXIO (no data, or no hole, from there to the end of the file).</summary>
    private long Seek(long position, int whence, long offset, long end)
    {
        while (true)
        {
            long result = LibC.Lseek(Handle, position, whence);
            if (result >= 0)
                return result;
            int errno = Marshal.GetLastPInvokeError();
            if (errno == LibC.ENxio)
                return -1;
            if (errno == LibC.EIntr)
                continue;
            if (errno == LibC.EInval)
                return whence == LibC.SeekData ? position : -1; // unsupported: all data
            throw new BlockDeviceException(Name, offset, end - offset, $"lseek ({(whence == LibC.SeekData ? "SEEK_DATA" : "SEEK_HOLE")}) failed: {LibC.Describe(errno)}");
        }
    }
}
