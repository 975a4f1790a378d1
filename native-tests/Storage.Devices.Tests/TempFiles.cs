namespace Storage.Devices.Tests;

/// <summary>A directory of scratch files, deleted with everything in it. Shared by several test projects.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        // Short: Unix socket paths in it must fit in 108 bytes.
        Path = Directory.CreateTempSubdirectory("storage-").FullName;
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // A mount left behind by a failed test keeps the directory busy; the test already failed.
        }
    }
}

/// <summary>
/// A tmpfs of a few megabytes mounted on a scratch directory, for tests that fill a file system up. Needs root (the
/// caller checks); unmounted on dispose.
/// </summary>
internal sealed class SmallTmpfs : IDisposable
{
    private readonly TempDirectory _directory = new();

    public SmallTmpfs(long bytes)
    {
        Shell.Check("mount", "-t", "tmpfs", "-o", $"size={bytes}", "storage-test", _directory.Path);
    }

    public string File(string name) => _directory.File(name);

    public void Dispose()
    {
        Shell.Run("umount", _directory.Path);
        _directory.Dispose();
    }
}
