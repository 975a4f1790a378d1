using Storage.CommandLine;
using Storage.Daemon;
using Storage.Devices;

namespace Storage.Cli;

/// <summary>Opens the disks a command names: block devices under /dev, files elsewhere (created on request).</summary>
internal static class Disks
{
    public static IBlockDevice Open(string path, long createSize = 0, bool readOnly = false) => Open(path, createSize, readOnly, DaemonRecords.Running());

    /// <summary>Opens <paramref name="path"/> unless one of the running <paramref name="daemons"/> holds it.</summary>
    private static IBlockDevice Open(string path, long createSize, bool readOnly, IReadOnlyList<DaemonRecord> daemons)
    {
        string full = Path.GetFullPath(path);
        if (daemons.FirstOrDefault(r => r.Disks.Contains(full, StringComparer.Ordinal)) is { } daemon)
        {
            throw new UsageException($"{path} belongs to a pool that the storage daemon of node '{daemon.Node}' (pid {daemon.Pid}) runs; ask it (leave out --disks/--device), " +
                "or 'storage pool detach NAME' first.");
        }
        try
        {
            return DevicePaths.Open(path, createSize, readOnly);
        }
        catch (FileNotFoundException)
        {
            throw new UsageException($"{path} does not exist. Pass --size to create file-backed disks, or name existing files or block devices.");
        }
        catch (Exception e) when (e is BlockDeviceException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            throw new UsageException($"cannot open {path}: {e.Message}");
        }
    }

    public static bool IsBlockDevicePath(string path) => DevicePaths.IsBlockDevice(path);

    /// <summary>Opens every path; on failure closes the ones already open.</summary>
    public static List<IBlockDevice> OpenAll(IEnumerable<string> paths, long createSize = 0, bool readOnly = false)
    {
        var opened = new List<IBlockDevice>();
        try
        {
            var daemons = DaemonRecords.Running();   // once for all the disks: each record is probed on its socket
            foreach (var path in paths)
                opened.Add(Open(path, createSize, readOnly, daemons));
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
