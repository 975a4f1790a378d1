using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Storage.Nbd;
using Storage.Raid;

namespace Storage.Cli;

/// <summary>An array a server holds, and how to ask the server to stop.</summary>
internal sealed class LiveArray(RaidArray array)
{
    private readonly TaskCompletionSource _stop = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public RaidArray Array { get; } = array;

    public Task Stopping => _stop.Task;

    public void RequestStop() => _stop.TrySetResult();
}

/// <summary>
/// <c>storage serve --disks …</c>: assembles the array and exports it over NBD — on a Unix socket in the run
/// directory always, and on TCP when --listen says where (127.0.0.1 by default; any other address needs
/// --tls-cert, --tls-key and --allow). While it runs, <c>storage array … --disks …</c> acts on the live array
/// through the owner-only control socket, and <c>storage array stop</c>, SIGINT or SIGTERM stop it cleanly:
/// connections closed, array flushed and marked clean.
/// </summary>
internal static class ServeCommand
{
    public const string Usage = """
          storage serve --disks A,B,… [--name EXPORT] [--listen 127.0.0.1:10809] [--socket PATH] [--read-only]
                        [--tls-cert CERT.pem --tls-key KEY.pem --allow 10.0.0.0/8,…] [--limit MB/s]
                                                                 export the array over NBD until stopped
""";

    public static int Run(Options options, TextWriter output, TextWriter error) => RunAsync(options, output, error).GetAwaiter().GetResult();

    private static async Task<int> RunAsync(Options options, TextWriter output, TextWriter error)
    {
        var paths = options.Paths("disks");
        if (paths.Count == 0)
            throw new UsageException("--disks is required: the member disks of the array to serve.");
        if (LiveArrays.Find(paths) is { } running)
            throw new UsageException($"array '{running.Name}' is already served by pid {running.Pid}.");
        NbdTlsOptions? tls = null;
        if (options.Has("tls-cert") || options.Has("tls-key") || options.Has("allow"))
        {
            if (options.String("tls-cert") is not { } cert || options.String("tls-key") is not { } key || options.String("allow") is not { } allow)
                throw new UsageException("TLS needs all of --tls-cert CERT.pem, --tls-key KEY.pem and --allow CLIENTS (addresses or CIDR ranges).");
            tls = NbdTlsOptions.FromPemFiles(cert, key, allow.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        }

        var array = await ArrayCommands.AssembleAsync(paths, options, output).ConfigureAwait(false);
        array.StateChanged += line => output.WriteLine($"{DateTime.UtcNow:HH:mm:ss} {line}");
        var live = new LiveArray(array);
        string name = options.String("name") ?? array.Name;
        string dir = LiveArrays.Ensure();
        string nbdSocket = options.String("socket") ?? Path.Combine(dir, $"{name}.nbd");
        string control = Path.Combine(dir, $"{name}.ctl");
        string record = Path.Combine(dir, $"{name}.json");
        var server = new NbdServer(new NbdServerOptions { DefaultExport = name, Log = line => output.WriteLine($"{DateTime.UtcNow:HH:mm:ss} nbd: {line}") });
        using var controlSocket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            server.AddExport(new NbdExport(name, array, options.Has("read-only"), $"{array.Geometry}"));
            server.ListenUnix(nbdSocket);
            string? tcp = null;
            if (options.String("listen") is { } listen)
                tcp = server.Listen(listen, tls).ToString();
            File.Delete(control);
            controlSocket.Bind(new UnixDomainSocketEndPoint(control));
            if (!OperatingSystem.IsWindows())
                File.SetUnixFileMode(control, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            controlSocket.Listen(16);
            File.WriteAllText(record, JsonSerializer.Serialize(new ServerRecord(name, Environment.ProcessId, [.. paths], nbdSocket, control, tcp), Json.Options));
            output.WriteLine($"serving array '{array.Name}' ({array.Geometry}, {array.Status().State}) as export '{name}'");
            output.WriteLine($"  nbd+unix:///{name}?socket={nbdSocket}");
            if (tcp is not null)
                output.WriteLine($"  nbd://{tcp}/{name}");
            output.WriteLine($"  control: {control}   stop with: storage array stop --disks …, Ctrl-C or SIGTERM");

            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context => { context.Cancel = true; live.RequestStop(); });
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, context => { context.Cancel = true; live.RequestStop(); });
            var accepting = AcceptControlAsync(controlSocket, live);
            await live.Stopping.ConfigureAwait(false);
            output.WriteLine("stopping: closing connections, flushing the array");
        }
        finally
        {
            File.Delete(record);
            controlSocket.Dispose();
            File.Delete(control);
            await server.StopAsync().ConfigureAwait(false);
            await array.StopAsync().ConfigureAwait(false);
        }
        output.WriteLine($"array '{array.Name}' stopped cleanly");
        return Cli.Ok;
    }

    /// <summary>One JSON request line per connection: run it against the live array, answer with one JSON line.</summary>
    private static async Task AcceptControlAsync(Socket listener, LiveArray live)
    {
        while (true)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return;
            }
            _ = Task.Run(async () =>
            {
                using var socket = client;
                using var stream = new NetworkStream(socket, ownsSocket: false);
                using var reader = new StreamReader(stream, Encoding.UTF8);
                using var writer = new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true };
                try
                {
                    var request = JsonSerializer.Deserialize<ControlRequest>(await reader.ReadLineAsync().ConfigureAwait(false) ?? "null", Json.Compact);
                    var output = new StringWriter();
                    var error = new StringWriter();
                    int code = request is null ? Cli.Usage : Cli.RunLive(request.Args, output, error, live);
                    await writer.WriteLineAsync(JsonSerializer.Serialize(new ControlResponse(code, output.ToString(), error.ToString()), Json.Compact)).ConfigureAwait(false);
                }
                catch (Exception e) when (e is IOException or JsonException or SocketException)
                {
                    // A client that went away or sent garbage gets nothing; the server goes on.
                }
            });
        }
    }
}
