using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using Storage.CommandLine;
using Storage.Daemon;
using Storage.Versioning;
using static Storage.Cli.PoolCommands;

namespace Storage.Cli;

/// <summary>
/// <c>storage snapshot create|list|delete|rollback|clone|send|receive</c>. Snapshots are named <c>VOL@SNAP</c> (also
/// their read-only NBD export name). A send stream goes to a file or to standard output (<c>| ssh host storage
/// snapshot receive …</c>); receive reads a file or standard input and changes nothing unless the whole stream checks.
/// </summary>
internal static class SnapshotCommands
{
    public static Command Build()
    {
        var t = new Target();
        Argument<string?> Spec(string description) => new("VOL@SNAP") { Description = description, Arity = ArgumentArity.ZeroOrOne };
        var snapshot = Spec("the snapshot: volume@name");
        var volume = new Argument<string?>("VOL") { Description = "only this volume's snapshots", Arity = ArgumentArity.ZeroOrOne };
        var newVolume = new Argument<string?>("NEWVOL") { Description = "the new, writable volume", Arity = ArgumentArity.ZeroOrOne };
        var target = new Argument<string?>("VOL") { Description = "the volume to receive into (default: the sender's name)", Arity = ArgumentArity.ZeroOrOne };
        var destroyNewer = CliOptions.Flag("--destroy-newer", "also delete the snapshots taken after this one");
        var from = CliOptions.Text("--from", "send only what changed since this older snapshot: @SNAP or VOL@SNAP", "@SNAP");
        var output = PathOption("--output", "write the stream to this file ('-' or absent: standard output)", "FILE");
        var input = PathOption("--input", "read the stream from this file ('-' or absent: standard input)", "FILE");

        var volumes = CliOptions.Text("--volumes", "daemon: also snapshot these volumes at the same cut (give SNAP alone, or VOL@SNAP)", "V1,V2,…");
        var group = CliOptions.Text("--group", "daemon: snapshot every volume of this consistency group at one cut (give SNAP alone)", "GROUP");
        var create = t.Verb("create", "take a read-only snapshot of a volume (O(1): no copy); through the daemon, of several volumes at one cut",
            snapshot, volumes, group, DaemonCommands.DaemonOption, t.Json);
        create.SetAction(p =>
        {
            var args = t.Read(p);
            if (args.Paths.Count == 0)
                return GroupSnapshot(p, p.GetValue(snapshot), DaemonCommands.List(p.GetValue(volumes)) ?? [], p.GetValue(group), args.Json);
            if (p.GetResult(volumes) is { Implicit: false } || p.GetResult(group) is { Implicit: false })
                throw new UsageException("--volumes and --group snapshot volumes across the daemon's pools; leave out --disks/--device.");
            var (vol, snap) = Parse(p.GetValue(snapshot), "create");
            // A volume that storage mount has mounted is frozen meanwhile, so the snapshot holds a clean filesystem.
            using var frozen = Server(args) is { } server ? MountCommand.Freeze(server.Pid, vol, args.Human) : null;
            return RunAsync(args, async (pool, a) =>
            {
                var info = await pool.CreateSnapshotAsync(vol, snap).ConfigureAwait(false);
                return PrintOne(info, a, $"created snapshot {info.FullName} (transaction {info.Version})");
            }).GetAwaiter().GetResult();
        });

        var list = t.Verb("list", "snapshots, oldest first: size, space referenced, space deleting would free, clones", volume, DaemonCommands.DaemonOption, t.Json);
        list.SetAction(p => t.Read(p) is { Paths.Count: 0 } args
            ? DaemonCommands.Send(p, new ListSnapshotsRequest(p.GetValue(volume)), args.Json, r => JsonSerializer.Serialize(r.Snapshots!, DaemonJson.Default.IReadOnlyListSnapshotView),
                (r, o) => DaemonCommands.PrintSnapshots(r.Snapshots!, o))
            : RunAsync(t.Read(p), (pool, a) =>
        {
            var snapshots = pool.ListSnapshots(p.GetValue(volume));
            if (a.Json)
                a.Output.WriteLine(JsonSerializer.Serialize(snapshots, CliJson.Default.IReadOnlyListSnapshotInfo));
            else if (snapshots.Count == 0)
                a.Output.WriteLine("no snapshots; take one with 'storage snapshot create VOL@SNAP'.");
            else
                Print(snapshots, a.Output);
            return Task.FromResult(Cli.Ok);
        }).GetAwaiter().GetResult());

        var delete = t.Verb("delete", "delete a snapshot, freeing the space only it holds", snapshot, t.Json);
        delete.SetAction(p =>
        {
            var (vol, snap) = Parse(p.GetValue(snapshot), "delete");
            return RunAsync(t.Read(p), async (pool, a) =>
            {
                var info = Find(pool, vol, snap);
                await pool.DeleteSnapshotAsync(vol, snap).ConfigureAwait(false);
                return PrintOne(info, a, $"deleted snapshot {info.FullName}; {Bytes(info.UniqueBytes)} freed");
            }).GetAwaiter().GetResult();
        });

        var rollback = t.Verb("rollback", "return a volume to a snapshot's contents", snapshot, destroyNewer, t.Json);
        rollback.SetAction(p =>
        {
            var (vol, snap) = Parse(p.GetValue(snapshot), "rollback");
            return RunAsync(t.Read(p), async (pool, a) =>
            {
                var at = Find(pool, vol, snap);
                var newer = pool.ListSnapshots(vol, countSpace: false).Where(s => s.Version > at.Version).Select(s => s.FullName).ToList();
                await pool.RollbackAsync(vol, snap, p.GetValue(destroyNewer)).ConfigureAwait(false);
                string destroyed = newer.Count > 0 ? $"; deleted the newer {string.Join(", ", newer)}" : "";
                return VolumeCommands.PrintOne(VolumeCommands.Find(pool, vol), a, $"rolled volume '{vol}' back to {at.FullName}{destroyed}");
            }).GetAwaiter().GetResult();
        });

        var clone = t.Verb("clone", "create a writable volume from a snapshot (it shares the snapshot's blocks)", snapshot, newVolume, t.Json);
        clone.SetAction(p =>
        {
            var (vol, snap) = Parse(p.GetValue(snapshot), "clone");
            string name = p.GetValue(newVolume) ?? throw new UsageException("give the new volume's name: storage snapshot clone VOL@SNAP NEWVOL.");
            return RunAsync(t.Read(p), async (pool, a) =>
            {
                var info = await pool.CloneAsync(vol, snap, name).ConfigureAwait(false);
                return VolumeCommands.PrintOne(info, a, $"cloned {vol}@{snap} as volume '{info.Name}' ({Bytes(info.Size)})");
            }).GetAwaiter().GetResult();
        });

        var send = t.Verb("send", "write a snapshot as a stream: in full, or since --from (an incremental)", snapshot, from, output, t.Json);
        send.SetAction(p =>
        {
            var (vol, snap) = Parse(p.GetValue(snapshot), "send");
            string? baseSnapshot = FromSnapshot(p.GetValue(from), vol);
            return Transfer(t.Read(p), p.GetValue(output), sending: true, async (pool, stream, progress) =>
                await pool.SendAsync(vol, snap, baseSnapshot, stream, progress).ConfigureAwait(false)).GetAwaiter().GetResult();
        });

        var receive = t.Verb("receive", "apply a stream from 'snapshot send': a new volume, or a newer snapshot of one received before", target, input, t.Json);
        receive.SetAction(p =>
        {
            string? into = p.GetValue(target);
            return Transfer(t.Read(p), p.GetValue(input), sending: false, async (pool, stream, progress) =>
                await pool.ReceiveAsync(stream, into, progress).ConfigureAwait(false)).GetAwaiter().GetResult();
        });

        return Cli.Group("snapshot", "read-only snapshots of volumes: clone, roll back, send and receive", create, list, delete, rollback, clone, send, receive).WithNotes(Notes);
    }

