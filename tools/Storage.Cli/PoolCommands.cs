using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text.Json;
using Storage.CommandLine;
using Storage.Devices;
using Storage.Raid;
using Storage.Versioning;

namespace Storage.Cli;

/// <summary>
/// <c>storage pool create|status|scrub</c>, and what the pool verbs share (<see cref="VolumeCommands"/>,
/// <see cref="SnapshotCommands"/>): where the pool is (<c>--disks</c>: on the array of those members, assembled for the
/// command and stopped after; <c>--device</c>: on one file or block device), opening it, forwarding to a running
/// <c>storage serve</c>, and printing sizes. Every verb opens the pool, does its work and closes it (commit and
/// checkpoint); while <c>storage serve</c> runs the pool, the verbs act on the live pool through its control socket.
/// </summary>
internal static class PoolCommands
{
    public const string Notes = """

        Where the pool is: --disks A,B,… (the members of an array made with 'storage array create'; assembled for
        the command and stopped cleanly after) or --device PATH (one file or block device).
        While storage serve runs the pool, these commands act on it live through its control socket.
        """;

    /// <summary>Where the pool is, and --json: one set per command tree, shared by its verbs.</summary>
    internal sealed class Target
    {
        public Option<IReadOnlyList<string>> Disks { get; } = CliOptions.Paths("--disks", "the members of the array that holds the pool: comma-separated paths and globs");
        public Option<string?> Device { get; } = PathOption("--device", "one file or block device that holds the pool (instead of --disks)", "PATH");
        public Option<bool> Json { get; } = CliOptions.Flag("--json", "print one JSON document and nothing else");

        public Command Verb(string name, string description, params Symbol[] symbols)
        {
            var command = new Command(name, description).WithNotes(Notes);
            command.Options.Add(Disks);
            command.Options.Add(Device);
            foreach (var symbol in symbols)
            {
                if (symbol is Option option)
                    command.Options.Add(option);
                else
                    command.Arguments.Add((Argument)symbol);
            }
            return command;
        }

        /// <summary>The invocation's pool arguments. --daemon with --disks/--device is refused (except by attach, which hands those disks to the daemon).</summary>
        public PoolArgs Read(ParseResult p)
        {
            var args = new PoolArgs(p, p.GetValue(Disks)!, p.GetValue(Device), p.GetValue(Json));
            if (args.Paths.Count > 0 && p.CommandResult.Command.Name != "attach" && p.GetResult(DaemonCommands.DaemonOption) is { Implicit: false })
            {
                throw new UsageException("--daemon asks a storage daemon, and --disks/--device act on the pool directly: give one or the other " +
                    "(leave out --disks/--device to act through the daemon).");
            }
            return args;
        }
    }

    /// <summary>One invocation: where the pool is, --json, and the writers.</summary>
    internal sealed record PoolArgs(ParseResult Parse, IReadOnlyList<string> Disks, string? Device, bool Json)
    {
        public TextWriter Output => Parse.Out();

        public TextWriter Error => Parse.InvocationConfiguration.Error;

        /// <summary>Where notes and progress go instead of <see cref="Output"/> (standard error while a stream goes to standard output).</summary>
        public TextWriter? NotesTo { get; init; }

        /// <summary>Progress and notes: nowhere when --json asked for one document.</summary>
        public TextWriter Human => Json ? TextWriter.Null : NotesTo ?? Output;

        /// <summary>The paths a running server would be found by.</summary>
        public IReadOnlyList<string> Paths => Device is { } device ? [device] : Disks;
    }

    /// <summary>A path option: made absolute when parsed (so that a forwarded command means the same file); "-" stays.</summary>
    public static Option<string?> PathOption(string name, string description, string helpName) => new(name)
    {
        Description = description,
        HelpName = helpName,
        CustomParser = result =>
        {
            string text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            if (text.Length == 0)
            {
                result.AddError($"{name} needs a path.");
                return null;
            }
            return text == "-" ? text : Path.GetFullPath(text);
        },
    };

