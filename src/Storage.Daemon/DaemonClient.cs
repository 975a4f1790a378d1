using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Storage.Daemon;

/// <summary>Sends typed requests to a running daemon over its control socket.</summary>
public static class DaemonClient
{
    /// <summary>Sends <paramref name="request"/> to the daemon listening on <paramref name="controlSocket"/> and returns its reply.</summary>
    /// <exception cref="IOException">The daemon is not there, or closed the connection without answering.</exception>
    public static async Task<DaemonReply> SendAsync(string controlSocket, DaemonRequest request, CancellationToken cancellationToken = default)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(controlSocket), cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            throw new IOException($"No storage daemon answers on {controlSocket} ({e.SocketErrorCode}); start one with 'storage daemon --dir DIR'.", e);
        }
        using var stream = new NetworkStream(socket, ownsSocket: false);
        using var writer = new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true };
        using var reader = new StreamReader(stream, Encoding.UTF8);
        await writer.WriteLineAsync(JsonSerializer.Serialize(request, DaemonJson.Default.DaemonRequest)).ConfigureAwait(false);
        string line = await reader.ReadLineAsync(cancellationToken).ConfigureAwait(false)
            ?? throw new IOException($"The storage daemon on {controlSocket} closed the connection without answering (it may be stopping).");
        return JsonSerializer.Deserialize(line, DaemonJson.Default.DaemonReply) ?? throw new IOException("The storage daemon sent an empty reply.");
    }
}

/// <summary>
/// Where running daemons are found: a <c>NODE.daemon</c> record each in the run directory (<c>$STORAGE_RUN_DIR</c>,
/// else /run/storage for root, else $TMPDIR/storage-$USER; owner-only).
/// </summary>
public static class DaemonRecords
{
    /// <summary>The run directory.</summary>
    public static string RunDirectory
    {
        get
        {
            string? configured = Environment.GetEnvironmentVariable("STORAGE_RUN_DIR");
            if (!string.IsNullOrEmpty(configured))
                return configured;
            return Environment.IsPrivilegedProcess ? "/run/storage" : Path.Combine(Path.GetTempPath(), $"storage-{Environment.UserName}");
        }
    }

    /// <summary>
    /// Whether the run directory exists and only its owner can change it: a real directory (not a symbolic link) with
    /// no group or other permissions. Records in any other are not read: someone else could have planted them to
    /// point commands at their own sockets.
    /// </summary>
    public static bool RunDirectoryIsTrusted()
    {
        var info = new DirectoryInfo(RunDirectory);
        if (!info.Exists || info.LinkTarget is not null)
            return false;
        return OperatingSystem.IsWindows() || (info.UnixFileMode & (UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
            | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute)) == 0;
    }

    /// <summary>Creates the run directory, owner-only.</summary>
    /// <exception cref="IOException">It is a symbolic link (someone else's, perhaps).</exception>
    public static string EnsureRunDirectory()
    {
        string dir = RunDirectory;
        if (new DirectoryInfo(dir) is { Exists: true, LinkTarget: not null })
            throw new IOException($"The run directory {dir} is a symbolic link; remove it, or set STORAGE_RUN_DIR to a directory of your own.");
        CreateOwnerOnly(dir);
        return dir;
    }

    /// <summary>Creates <paramref name="dir"/> (if need be) and makes it owner-only (0700).</summary>
    internal static void CreateOwnerOnly(string dir)
    {
        Directory.CreateDirectory(dir);
        if (!OperatingSystem.IsWindows())
            File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    internal static string PathOf(string node) => Path.Combine(RunDirectory, $"{node}.daemon");

    internal static void Write(DaemonRecord record)
    {
        EnsureRunDirectory();
        string path = PathOf(record.Node), temporary = path + ".tmp";
        File.WriteAllText(temporary, JsonSerializer.Serialize(record, DaemonJson.Default.DaemonRecord));
        File.Move(temporary, path, overwrite: true);
    }

    internal static void Delete(string node) => File.Delete(PathOf(node));

    /// <summary>Daemons whose process is alive and whose control socket exists.</summary>
    public static IReadOnlyList<DaemonRecord> Running()
    {
        if (!RunDirectoryIsTrusted())
            return [];
        var running = new List<DaemonRecord>();
        foreach (string file in Directory.EnumerateFiles(RunDirectory, "*.daemon"))
        {
            try
            {
                if (JsonSerializer.Deserialize(File.ReadAllText(file), DaemonJson.Default.DaemonRecord) is { } record && Alive(record.Pid) && Answers(record.Control))
                    running.Add(record);
            }
            catch (Exception e) when (e is JsonException or IOException)
            {
                // Being rewritten, or not ours.
            }
        }
        return running;
    }

    /// <summary>Whether something accepts connections on <paramref name="socket"/> (a daemon killed with -9 leaves a dead one).</summary>
    private static bool Answers(string socket)
    {
        if (!File.Exists(socket))
            return false;
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(socket));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>Whether process <paramref name="pid"/> runs.</summary>
    public static bool Alive(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}