    /// <summary>"data@monday" → ("data", "monday").</summary>
    /// <summary>Through the daemon: VOL@SNAP (plus --volumes), or SNAP with --volumes and/or --group, all at one cut.</summary>
    private static int GroupSnapshot(ParseResult parse, string? spec, IReadOnlyList<string> volumes, string? group, bool json)
    {
        string name;
        var names = new List<string>();
        if (spec is not null && spec.Contains('@', StringComparison.Ordinal))
        {
            var (vol, snap) = Parse(spec, "create");
            names.Add(vol);
            name = snap;
        }
        else
        {
            name = spec ?? throw new UsageException("give the snapshot: 'storage snapshot create VOL@SNAP', or 'storage snapshot create SNAP --group G' (or --volumes A,B).");
            if (volumes.Count == 0 && group is null)
                throw new UsageException($"'{spec}' names no volume: give VOL@{spec}, or --volumes A,B or --group G to say which volumes to snapshot.");
        }
        names.AddRange(volumes);
        // Volumes that storage mount has mounted are frozen meanwhile, so every snapshot holds a clean filesystem.
        var frozen = new List<IDisposable>();
        try
        {
            if (DaemonCommands.Target(parse) is { } daemon && MountCommand.MountedExports(daemon.Pid) is { Count: > 0 } mounted)
            {
                var members = group is null ? [] : DaemonCommands.Ask(parse, new ListVolumesRequest()).Volumes?.Where(v => v.Group == group).Select(v => v.Name) ?? [];
                foreach (string volume in names.Concat(members).Distinct(StringComparer.Ordinal).Where(mounted.Contains))
                    frozen.Add(MountCommand.Freeze(daemon.Pid, volume, json ? TextWriter.Null : parse.Out()));
            }
            return DaemonCommands.Send(parse, new CreateSnapshotRequest(name, names, group), json, r => JsonSerializer.Serialize(r.Snapshots!, DaemonJson.Default.IReadOnlyListSnapshotView));
        }
        finally
        {
            foreach (var thaw in frozen)
                thaw.Dispose();
        }
    }