    public static Command Build()
    {
        var t = new Target();
        var name = CliOptions.Text("--name", "the pool's name: letters, digits, '.', '_', '-'", "NAME");
        var blockSize = CliOptions.Size("--block-size", $"allocation, checksum and version unit: a power of two from 4K to 1M (default {PoolCreateOptions.DefaultBlockSize / 1024}K)", PoolCreateOptions.MinBlockSize, PoolCreateOptions.MaxBlockSize);
        var force = CliOptions.Flag("--force", "format a device that holds data or another pool (destroys it)");
        var size = CliOptions.Size("--size", "with --device: create the file, sparse, of this size", 1 << 20, 1L << 50);

        var create = t.Verb("create", "format the array (or device) as an empty pool of thin volumes", name, blockSize, force, size, t.Json);
        create.SetAction(p => CreateAsync(t.Read(p), p.GetValue(name), p.GetValue(blockSize), p.GetValue(force), p.GetValue(size)).GetAwaiter().GetResult());

        var status = t.Verb("status", "the pool's size, use and health, and its volumes", t.Json);
        status.SetAction(p => RunAsync(t.Read(p), (pool, a) => StatusAsync(pool, a)).GetAwaiter().GetResult());

        var scrub = t.Verb("scrub", "read every mapped block, check its checksum, repair from parity what fails", t.Json);
        scrub.SetAction(p => RunAsync(t.Read(p), ScrubAsync).GetAwaiter().GetResult());

        var stop = t.Verb("stop", "stop the storage serve that serves the pool");
        stop.SetAction(p => Stop(t.Read(p)));

        var attach = t.Verb("attach", "hand the pool on --disks (or --device) to the storage daemon: it opens it now and at every start", DaemonCommands.DaemonOption, t.Json);
        attach.SetAction(p =>
        {
            var a = t.Read(p);
            if (a.Paths.Count == 0)
                throw new UsageException("give the pool's disks: storage pool attach --disks A,B,… (its array's members) or --device PATH.");
            if (LiveArrays.Find(a.Paths) is { } server)
                throw new UsageException($"{string.Join(",", a.Paths)} are served by 'storage serve' (pid {server.Pid}); stop it first ('storage pool stop --disks …').");
            return DaemonCommands.Send(p, new Storage.Daemon.AttachPoolRequest(a.Paths), a.Json, r => JsonSerializer.Serialize(r.Pools!, Storage.Daemon.DaemonJson.Default.IReadOnlyListPoolView));
        });
        var poolName = new Argument<string?>("NAME") { Description = "the pool", Arity = ArgumentArity.ZeroOrOne };
        var detach = new Command("detach", "the daemon closes the pool cleanly and drops it from the catalogue (refused while a volume has segments on it)");
        detach.Arguments.Add(poolName);
        detach.Options.Add(DaemonCommands.DaemonOption);
        detach.SetAction(p => DaemonCommands.Send(p, new Storage.Daemon.DetachPoolRequest(p.GetValue(poolName) ?? throw new UsageException("give the pool's name: storage pool detach NAME.")), json: false, _ => null));
        var list = new Command("list", "the pools in the daemon's catalogue: node, layout, state, size, free space, segments");
        list.Options.Add(DaemonCommands.DaemonOption);
        list.Options.Add(t.Json);
        list.SetAction(p => DaemonCommands.Send(p, new Storage.Daemon.ListPoolsRequest(), p.GetValue(t.Json), r => JsonSerializer.Serialize(r.Pools!, Storage.Daemon.DaemonJson.Default.IReadOnlyListPoolView),
            (r, o) => DaemonCommands.PrintPools(r.Pools!, o)));

        return Cli.Group("pool", "pools of thin volumes with snapshots on an array or a device", create, status, scrub, stop, attach, detach, list).WithNotes(Notes);
    }

    private static int Stop(PoolArgs args)
    {
        if (Server(args) is { } server)
            return Forward(server, args);
        if (LiveArrays.Current is not { } live)
            throw new UsageException("no running 'storage serve' holds these disks; there is nothing to stop.");
        live.RequestStop();
        args.Output.WriteLine(live.Pool is { } pool ? $"stopping the server of pool '{pool.Name}'" : "stopping the server");
        return Cli.Ok;
    }

    /// <summary>
    /// The running server that holds the pool's disks, when this command is not already running inside one (then the
    /// command is forwarded to it).
    /// </summary>
    public static ServerRecord? Server(PoolArgs args) => LiveArrays.Current is null ? LiveArrays.Find(args.Paths) : null;

