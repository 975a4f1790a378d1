using Storage.Native;
using System.Runtime.InteropServices;

namespace Storage.Consensus;

/// <summary>An <see cref="ILogDirectory"/> on a real directory; fsync through <see cref="FileStream.Flush(bool)"/>.</summary>
public sealed partial class FileLogDirectory : ILogDirectory
{
    private readonly string _path;

    /// <summary>Uses (and creates) the directory <paramref name="path"/>.</summary>
    public FileLogDirectory(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        _path = Path.GetFullPath(path);
        Directory.CreateDirectory(_path);
    }

    /// <summary>The directory's full path.</summary>
    public string FullPath => _path;

    /// <inheritdoc />
    public byte[]? ReadAll(string name)
    {
        string p = Path.Combine(_path, name);
        return File.Exists(p) ? File.ReadAllBytes(p) : null;
    }

    /// <inheritdoc />
    public ILogFile OpenAppend(string name) => new AppendFile(Path.Combine(_path, name));

    /// <inheritdoc />
    public void WriteAtomic(string name, ReadOnlySpan<byte> data)
    {
        string target = Path.Combine(_path, name);
        string temp = target + ".tmp";
        using (var fs = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            fs.Write(data);
            fs.Flush(flushToDisk: true);
        }
        File.Move(temp, target, overwrite: true);
        SyncDirectory();
    }

    /// <inheritdoc />
    public void Truncate(string name, long length)
    {
        using var fs = new FileStream(Path.Combine(_path, name), FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
        fs.SetLength(length);
        fs.Flush(flushToDisk: true);
    }

    /// <inheritdoc />
    public void Delete(string name)
    {
        File.Delete(Path.Combine(_path, name));
        SyncDirectory();
    }

    private void SyncDirectory()
    {
        // A rename or unlink is durable only once the directory itself is fsynced.
        if (OperatingSystem.IsLinux())
            LibC.SyncDirectory(_path);
    }

    private sealed class AppendFile(string path) : ILogFile
    {
        private readonly FileStream _stream = new(path, FileMode.Append, FileAccess.Write, FileShare.Read, 1 << 16);

        public void Append(ReadOnlySpan<byte> data) => _stream.Write(data);

        public void Sync() => _stream.Flush(flushToDisk: true);

        public void Dispose() => _stream.Dispose();
    }
}