    private static (string Volume, string Snapshot) Parse(string? text, string verb)
    {
        int at = text?.IndexOf('@', StringComparison.Ordinal) ?? -1;
        if (text is null || at <= 0 || at == text.Length - 1 || text.IndexOf('@', at + 1) >= 0)
            throw new UsageException($"give the snapshot as VOL@SNAP, e.g. 'storage snapshot {verb} data@monday'{(text is null ? "" : $"; got '{text}'")}.");
        return (text[..at], text[(at + 1)..]);
    }

    /// <summary>--from @SNAP, VOL@SNAP (the same volume) or SNAP.</summary>
    private static string? FromSnapshot(string? text, string volume)
    {
        if (text is null)
            return null;
        int at = text.IndexOf('@', StringComparison.Ordinal);
        if (at < 0)
            return text;
        if (at > 0 && text[..at] != volume)
            throw new UsageException($"--from {text} names volume '{text[..at]}'; an incremental is sent from an older snapshot of the same volume, '{volume}@…'.");
        return at == text.Length - 1 ? throw new UsageException("--from needs a snapshot name: --from @SNAP.") : text[(at + 1)..];
    }

    private static SnapshotInfo Find(Pool pool, string volume, string snapshot)
        => pool.ListSnapshots(volume).FirstOrDefault(s => s.Name == snapshot) ?? throw new PoolConfigurationException($"Volume '{volume}' has no snapshot '{snapshot}'; 'storage snapshot list {volume}' shows them.");

    private static int PrintOne(SnapshotInfo info, PoolArgs args, string text)
    {
        args.Output.WriteLine(args.Json ? JsonSerializer.Serialize(info, CliJson.Default.SnapshotInfo) : text);
        return Cli.Ok;
    }

