using System.CommandLine;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Storage.CommandLine;
using Storage.Nbd;
using Storage.Devices;
using Storage.Raid;
using Storage.Versioning;

namespace Storage.Cli;

/// <summary>The array (and the pool on it) a server holds, and how to ask the server to stop.</summary>
internal sealed class LiveArray(RaidArray? array, Pool? pool = null)
{
    private readonly TaskCompletionSource _stop = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The array served; a server of a pool on a single device (--device) has none.</summary>
    public RaidArray Array => array ?? throw new UsageException($"storage serve (pid {Environment.ProcessId}) serves pool '{pool?.Name}' on a single device, not an array.");

    /// <summary>The pool on the array, when the server serves its volumes.</summary>
    public Pool? Pool => pool;

    public Task Stopping => _stop.Task;

    public void RequestStop() => _stop.TrySetResult();
}

/// <summary>
/// <c>storage serve --disks …</c>: assembles the array and exports it over NBD — on a Unix socket in the run
/// directory always, and on TCP when --listen says where (127.0.0.1 by default; any other address needs
/// --tls-cert, --tls-key and --allow). When the array (or the --device) holds a pool, the pool's volumes are the
/// exports instead, each volume <c>VOL</c> and each snapshot <c>VOL@SNAP</c> (read-only), and volumes and snapshots
/// made while it runs appear at once. While it runs, <c>storage array|pool|volume|snapshot … --disks …</c> act on
/// the live array and pool through the owner-only control socket, and <c>storage array stop</c>, SIGINT or SIGTERM
/// stop it cleanly: connections closed, pool committed, array flushed and marked clean.
/// </summary>
internal static class ServeCommand
{
    public static Command Build()
    {
        var disks = CliOptions.Paths("--disks", "the member disks of the array to serve");
        var device = PoolCommands.PathOption("--device", "serve the pool on this one file or block device (instead of --disks)", "PATH");
        var pool = CliOptions.Flag("--pool", "serve the volumes of the pool on the array (the default when it holds one); refuse if it holds none");
        var name = CliOptions.Text("--name", "the export's name (default: the array's name); with a pool, the server's name (default: the pool's)", "EXPORT");
        var listen = CliOptions.Text("--listen", "also listen on TCP, e.g. 127.0.0.1:10809 (other addresses need TLS and --allow)", "ADDR:PORT");
        var socket = CliOptions.Text("--socket", "the NBD Unix socket (default RUN_DIR/EXPORT.nbd)", "PATH");
        var readOnly = CliOptions.Flag("--read-only", "refuse writes, trims and zeroing");
        var cert = CliOptions.Text("--tls-cert", "TLS certificate (PEM)", "CERT.pem");
        var key = CliOptions.Text("--tls-key", "TLS private key (PEM)", "KEY.pem");
        var allow = CliOptions.Text("--allow", "clients allowed over TLS: addresses or CIDR ranges, comma-separated", "CIDR,…");
        var limit = CliOptions.Number("--limit", "rebuild speed limit in MB/s", 1, 1 << 20, "MB/s");
        var command = new Command("serve", "export the array, or the volumes and snapshots of its pool, over NBD until stopped (storage array stop, Ctrl-C or SIGTERM)");
        foreach (var option in new Option[] { disks, device, pool, name, listen, socket, readOnly, cert, key, allow, limit })
            command.Options.Add(option);
        command.SetAction(p => RunAsync(new ServeArgs(p.GetValue(disks)!, p.GetValue(device), p.GetValue(pool), p.GetValue(name), p.GetValue(listen), p.GetValue(socket), p.GetValue(readOnly),
            p.GetValue(cert), p.GetValue(key), p.GetValue(allow), p.GetValue(limit)), p.Out()).GetAwaiter().GetResult());
        return command;
    }

    private sealed record ServeArgs(IReadOnlyList<string> Disks, string? Device, bool Pool, string? Name, string? Listen, string? Socket, bool ReadOnly, string? TlsCert, string? TlsKey, string? Allow, int? Limit);

