using Storage.CommandLine;
using Storage.Devices;

namespace Storage.Cli;

/// <summary>Opens the disks a command names: block devices under /dev, files elsewhere (created on request).</summary>
internal static class Disks
{
    public static IBlockDevice Open(string path, long createSize = 0, bool readOnly = false)
    {
        try
        {
            if (IsBlockDevicePath(path))
                return RawBlockDevice.Open(path, readOnly);
            if (File.Exists(path))
                return FileBlockDevice.Open(path, readOnly: readOnly);
            if (createSize > 0)
                return FileBlockDevice.Create(path, createSize);
        }
        catch (Exception e) when (e is BlockDeviceException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            throw new UsageException($"cannot open {path}: {e.Message}");
        }
        throw new UsageException($"{path} does not exist. Pass --size to create file-backed disks, or name existing files or block devices.");
    }

    /// <summary>Paths under /dev are block devices, except the tmpfs folders /dev/shm and /dev/mqueue.</summary>
    public static bool IsBlockDevicePath(string path)
        => path.StartsWith("/dev/", StringComparison.Ordinal) && !path.StartsWith("/dev/shm/", StringComparison.Ordinal) && !path.StartsWith("/dev/mqueue/", StringComparison.Ordinal);

    /// <summary>Opens every path; on failure closes the ones already open.</summary>
    public static List<IBlockDevice> OpenAll(IEnumerable<string> paths, long createSize = 0, bool readOnly = false)
    {
        var opened = new List<IBlockDevice>();
        try
        {
            foreach (var path in paths)
                opened.Add(Open(path, createSize, readOnly));
            return opened;
        }
        catch
        {
            foreach (var device in opened)
                device.Dispose();
            throw;
        }
    }
}