    /// <summary>
    /// Opens the pool (or takes the live one inside storage serve, or forwards the whole command to the server that
    /// runs it), runs <paramref name="action"/>, and closes the pool: committed and checkpointed, the array stopped.
    /// </summary>
    public static async Task<int> RunAsync(PoolArgs args, Func<Pool, PoolArgs, Task<int>> action)
    {
        if (Server(args) is { } server)
            return Forward(server, args);
        if (LiveArrays.Current is { } live)
        {
            var pool = live.Pool ?? throw new UsageException($"storage serve (pid {Environment.ProcessId}) serves array '{live.Array.Name}' itself, not a pool; stop it ('storage array stop --disks …') and run 'storage pool create' offline.");
            return await action(pool, args).ConfigureAwait(false);
        }
        var device = await OpenDeviceAsync(args, createSize: 0).ConfigureAwait(false);
        try
        {
            var opened = await Pool.OpenAsync(device, new PoolOpenOptions { Log = line => LogLine(args, line) }).ConfigureAwait(false);
            await using (opened.ConfigureAwait(false))
                return await action(opened, args).ConfigureAwait(false);
        }
        finally
        {
            await CloseDeviceAsync(device).ConfigureAwait(false);
        }
    }

    /// <summary>Self-heal repairs and the like are worth a note; the routine replay line is not.</summary>
    private static void LogLine(PoolArgs args, string line)
    {
        if (!line.Contains("replayed from the log", StringComparison.Ordinal))
            args.Human.WriteLine($"note: {line}");
    }

    /// <summary>The array assembled from --disks, or the --device opened (created sparse with <paramref name="createSize"/>).</summary>
    public static async Task<IBlockDevice> OpenDeviceAsync(PoolArgs args, long createSize)
    {
        if (args.Disks.Count > 0 && args.Device is not null)
            throw new UsageException("give --disks (an array) or --device (one file or block device), not both.");
        if (args.Device is { } path)
        {
            if (path == "-")
                throw new UsageException("--device needs a path, not '-'.");
            return Disks.Open(path, createSize);
        }
        if (args.Disks.Count == 0)
            throw new UsageException("say where the pool is: --disks A,B,… (the members of an array made with 'storage array create') or --device PATH (one file or block device).");
        return await ArrayCommands.AssembleAsync(args.Disks, null, args.Human).ConfigureAwait(false);
    }

    public static async Task CloseDeviceAsync(IBlockDevice device)
    {
        if (device is RaidArray array)
            await array.StopAsync().ConfigureAwait(false);
        else
            device.Dispose();
    }

    /// <summary>Sends this very command to the server and relays its answer.</summary>
    public static int Forward(ServerRecord server, PoolArgs args) => LiveArrays.Forward(server, Reconstruct(args.Parse), args.Output, args.Error);

    /// <summary>
    /// The command's arguments as the server must see them: the verb's path, then every option given and every
    /// argument, with paths already absolute and globs expanded (the server runs in another directory).
    /// </summary>
    private static List<string> Reconstruct(ParseResult p)
    {
        var command = p.CommandResult.Command;
        var args = Cli.CommandPath(command).Split(' ').Skip(1).ToList();
        foreach (var argument in command.Arguments)
        {
            if (argument is Argument<string?> text && p.GetValue(text) is { } value)
                args.Add(value);
        }
        foreach (var option in command.Options)
        {
            if (p.GetResult(option) is not { Implicit: false })
                continue;
            switch (option)
            {
                case Option<bool> flag when p.GetValue(flag):
                    args.Add(option.Name);
                    break;
                case Option<IReadOnlyList<string>> list when p.GetValue(list) is { Count: > 0 } paths:
                    args.AddRange([option.Name, string.Join(',', paths)]);
                    break;
                case Option<long?> number when p.GetValue(number) is { } value:
                    args.AddRange([option.Name, value.ToString(CultureInfo.InvariantCulture)]);
                    break;
                case Option<int?> number when p.GetValue(number) is { } value:
                    args.AddRange([option.Name, value.ToString(CultureInfo.InvariantCulture)]);
                    break;
                case Option<string?> text when p.GetValue(text) is { } value:
                    args.AddRange([option.Name, value]);
                    break;
            }
        }
        return args;
    }

