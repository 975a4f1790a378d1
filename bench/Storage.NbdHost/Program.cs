using System.Runtime.InteropServices;
using Storage.Devices;
using Storage.Nbd;

// A minimal NBD server for benchmarks and manual tests: one export over a file (or memory) device, on TCP and/or a
// Unix socket, until SIGINT/SIGTERM. The product's command is `storage serve`; this host exists so that
// bench/nbd/fio-vs-nbdkit.sh can compare the server alone against nbdkit.
const string Usage = """
    usage: Storage.NbdHost (--file PATH [--create SIZE] | --memory SIZE) [--tcp ADDR] [--unix PATH]
                           [--name NAME] [--sector 512|4096] [--direct] [--read-only] [--verbose]
      --file PATH      serve this disk image (FileBlockDevice); --create SIZE makes it first (e.g. 1G)
      --memory SIZE    serve a memory disk instead
      --tcp ADDR       listen on TCP (default 127.0.0.1:10809 when no --unix is given)
      --unix PATH      listen on a Unix socket
    """;

string? file = null, tcp = null, unix = null, name = "disk";
long create = 0, memory = 0;
int sector = 512;
bool direct = false, readOnly = false, verbose = false;
for (int i = 0; i < args.Length; i++)
{
    string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value\n{Usage}");
    switch (args[i])
    {
        case "--file": file = Next(); break;
        case "--create": create = ParseSize(Next()); break;
        case "--memory": memory = ParseSize(Next()); break;
        case "--tcp": tcp = Next(); break;
        case "--unix": unix = Next(); break;
        case "--name": name = Next(); break;
        case "--sector": sector = int.Parse(Next()); break;
        case "--direct": direct = true; break;
        case "--read-only": readOnly = true; break;
        case "--verbose": verbose = true; break;
        default:
            Console.Error.WriteLine(Usage);
            return 2;
    }
}
if ((file is null) == (memory == 0))
{
    Console.Error.WriteLine(Usage);
    return 2;
}

using IBlockDevice device = file is null
    ? new MemoryBlockDevice(memory, sector)
    : create > 0
        ? FileBlockDevice.Create(file, create, sector, directIo: direct, overwrite: true)
        : FileBlockDevice.Open(file, directIo: direct, readOnly: readOnly, sectorSize: sector);
await using var server = new NbdServer(new NbdServerOptions { Log = verbose ? Console.Error.WriteLine : null });
server.AddExport(new NbdExport(name, device, readOnly));
if (unix is not null)
    Console.WriteLine(NbdServer.FormatUri(server.ListenUnix(unix), name));
if (tcp is not null || unix is null)
    Console.WriteLine(NbdServer.FormatUri(server.Listen(tcp ?? "127.0.0.1:10809"), name));
Console.WriteLine("ready");

var stop = new TaskCompletionSource();
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
await stop.Task;
await server.StopAsync();
return 0;

static long ParseSize(string text)
{
    long unit = char.ToUpperInvariant(text[^1]) switch { 'K' => 1L << 10, 'M' => 1L << 20, 'G' => 1L << 30, _ => 1 };
    return long.Parse(unit == 1 ? text : text[..^1]) * unit;
}