    private static async Task<int> RunAsync(ServeArgs options, TextWriter output)
    {
        if (options.Disks.Count > 0 && options.Device is not null)
            throw new UsageException("give --disks (an array) or --device (a pool on one file or block device), not both.");
        IReadOnlyList<string> paths = options.Device is { } single ? [single] : options.Disks;
        if (paths.Count == 0)
            throw new UsageException("--disks is required: the member disks of the array to serve (or --device PATH: a pool on one file or block device).");
        if (LiveArrays.Find(paths) is { } running)
            throw new UsageException($"array '{running.Name}' is already served by pid {running.Pid}.");
        NbdTlsOptions? tls = null;
        if (options.TlsCert is not null || options.TlsKey is not null || options.Allow is not null)
        {
            if (options.TlsCert is not { } cert || options.TlsKey is not { } key || options.Allow is not { } allow)
                throw new UsageException("TLS needs all of --tls-cert CERT.pem, --tls-key KEY.pem and --allow CLIENTS (addresses or CIDR ranges).");
            tls = NbdTlsOptions.FromPemFiles(cert, key, allow.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        }

        void Log(string line) => output.WriteLine($"{DateTime.UtcNow:HH:mm:ss} {line}");
        RaidArray? array = null;
        IBlockDevice device;
        if (options.Device is { } path)
        {
            device = Disks.Open(path);
        }
        else
        {
            array = await ArrayCommands.AssembleAsync(paths, options.Limit, output).ConfigureAwait(false);
            array.StateChanged += Log;
            device = array;
        }
        Pool? pool = null;
        try
        {
            if (await Pool.IsPoolAsync(device).ConfigureAwait(false))
                pool = await Pool.OpenAsync(device, new PoolOpenOptions { Log = Log }).ConfigureAwait(false);
            else if (options.Pool || options.Device is not null)
                throw new UsageException($"{(array is null ? device.Name : $"array '{array.Name}'")} holds no pool; create one with 'storage pool create {(array is null ? "--device" : "--disks")} … --name NAME'{(array is null ? "" : ", or serve the array itself without --pool")}.");
        }
        catch
        {
            await PoolCommands.CloseDeviceAsync(device).ConfigureAwait(false);
            throw;
        }

        var live = new LiveArray(array, pool);
        string name = options.Name ?? pool?.Name ?? array!.Name;
        string dir = LiveArrays.Ensure();
        string nbdSocket = options.Socket ?? Path.Combine(dir, $"{name}.nbd");
        string control = Path.Combine(dir, $"{name}.ctl");
        string record = Path.Combine(dir, $"{name}.json");
        var server = new NbdServer(new NbdServerOptions { DefaultExport = pool is null ? name : null, Log = line => Log($"nbd: {line}") });
        var exports = pool is null ? null : new PoolExports(pool, server, options.ReadOnly, Log);
        using var controlSocket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            if (exports is not null)
            {
                pool!.Changed += exports.Changed;
                await exports.SyncAsync().ConfigureAwait(false);
            }
            else
            {
                server.AddExport(new NbdExport(name, array!, options.ReadOnly, $"{array!.Geometry}"));
            }
            server.ListenUnix(nbdSocket);
            string? tcp = null;
            if (options.Listen is { } listen)
                tcp = server.Listen(listen, tls).ToString();
            File.Delete(control);
            controlSocket.Bind(new UnixDomainSocketEndPoint(control));
            if (!OperatingSystem.IsWindows())
                File.SetUnixFileMode(control, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            controlSocket.Listen(16);
            File.WriteAllText(record, JsonSerializer.Serialize(new ServerRecord(name, Environment.ProcessId, [.. paths], nbdSocket, control, tcp, pool?.Name), CliJson.Default.ServerRecord));
            if (pool is null)
            {
                output.WriteLine($"serving array '{array!.Name}' ({array.Geometry}, {array.Status().State}) as export '{name}'");
                output.WriteLine($"  nbd+unix:///{name}?socket={nbdSocket}");
                if (tcp is not null)
                    output.WriteLine($"  nbd://{tcp}/{name}");
            }
            else
            {
                string where = array is null ? device.Name : $"array '{array.Name}' ({array.Geometry}, {array.Status().State})";
                output.WriteLine($"serving pool '{pool.Name}' on {where}: every volume as export VOL, every snapshot read-only as VOL@SNAP");
                foreach (var export in server.Exports)
                    output.WriteLine($"  nbd+unix:///{export.Name}?socket={nbdSocket}{(tcp is null ? "" : $"   nbd://{tcp}/{export.Name}")}");
                output.WriteLine($"  list them with: nbdinfo --list 'nbd+unix://?socket={nbdSocket}'");
            }
            output.WriteLine($"  control: {control}   stop with: storage {(pool is null ? "array" : "pool")} stop {(options.Device is null ? "--disks" : "--device")} …, Ctrl-C or SIGTERM");

            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context => { context.Cancel = true; live.RequestStop(); });
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, context => { context.Cancel = true; live.RequestStop(); });
            var accepting = AcceptControlAsync(controlSocket, live, exports);
            await live.Stopping.ConfigureAwait(false);
            output.WriteLine(pool is null ? "stopping: closing connections, flushing the array" : "stopping: closing connections, committing the pool, flushing the array");
        }
        finally
        {
            File.Delete(record);
            controlSocket.Dispose();
            File.Delete(control);
            await server.StopAsync().ConfigureAwait(false);
            if (exports is not null)
            {
                pool!.Changed -= exports.Changed;
                await exports.DisposeAsync().ConfigureAwait(false);
            }
            if (pool is not null)
                await pool.DisposeAsync().ConfigureAwait(false);
            await PoolCommands.CloseDeviceAsync(device).ConfigureAwait(false);
        }
        output.WriteLine(array is null ? $"pool '{pool!.Name}' closed cleanly" : $"array '{array.Name}' stopped cleanly");
        return Cli.Ok;
    }

    /// <summary>One JSON request line per connection: run it against the live array, answer with one JSON line.</summary>
    private static async Task AcceptControlAsync(Socket listener, LiveArray live, PoolExports? exports)
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
                    var request = JsonSerializer.Deserialize(await reader.ReadLineAsync().ConfigureAwait(false) ?? "null", CliJson.Compact.ControlRequest);
                    var output = new StringWriter();
                    var error = new StringWriter();
                    int code = request is null ? Cli.Usage : Cli.RunLive(request.Args, output, error, live);
                    if (exports is not null)
                        await exports.SyncAsync().ConfigureAwait(false);   // what the command made is exported before it returns
                    await writer.WriteLineAsync(JsonSerializer.Serialize(new ControlResponse(code, output.ToString(), error.ToString()), CliJson.Compact.ControlResponse)).ConfigureAwait(false);
                }
                catch (Exception e) when (e is IOException or JsonException or SocketException)
                {
                    // A client that went away or sent garbage gets nothing; the server goes on.
                }
            });
        }
    }
}
