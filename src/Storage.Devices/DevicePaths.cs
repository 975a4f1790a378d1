namespace Storage.Devices;

/// <summary>Opens a device by path: block devices under /dev, files elsewhere (created sparse on request).</summary>
public static class DevicePaths
{
    /// <summary>Paths under /dev are block devices, except the tmpfs folders /dev/shm and /dev/mqueue.</summary>
    public static bool IsBlockDevice(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return path.StartsWith("/dev/", StringComparison.Ordinal) && !path.StartsWith("/dev/shm/", StringComparison.Ordinal) && !path.StartsWith("/dev/mqueue/", StringComparison.Ordinal);
    }

    /// <summary>Opens <paramref name="path"/>; a missing file is created with <paramref name="createSize"/> bytes when that is positive.</summary>
    /// <exception cref="FileNotFoundException">The path does not exist and nothing was to be created.</exception>
    public static IBlockDevice Open(string path, long createSize = 0, bool readOnly = false)
    {
        if (IsBlockDevice(path))
            return RawBlockDevice.Open(path, readOnly);
        if (File.Exists(path))
            return FileBlockDevice.Open(path, readOnly: readOnly);
        if (createSize > 0)
            return FileBlockDevice.Create(path, createSize);
        throw new FileNotFoundException($"{path} does not exist.", path);
    }
}