    private static void Print(IReadOnlyList<SnapshotInfo> snapshots, TextWriter output)
    {
        var table = Tables.Create("snapshot", "size", "referenced", "unique", "created", "clones");
        foreach (var s in snapshots)
        {
            table.AddRow(Tables.Cell(s.FullName), Tables.Cell(Bytes(s.Size)), Tables.Cell(Bytes(s.ReferencedBytes)), Tables.Cell(Bytes(s.UniqueBytes)),
                Tables.Cell(s.Created.ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture)), Tables.Cell(s.Clones.ToString(CultureInfo.InvariantCulture)));
        }
        Tables.Write(output, table);
        output.WriteLine("  unique: what deleting the snapshot would free");
    }

    /// <summary>
    /// Send or receive through a file or the process's standard output/input. While storage serve runs the pool the
    /// command goes to it, so the stream must be a file (the server reads or writes it). With standard output as the
    /// stream, everything else (progress, the summary, --json) goes to standard error.
    /// </summary>
    private static async Task<int> Transfer(PoolArgs args, string? path, bool sending, Func<Pool, Stream, IProgress<PoolProgress>, Task<TransferResult>> work)
    {
        bool standard = path is null or "-";
        string flag = sending ? "--output" : "--input";
        if (standard && Server(args) is { } server)
            throw new UsageException($"storage serve (pid {server.Pid}) runs this pool, so the stream goes through a file it {(sending ? "writes" : "reads")}: pass {flag} FILE.");
        if (standard && args.Output != Console.Out)
            throw new UsageException($"there is no standard {(sending ? "output" : "input")} byte stream here (storage serve, or an in-process call): pass {flag} FILE.");
        if (standard && sending && !Console.IsOutputRedirected)
            throw new UsageException($"refusing to write a send stream to a terminal: redirect it ('> FILE', '| ssh host storage snapshot receive …') or pass --output FILE.");
        if (standard && !sending && !Console.IsInputRedirected)
            throw new UsageException("no stream on standard input: pipe one in ('< FILE', 'ssh host storage snapshot send … |') or pass --input FILE.");
        if (!standard && !sending && !File.Exists(path))
            throw new UsageException($"{path} does not exist: --input names a file written by 'storage snapshot send'.");
        var text = standard && sending ? args.Error : args.Output;
        var human = args.Json ? TextWriter.Null : text;
        return await RunAsync(args with { NotesTo = text }, async (pool, a) =>
        {
            TransferResult? result = null;
            bool done = false;
            Stream stream = standard
                ? new BufferedStream(sending ? Console.OpenStandardOutput() : Console.OpenStandardInput(), 1 << 20)
                : new FileStream(path!, sending ? FileMode.Create : FileMode.Open, sending ? FileAccess.Write : FileAccess.Read, FileShare.Read, 1 << 20, useAsync: true);
            try
            {
                await Progress.RunAsync(human, sending ? "send" : "receive", async report =>
                {
                    result = await work(pool, stream, Reporter(report)).ConfigureAwait(false);
                    await stream.FlushAsync().ConfigureAwait(false);
                }).ConfigureAwait(false);
                done = true;
            }
            finally
            {
                await stream.DisposeAsync().ConfigureAwait(false);
                if (!done && sending && !standard)
                    File.Delete(path!);   // no half-written stream is left to be received later
            }
            if (args.Json)
            {
                text.WriteLine(JsonSerializer.Serialize(result!, CliJson.Default.TransferResult));
            }
            else
            {
                string what = result!.Base is { } b ? $"{result.Snapshot} (incremental from {b})" : $"{result.Snapshot} (full)";
                string where = standard ? (sending ? "standard output" : "standard input") : path!;
                text.WriteLine($"{(sending ? "sent" : "received")} {what}: {result.Blocks} block(s), {result.ZeroBlocks} zero block(s), {Bytes(result.Bytes)} {(sending ? "to" : "from")} {where}");
            }
            return Cli.Ok;
        }).ConfigureAwait(false);
    }
}