    private static async Task<int> CreateAsync(PoolArgs args, string? name, long? blockSize, bool force, long? size)
    {
        if (name is null)
            throw new UsageException("--name is required: the pool's name, e.g. --name tank.");
        if (size is not null && args.Device is null)
            throw new UsageException("--size creates a file for --device; an array's size is set by 'storage array create'.");
        int? serving = LiveArrays.Current is not null ? Environment.ProcessId : LiveArrays.Find(args.Paths)?.Pid;
        if (serving is { } pid)
            throw new UsageException($"these disks are in use by storage serve (pid {pid}); stop it first ('storage array stop --disks …'). Nothing was changed.");
        bool created = args.Device is { } path && !File.Exists(path) && !Disks.IsBlockDevicePath(path);
        if (created && size is null)
            throw new UsageException($"{args.Device} does not exist. Pass --size to create a file, or name an existing file or block device.");
        var device = await OpenDeviceAsync(args, size ?? 0).ConfigureAwait(false);
        bool ok = false;
        try
        {
            var options = new PoolCreateOptions { Name = name, BlockSize = (int)(blockSize ?? PoolCreateOptions.DefaultBlockSize), Force = force };
            var pool = await Pool.CreateAsync(device, options).ConfigureAwait(false);
            await using (pool.ConfigureAwait(false))
                await StatusAsync(pool, args).ConfigureAwait(false);
            ok = true;
            return Cli.Ok;
        }
        catch (PoolConfigurationException e)
        {
            throw new UsageException($"{e.Message} Nothing was changed.");
        }
        finally
        {
            await CloseDeviceAsync(device).ConfigureAwait(false);
            if (!ok && created)
                File.Delete(args.Device!);   // nothing half-made is left behind
        }
    }

    private static Task<int> StatusAsync(Pool pool, PoolArgs args)
    {
        var status = pool.GetStatus();
        if (args.Json)
        {
            args.Output.WriteLine(JsonSerializer.Serialize(status, CliJson.Default.PoolStatus));
            return Task.FromResult(Cli.Ok);
        }
        var o = args.Output;
        string where = pool.Device is RaidArray array ? $"array '{array.Name}' ({array.Geometry})" : status.Device;
        o.WriteLine($"pool '{status.Name}' {status.Id:x16} on {where}: {Bytes(status.BlockSize)} blocks, {Bytes(status.SegmentSize)} segments, {(status.ParityProtected ? "self-healing from parity" : "no parity: checksum errors are detected, not repaired")}");
        o.WriteLine($"  {Bytes(status.TotalBytes)} total, {Bytes(status.UsedBytes)} used ({Percent(status.UsedBytes, status.TotalBytes)}), {Bytes(status.FreeBytes)} free, {Bytes(status.PendingFreeBytes)} freed at the next commit");
        o.WriteLine($"  {status.Volumes} volume(s), {status.Snapshots} snapshot(s), transaction {status.Transaction}, log {status.LogFill:P0} full, {status.FreshSegments} empty segment(s)");
        o.WriteLine($"  health: {status.Repairs} repaired, {status.ChecksumErrors} checksum error(s), {status.Unrecoverable} unrecoverable");
        var volumes = pool.ListVolumes();
        if (volumes.Count > 0)
            VolumeCommands.Print(volumes, o);
        return Task.FromResult(Cli.Ok);
    }

    private static async Task<int> ScrubAsync(Pool pool, PoolArgs args)
    {
        PoolScrubResult? result = null;
        await Progress.RunAsync(args.Human, "pool scrub", async report =>
        {
            result = await pool.ScrubAsync(Reporter(report)).ConfigureAwait(false);
        }).ConfigureAwait(false);
        var status = pool.GetStatus();
        ArgumentNullException.ThrowIfNull(result);
        if (args.Json)
        {
            args.Output.WriteLine(JsonSerializer.Serialize(new PoolScrubDocument(result, status), CliJson.Default.PoolScrubDocument));
        }
        else
        {
            args.Output.WriteLine($"scrub: {result.BlocksChecked} blocks ({Bytes(result.BytesChecked)}) checked, {result.Repaired} repaired, {result.Unrecoverable} unrecoverable");
            foreach (var error in result.Errors)
                args.Output.WriteLine($"  {error}");
        }
        return result.Unrecoverable > 0 ? Cli.Failed : Cli.Ok;
    }

    /// <summary>Progress reported straight to the bar, on the reporting thread (no posting, so no reordering).</summary>
    public static IProgress<PoolProgress> Reporter(Action<long, long> report) => new DirectProgress(report);

    private sealed class DirectProgress(Action<long, long> report) : IProgress<PoolProgress>
    {
        public void Report(PoolProgress value) => report(value.Done, value.Total);
    }

    /// <summary>"512 B", "16 KiB", "1.5 GiB".</summary>
    public static string Bytes(long bytes) => ByteSizes.Format(bytes);

    private static string Percent(long part, long whole) => whole == 0 ? "0%" : ((double)part / whole).ToString("P0", CultureInfo.InvariantCulture);
}
