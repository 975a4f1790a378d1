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
/// A tmpfs of a few megabytes mounted on a scratch directory, for tests that fill a file system up. Unmounted on
/// dispose.
/// </summary>
internal sealed class SmallTmpfs : IDisposable
{
    private readonly TempDirectory _directory = new();

    private SmallTmpfs()
    {
    }

    /// <summary>Mounts one; null with the reason when this process may not mount (not root, or no CAP_SYS_ADMIN).</summary>
    public static SmallTmpfs? TryMount(long bytes, out string reason)
    {
        var fs = new SmallTmpfs();
        var (code, _, error) = Shell.Run("mount", "-t", "tmpfs", "-o", $"size={bytes}", "storage-test", fs._directory.Path);
        reason = code == 0 ? "" : $"mounting a small tmpfs failed (needs root with CAP_SYS_ADMIN): {error}";
        if (code == 0)
            return fs;
        fs._directory.Dispose();
        return null;
    }

    public string File(string name) => _directory.File(name);

    public void Dispose()
    {
        Shell.Run("umount", _directory.Path);
        _directory.Dispose();
    }
}
