namespace Storage.Nbd.Tests;

/// <summary>A directory of scratch files, deleted with everything in it.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        // Short: a Unix socket path must fit in 108 bytes.
        Path = Directory.CreateTempSubdirectory("nbd-").FullName;
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
        }
    }
}
