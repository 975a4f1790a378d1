namespace Storage.Devices.Tests;

/// <summary>A loop device over a sparse scratch file: <c>losetup --find --show</c>, detached on dispose.</summary>
internal sealed class LoopDevice : IDisposable
{
    private readonly TempDirectory _directory;

    private LoopDevice(TempDirectory directory, string backingFile, string path)
    {
        _directory = directory;
        BackingFile = backingFile;
        Path = path;
    }

    /// <summary>The device node, e.g. /dev/loop3.</summary>
    public string Path { get; }

    public string BackingFile { get; }

    /// <summary>Attaches a zeroed loop device, or skips the test (fails it with CI=true) where loop devices are unavailable.</summary>
    public static LoopDevice Attach(long size, int sectorSize = 512)
    {
        Requires.LoopDevices();
        var directory = new TempDirectory();
        string file = directory.File("loop.img");
        using (var stream = new FileStream(file, FileMode.CreateNew))
            stream.SetLength(size);
        var (code, output, error) = Shell.Run("losetup", "--find", "--show", "--sector-size", sectorSize.ToString(System.Globalization.CultureInfo.InvariantCulture), file);
        if (code != 0 || !output.StartsWith("/dev/loop", StringComparison.Ordinal))
        {
            directory.Dispose();
            Requires.Missing($"losetup --find --show failed ({code}): {error}");
        }
        return new LoopDevice(directory, file, output);
    }

    public void Dispose()
    {
        // The device may still be closing (an unmount or close just returned); losetup -d retries internally.
        Shell.Run("losetup", "-d", Path);
        _directory.Dispose();
    }
}
