namespace Storage.Devices;

/// <summary>
/// Finds who uses a block device, for a clear refusal before the O_EXCL open (which only says EBUSY): mounts of
/// the device or of its partitions (/proc/self/mountinfo, matched by device number, so any name for the device
/// is caught) and devices stacked on it (/sys/dev/block/M:m/holders: md, device-mapper, LVM).
/// </summary>
internal static class BlockDeviceUsage
{
    public static void ThrowIfInUse(string path, uint major, uint minor)
    {
        var numbers = new List<string> { $"{major}:{minor}" };
        string sys = $"/sys/dev/block/{major}:{minor}";
        if (Directory.Exists(sys))
        {
            foreach (var child in Directory.EnumerateDirectories(sys))
            {
                if (File.Exists(Path.Combine(child, "partition")) && File.Exists(Path.Combine(child, "dev")))
                    numbers.Add(File.ReadAllText(Path.Combine(child, "dev")).Trim());
            }
        }

        if (File.Exists("/proc/self/mountinfo"))
        {
            // "36 35 7:0 / /mnt/point rw,relatime shared:1 - ext4 /dev/loop0 rw": field 3 is major:minor, field 5 the mount point.
            foreach (var line in File.ReadLines("/proc/self/mountinfo"))
            {
                var fields = line.Split(' ');
                if (fields.Length > 4 && numbers.Contains(fields[2]))
                {
                    string what = fields[2] == numbers[0] ? "the device" : $"its partition {fields[2]}";
                    throw new BlockDeviceException(path, $"{what} is mounted on {Unescape(fields[4])}; refusing to open it", null);
                }
            }
        }

        foreach (var number in numbers)
        {
            string holders = $"/sys/dev/block/{number}/holders";
            if (Directory.Exists(holders) && Directory.EnumerateFileSystemEntries(holders).FirstOrDefault() is { } holder)
                throw new BlockDeviceException(path, $"{number} is held by {Path.GetFileName(holder)} (md, device-mapper or LVM); refusing to open it", null);
        }
    }

    /// <summary>mountinfo escapes space, tab, newline and backslash as \ooo.</summary>
    private static string Unescape(string field) =>
        field.Replace("\\040", " ", StringComparison.Ordinal).Replace("\\011", "\t", StringComparison.Ordinal)
             .Replace("\\012", "\n", StringComparison.Ordinal).Replace("\\134", "\\", StringComparison.Ordinal);
}
