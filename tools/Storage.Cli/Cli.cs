using Storage.Parity;

namespace Storage.Cli;

/// <summary>
/// The <c>storage</c> command. Exit codes: 0 success, 1 the operation ran and failed (e.g. a
/// verification mismatch), 2 bad usage or input (nothing was changed).
/// </summary>
internal static class Cli
{
    public const int Ok = 0;
    public const int Failed = 1;
    public const int Usage = 2;

    private static readonly string Help = $"""
        storage — software RAID and parity engine

        Usage:
          storage quickstart [--dir DIR] [--size-mib N]   RAID-6 8+2 over file-backed disks in DIR (default ./quickstart):
                                                          write, lose two disks, read degraded, rebuild onto spares, scrub, verify
        {ArrayCommands.Usage}{ServeCommand.Usage}{MountCommand.Usage}
          storage meta serve|status|put|get|bench …                       replicated metadata (Multi-Paxos); storage meta --help
          storage bench parity [--size-kib N] [--json]    parity GB/s per kernel set on this CPU, ISA-L alongside if installed
          storage --version | --help

        Environment:
          STORAGE_PARITY_ISA=scalar|vector128|avx2|avx512bw|gfni256|gfni512   force a kernel set

        Exit codes: 0 success, 1 operation failed, 2 bad usage or input (nothing changed).
        """;

    public static int Run(string[] args, TextWriter output, TextWriter error) => Guarded(error, () => args switch
    {
                [] or ["--help" or "-h" or "help"] => Write(output, Help, Ok),
                ["--version"] => Write(output, $"storage {typeof(Cli).Assembly.GetName().Version}", Ok),
                ["quickstart", .. var rest] => QuickstartCommand.Run(Options.Parse(rest, "dir", "size-mib"), output),
                ["array", .. var rest] => ArrayCommands.Run(rest, output, error),
                ["serve", .. var rest] => ServeCommand.Run(Options.Parse(rest, "disks", "name", "socket", "listen", "tls-cert", "tls-key", "allow", "read-only", "limit"), output, error),
                ["mount", .. var rest] => MountCommand.Mount(rest, output),
                ["umount", .. var rest] => MountCommand.Unmount(rest, output),
                ["meta", .. var rest] => Storage.Metadata.MetaCommands.RunAsync(rest, output, error).GetAwaiter().GetResult(),
                ["bench", "parity", .. var rest] => BenchParityCommand.Run(Options.Parse(rest, "size-kib", "json"), output),
                ["bench", ..] => Write(error, "storage bench: say what to measure: 'storage bench parity'.", Usage),
                [var command, ..] => Write(error, $"storage: unknown command '{command}'.{Suggest(command)} Run 'storage --help' for the list.", Usage),
    });

    /// <summary>Runs an array command against the array a server holds (from its control socket).</summary>
    public static int RunLive(IReadOnlyList<string> args, TextWriter output, TextWriter error, LiveArray live) => Guarded(error, () => args.ToArray() switch
    {
        ["array", .. var rest] => ArrayCommands.Run(rest, output, error, live),
        _ => Write(error, "storage: the control socket takes 'array …' commands only.", Usage),
    });

    /// <summary>Maps the documented failures to messages and exit codes.</summary>
    private static int Guarded(TextWriter error, Func<int> command)
    {
        try
        {
            return command();
        }
        catch (UsageException e)
        {
            return Write(error, $"storage: {e.Message}", Usage);
        }
        catch (ParityConfigurationException e)
        {
            return Write(error, $"storage: {e.Message}", Usage);
        }
        catch (Storage.Raid.ArrayConfigurationException e)
        {
            return Write(error, $"storage: {e.Message}", Usage);
        }
        catch (IOException e) when (e is Storage.Raid.ArrayFailedException or Storage.Raid.BadBlockException or Storage.Devices.BlockDeviceException)
        {
            return Write(error, $"storage: {e.Message}", Failed);
        }
        catch (Storage.Nbd.NbdConfigurationException e)
        {
            return Write(error, $"storage: {e.Message}", Usage);
        }
        catch (ExternalToolException e)
        {
            return Write(error, $"storage: {e.Message}", Failed);
        }
    }

    private static string Suggest(string typed)
    {
        string[] known = ["quickstart", "bench", "array", "serve", "mount", "umount", "meta"];
        var close = known.FirstOrDefault(k => Options.Distance(k, typed) <= 2);
        return close is null ? "" : $" Did you mean '{close}'?";
    }

    private static int Write(TextWriter writer, string text, int code)
    {
        writer.WriteLine(text);
        return code;
    }
}
