using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.Runtime.CompilerServices;
using Storage.CommandLine;
using Storage.Parity;

namespace Storage.Cli;

/// <summary>The operation ran and failed (exit 1); the message says what happened.</summary>
internal sealed class OperationFailedException(string message) : Exception(message);

/// <summary>
/// The <c>storage</c> command. Exit codes: 0 success, 1 the operation ran and failed (e.g. a verification
/// mismatch), 2 bad usage or input (nothing was changed). Parsing, help (<c>--help</c> on every verb), typo
/// suggestions and shell completion come from System.CommandLine.
/// </summary>
internal static class Cli
{
    public const int Ok = 0;
    public const int Failed = 1;
    public const int Usage = 2;

    private const string RootNotes = """

        Environment:
          STORAGE_PARITY_ISA=scalar|vector128|avx2|avx512bw|gfni256|gfni512   force a parity kernel set
          STORAGE_RUN_DIR=DIR   where running servers keep their control sockets (default /run/storage for root)

        Exit codes: 0 success, 1 the operation ran and failed, 2 bad usage or input (nothing changed).
        """;

    /// <summary>Text shown after a command's generated help.</summary>
    private static readonly ConditionalWeakTable<Command, string> Notes = [];

    public static RootCommand Build()
    {
        var root = new RootCommand("storage: software RAID, parity and volume engine (arrays, NBD serving, mounts, replicated metadata)");
        root.Subcommands.Add(QuickstartCommand.Build());
        root.Subcommands.Add(ArrayCommands.Build());
        root.Subcommands.Add(PoolCommands.Build());
        root.Subcommands.Add(VolumeCommands.Build());
        root.Subcommands.Add(SnapshotCommands.Build());
        root.Subcommands.Add(ServeCommand.Build());
        root.Subcommands.Add(MountCommand.BuildMount());
        root.Subcommands.Add(MountCommand.BuildUnmount());
        root.Subcommands.Add(DaemonCommands.Build());
        root.Subcommands.Add(DaemonCommands.BuildCluster());
        root.Subcommands.Add(MetaCommand.Build());
        root.Subcommands.Add(BenchParityCommand.Build());
        var help = root.Options.OfType<HelpOption>().Single();
        help.Action = new HelpWithNotes((SynchronousCommandLineAction)help.Action!);
        root.SetAction(parse => ((SynchronousCommandLineAction)help.Action).Invoke(parse));
        Notes.Add(root, RootNotes);
        return root;
    }

    /// <summary>Attaches text shown after the generated help of <paramref name="command"/>.</summary>
    public static T WithNotes<T>(this T command, string notes) where T : Command
    {
        Notes.AddOrUpdate(command, notes);
        return command;
    }

    /// <summary>A command that only groups others: run alone, it says which to choose (exit 2).</summary>
    public static Command Group(string name, string description, params Command[] subcommands)
    {
        var group = new Command(name, description);
        foreach (var subcommand in subcommands)
            group.Subcommands.Add(subcommand);
        int NeedsCommand(ParseResult parse) => throw new UsageException(
            $"'{CommandPath(group)}' needs a command, e.g. '{CommandPath(subcommands[0])}'; the commands are {string.Join(", ", subcommands.Select(c => c.Name))}. Run '{CommandPath(group)} --help' for details.");
        group.SetAction(NeedsCommand);
        return group;
    }

    public static int Run(string[] args, TextWriter output, TextWriter error) => Invoke(args, output, error);

    /// <summary>Runs an array or pool command against the array and pool a server holds (from its control socket).</summary>
    public static int RunLive(IReadOnlyList<string> args, TextWriter output, TextWriter error, LiveArray live)
    {
        if (args.Count > 0 && args[0] == "array")
            return LiveArrays.With(live, () => Invoke([.. args], output, error));
        if (args.Count > 0 && args[0] is "pool" or "volume" or "snapshot")
            return LiveArrays.With(live, () => Invoke([.. args], output, error));
        return Write(error, "storage: the control socket takes 'array …', 'pool …', 'volume …' and 'snapshot …' commands only.", Usage);
    }

    /// <summary>The writer for a command's normal output.</summary>
    public static TextWriter Out(this ParseResult parse) => parse.InvocationConfiguration.Output;

    private static int Invoke(string[] args, TextWriter output, TextWriter error)
        => Guarded(error, () => CommandLineRunner.Invoke(Build(), args, output, error, "storage"));

    public static string CommandPath(Command command) => CommandLineRunner.CommandPath(command, "storage");

    /// <summary>Maps the documented failures to messages and exit codes.</summary>
    private static int Guarded(TextWriter error, Func<int> command)
    {
        try
        {
            return command();
        }
        catch (Exception e) when (e is ParityConfigurationException or Storage.Raid.ArrayConfigurationException or Storage.Nbd.NbdConfigurationException or Storage.Versioning.PoolConfigurationException)
        {
            return Write(error, $"storage: {e.Message}", Usage);
        }
        catch (Exception e) when (e is Storage.Versioning.SendStreamException)
        {
            return Write(error, $"storage: {e.Message} Nothing was changed.", Failed);
        }
        catch (IOException e) when (e is Storage.Versioning.PoolFullException or Storage.Versioning.ChecksumMismatchException)
        {
            return Write(error, $"storage: {e.Message}", Failed);
        }
        catch (IOException e) when (e is Storage.Raid.ArrayFailedException or Storage.Raid.BadBlockException or Storage.Devices.BlockDeviceException)
        {
            return Write(error, $"storage: {e.Message}", Failed);
        }
        catch (Exception e) when (e is ExternalToolException or OperationFailedException)
        {
            return Write(error, $"storage: {e.Message}", Failed);
        }
    }

    private static int Write(TextWriter writer, string text, int code)
    {
        writer.WriteLine(text);
        return code;
    }

    /// <summary>The generated help, then the command's notes (exit codes, environment, rules of --disks…).</summary>
    private sealed class HelpWithNotes(SynchronousCommandLineAction inner) : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            int code = inner.Invoke(parseResult);
            if (Notes.TryGetValue(parseResult.CommandResult.Command, out var notes))
                parseResult.Out().WriteLine(notes.TrimStart());
            return code;
        }
    }
}
