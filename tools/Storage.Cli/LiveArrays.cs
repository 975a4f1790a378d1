using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Storage.Cli;

/// <summary>
/// What a running <c>storage serve</c> publishes about itself in the run directory. <c>Pool</c>: the pool it serves
/// (its volumes and snapshots are the exports), null when it serves the array itself as one export.
/// </summary>
internal sealed record ServerRecord(string Name, int Pid, IReadOnlyList<string> Disks, string NbdSocket, string Control, string? Tcp, string? Pool = null);

/// <summary>A request on the control socket: the <c>storage</c> arguments to run against the live array.</summary>
internal sealed record ControlRequest(IReadOnlyList<string> Args);

/// <summary>The answer: what the command printed and its exit code.</summary>
internal sealed record ControlResponse(int Code, string Output, string Error);

/// <summary>
/// Where running servers are found: <c>$STORAGE_RUN_DIR</c>, else /run/storage for root, else
/// $TMPDIR/storage-$USER; owner-only (0700). Each server writes <c>NAME.json</c> and listens on <c>NAME.ctl</c>
/// (0600) and <c>NAME.nbd</c>.
/// </summary>
internal static class LiveArrays
{
    private static readonly AsyncLocal<LiveArray?> Live = new();

    /// <summary>The array (and pool) of the server this command runs inside, null in a plain process.</summary>
    public static LiveArray? Current => Live.Value;

    /// <summary>Runs <paramref name="run"/> inside the server that holds <paramref name="live"/>: the verbs act on it.</summary>
    public static int With(LiveArray live, Func<int> run)
    {
        Live.Value = live;
        try
        {
            return run();
        }
        finally
        {
            Live.Value = null;
        }
    }

    public static string Directory => Storage.Daemon.DaemonRecords.RunDirectory;

    public static string Ensure() => Storage.Daemon.DaemonRecords.EnsureRunDirectory();

    /// <summary>Servers whose process is still alive.</summary>
    public static IEnumerable<ServerRecord> Running()
    {
        if (!Storage.Daemon.DaemonRecords.RunDirectoryIsTrusted())
            yield break;
        foreach (var file in System.IO.Directory.EnumerateFiles(Directory, "*.json"))
        {
            ServerRecord? record;
            try
            {
                record = JsonSerializer.Deserialize(File.ReadAllText(file), CliJson.Default.ServerRecord);
            }
            catch (Exception e) when (e is JsonException or IOException)
            {
                continue;
            }
            if (record is not null && Alive(record.Pid) && File.Exists(record.Control))
                yield return record;
        }
    }

    private static bool Alive(int pid) => Storage.Daemon.DaemonRecords.Alive(pid);

    /// <summary>The running server that holds any of these disks, or serves an array of this name.</summary>
    public static ServerRecord? Find(IEnumerable<string> disks, string? name = null)
    {
        var wanted = disks.ToHashSet(StringComparer.Ordinal);
        return Running().FirstOrDefault(r => r.Name == name || r.Disks.Any(wanted.Contains));
    }

    /// <summary>Runs <paramref name="args"/> inside the server and relays what it printed.</summary>
    public static int Forward(ServerRecord server, IReadOnlyList<string> args, TextWriter output, TextWriter error)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(server.Control));
        using var stream = new NetworkStream(socket, ownsSocket: false);
        using var writer = new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true };
        using var reader = new StreamReader(stream, Encoding.UTF8);
        writer.WriteLine(JsonSerializer.Serialize(new ControlRequest(args), CliJson.Compact.ControlRequest));
        var response = JsonSerializer.Deserialize(reader.ReadLine() ?? "null", CliJson.Compact.ControlResponse)
            ?? throw new IOException($"the server of array '{server.Name}' (pid {server.Pid}) closed the control connection without answering.");
        output.Write(response.Output);
        error.Write(response.Error);
        return response.Code;
    }
}
