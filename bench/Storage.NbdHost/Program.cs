using System.CommandLine;
using System.Runtime.InteropServices;
using Storage.CommandLine;
using Storage.Devices;
using Storage.Nbd;

// A minimal NBD server for benchmarks and manual tests: one export over a file (or memory) device, on TCP and/or a
// Unix socket, until SIGINT/SIGTERM. The product's command is `storage serve`; this host exists so that
// bench/nbd/fio-vs-nbdkit.sh can compare the server alone against nbdkit.
var file = CliOptions.Text("--file", "serve this disk image (FileBlockDevice)", "PATH");
var create = CliOptions.Size("--create", "make the --file image of this size first", 4096, 1L << 50);
var memory = CliOptions.Size("--memory", "serve a memory disk of this size instead", 4096, 1L << 40);
var tcpOption = CliOptions.Text("--tcp", "listen on TCP (default 127.0.0.1:10809 when no --unix is given)", "ADDR:PORT");
var unixOption = CliOptions.Text("--unix", "listen on a Unix socket", "PATH");
var nameOption = CliOptions.Text("--name", "the export's name (default disk)", "NAME");
var sectorOption = CliOptions.Number("--sector", "sector size: 512 or 4096", 512, 4096);
var directOption = CliOptions.Flag("--direct", "open the file with O_DIRECT");
var readOnlyOption = CliOptions.Flag("--read-only", "refuse writes");
var verboseOption = CliOptions.Flag("--verbose", "log connections");
var root = new RootCommand("A minimal NBD server for benchmarks: one export over a file or memory device until SIGINT/SIGTERM (the product's command is storage serve).");
foreach (var option in new Option[] { file, create, memory, tcpOption, unixOption, nameOption, sectorOption, directOption, readOnlyOption, verboseOption })
    root.Options.Add(option);
root.SetAction(p =>
{
    if ((p.GetValue(file) is null) == (p.GetValue(memory) is null))
        throw new UsageException("give one of --file PATH or --memory SIZE.");
    if (p.GetValue(sectorOption) is { } s && s is not (512 or 4096))
        throw new UsageException($"--sector must be 512 or 4096, got {s}.");
    return ServeAsync(p.GetValue(file), p.GetValue(create) ?? 0, p.GetValue(memory) ?? 0, p.GetValue(tcpOption), p.GetValue(unixOption), p.GetValue(nameOption) ?? "disk",
        p.GetValue(sectorOption) ?? 512, p.GetValue(directOption), p.GetValue(readOnlyOption), p.GetValue(verboseOption)).GetAwaiter().GetResult();
});
return CommandLineRunner.Invoke(root, args, Console.Out, Console.Error, "Storage.NbdHost");

static async Task<int> ServeAsync(string? file, long create, long memory, string? tcp, string? unix, string name, int sector, bool direct, bool readOnly, bool verbose)
{
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
}
