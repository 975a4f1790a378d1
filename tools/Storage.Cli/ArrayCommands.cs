using System.CommandLine;
using System.Text.Json;
using Spectre.Console;
using Storage.CommandLine;
using Storage.Devices;
using Storage.Raid;

namespace Storage.Cli;

/// <summary>
/// <c>storage array create|assemble|status|fail|remove|add|rebuild|scrub</c> on the disks named with --disks.
/// Without a running <c>storage serve</c> each command reads the members' superblocks, assembles the array when
/// it must change it, does the work, and stops it cleanly again.
/// </summary>
internal static class ArrayCommands
{
    private const string Notes = """

        While storage serve runs an array, these commands act on it live through its control socket.
        --disks takes comma-separated paths and globs ('disks/*.img'); /dev/… paths are block devices.
        """;

    private static readonly AsyncLocal<bool> JsonOutput = new();

    /// <summary>Where progress and notes go: nowhere when --json asked for one JSON document.</summary>
    private static TextWriter Human(TextWriter output) => JsonOutput.Value ? TextWriter.Null : output;

    /// <summary>The typed options of the array verbs (one set per command tree).</summary>
    private sealed class ArrayOptions
    {
        public Option<IReadOnlyList<string>> Disks { get; } = CliOptions.Paths("--disks", "the member disks: comma-separated paths and globs");
        public Option<bool> Json { get; } = CliOptions.Flag("--json", "print one JSON document and nothing else");
        public Option<string?> Member { get; } = CliOptions.Text("--member", "the disk to act on", "DISK");
        public Option<int?> Limit { get; } = CliOptions.Number("--limit", "rebuild speed limit in MB/s", 1, 1 << 20, "MB/s");
        public Option<long?> Size { get; } = CliOptions.Size("--size", "create missing file-backed disks of this size", 4 << 20, 1L << 50);
        public Option<bool> Force { get; } = CliOptions.Flag("--force", "use disks that hold another array, a filesystem or data");
    }

    /// <summary>Values of one invocation.</summary>
    private sealed record ArrayArgs(IReadOnlyList<string> Disks, bool Json, string? Member, int? Limit, long? Size, bool Force, bool Repair, TextWriter Error)
    {
        /// <summary><c>assemble --without-journal-device</c>: the array's journal device is lost for good.</summary>
        public bool WithoutJournalDevice { get; init; }
    }

    public static Command Build()
    {
        var o = new ArrayOptions();
        var level = CliOptions.Text("--level", "0, 1, 5, 6 or rs (Reed-Solomon k+m, with --parity)", "LEVEL");
        var parity = CliOptions.Number("--parity", "parity chunks per stripe for --level rs", 1, 254, "M");
        var chunk = CliOptions.Size("--chunk", "chunk size, a power of two from 4K to 16M (default 64K)", ArrayGeometry.MinChunkSize, ArrayGeometry.MaxChunkSize);
        var spares = CliOptions.Paths("--spares", "spare disks: comma-separated paths and globs");
        var name = CliOptions.Text("--name", "the array's name (default 'array')", "NAME");
        var noJournal = CliOptions.Flag("--no-journal", "no write journal: faster, unsafe after a crash plus a member failure");
        var noBitmap = CliOptions.Flag("--no-bitmap", "no write-intent bitmap: a member that comes back is rebuilt in full");
        var bitmapRegion = CliOptions.Size("--bitmap-region", "array bytes per bitmap bit (default 64M)", 1 << 20, 1L << 40);
        var journalDevice = CliOptions.Text("--journal-device", "keep the write journal on this fast device or file (created to fit if absent); list it with the disks at every later command", "PATH");
        var repair = CliOptions.Flag("--repair", "rewrite stripes whose parity does not match");

        var create = Verb("create", "create an array on the disks (refuses disks in use unless --force)", o, o.Disks, o.Size, o.Force, o.Json);
        create.Options.Add(level);
        create.Options.Add(parity);
        create.Options.Add(chunk);
        create.Options.Add(spares);
        create.Options.Add(name);
        create.Options.Add(noJournal);
        create.Options.Add(journalDevice);
        create.Options.Add(noBitmap);
        create.Options.Add(bitmapRegion);
        create.SetAction(p => CreateAsync(Read(p, o), new CreateArgs(p.GetValue(level), p.GetValue(parity), p.GetValue(chunk), p.GetValue(spares)!, p.GetValue(name),
            p.GetValue(noJournal), p.GetValue(journalDevice), p.GetValue(noBitmap), p.GetValue(bitmapRegion)), p.Out()).GetAwaiter().GetResult());

        var status = Verb("status", "read the superblocks and print the state; change nothing", o, o.Disks, o.Json);
        status.SetAction(p => StatusAsync(Read(p, o), p.Out()).GetAwaiter().GetResult());

        var withoutJournal = CliOptions.Flag("--without-journal-device", "the separate journal device is lost for good: run without a journal from now on (updates it held that had not reached the disks are lost)");
        var assemble = Verb("assemble", "assemble, replay the journal, stop cleanly", o, o.Disks, o.Json);
        assemble.Options.Add(withoutJournal);
        assemble.SetAction(p => WithArrayAsync(Read(p, o) with { WithoutJournalDevice = p.GetValue(withoutJournal) }, p.Out(), "assemble", (_, _) => Task.FromResult(Cli.Ok)).GetAwaiter().GetResult());

        var fail = Verb("fail", "mark a member faulty (a spare then takes over and is rebuilt)", o, o.Disks, o.Member, o.Limit, o.Json);
        fail.SetAction(p => WithArrayAsync(Read(p, o), p.Out(), "fail", ThenRebuild(FailAsync, p.Out())).GetAwaiter().GetResult());

        var remove = Verb("remove", "take a faulty member out", o, o.Disks, o.Member, o.Json);
        remove.SetAction(p => WithArrayAsync(Read(p, o), p.Out(), "remove", RemoveAsync).GetAwaiter().GetResult());

        var add = Verb("add", "add a disk: it is rebuilt into a missing role or kept as a spare", o, o.Disks, o.Member, o.Size, o.Force, o.Limit, o.Json);
        add.SetAction(p => AddAsync(Read(p, o), p.Out()).GetAwaiter().GetResult());

        var rebuild = Verb("rebuild", "finish pending rebuilds (progress, resumable)", o, o.Disks, o.Limit, o.Json);
        rebuild.SetAction(p => WithArrayAsync(Read(p, o), p.Out(), "rebuild", (array, _) => WaitRebuildAsync(array, p.Out())).GetAwaiter().GetResult());

        var scrub = Verb("scrub", "check every stripe's parity (and repair with --repair)", o, o.Disks, o.Json);
        scrub.Options.Add(repair);
        scrub.SetAction(p => ScrubAsync(Read(p, o) with { Repair = p.GetValue(repair) }, p.Out()).GetAwaiter().GetResult());

        var stop = Verb("stop", "stop the storage serve that runs the array", o, o.Disks);
        stop.SetAction(p => Stop(Read(p, o), p.Out()));

        var examine = ExamineCommand.Build();

        return Cli.Group("array", "create and run RAID arrays over files or block devices", create, status, assemble, fail, remove, add, rebuild, scrub, stop, examine)
            .WithNotes(Notes);
    }

    private static Command Verb(string name, string description, ArrayOptions o, params Option[] options)
    {
        var command = new Command(name, description).WithNotes(Notes);
        foreach (var option in options)
            command.Options.Add(option);
        return command;
    }

    private static ArrayArgs Read(ParseResult p, ArrayOptions o)
    {
        var args = new ArrayArgs(p.GetValue(o.Disks)!, p.GetValue(o.Json), p.GetValue(o.Member), p.GetValue(o.Limit), p.GetValue(o.Size), p.GetValue(o.Force), false, p.InvocationConfiguration.Error);
        JsonOutput.Value = args.Json;
        return args;
    }

    /// <summary>
    /// Inside <c>storage serve</c> a verb acts on the served array directly; otherwise a verb naming disks that a
    /// running server holds is sent to that server over its control socket and its output relayed. Returns the exit
    /// code when the verb was forwarded, null when it runs here.
    /// </summary>
    private static int? Forwarded(ArrayArgs args, string verb, TextWriter output)
    {
        if (LiveArrays.Current is not null || LiveArrays.Find(args.Disks) is not { } server)
            return null;
        if (verb == "assemble")
            throw new UsageException($"array '{server.Name}' is already assembled and served by storage serve (pid {server.Pid}).");
        var forwarded = new List<string> { "array", verb, "--disks", string.Join(',', args.Disks) };
        if (args.Member is { } member)
            forwarded.AddRange(["--member", member]);
        if (args.Limit is { } limit)
            forwarded.AddRange(["--limit", limit.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        if (args.Size is { } size)
            forwarded.AddRange(["--size", size.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        if (args.Force)
            forwarded.Add("--force");
        if (args.Repair)
            forwarded.Add("--repair");
        if (args.Json)
            forwarded.Add("--json");
        return LiveArrays.Forward(server, forwarded, output, args.Error);
    }

    private static int Stop(ArrayArgs args, TextWriter output)
    {
        if (Forwarded(args, "stop", output) is { } code)
            return code;
        if (LiveArrays.Current is not { } live)
            throw new UsageException("no running 'storage serve' holds these disks; there is nothing to stop.");
        live.RequestStop();
        output.WriteLine($"stopping array '{live.Array.Name}'");
        return Cli.Ok;
    }

    private static IReadOnlyList<string> RequireDisks(ArrayArgs args)
    {
        if (args.Disks.Count == 0)
            throw new UsageException("--disks is required: the member disks, e.g. --disks 'disks/*.img' or --disks /dev/loop0,/dev/loop1,/dev/loop2.");
        return args.Disks;
    }

    private static (RaidLevel Level, int Parity) ParseLevel(string? text, int? parity) => text?.ToLowerInvariant() switch
    {
        null => throw new UsageException("--level is required: 0, 1, 5, 6 or rs (Reed-Solomon, with --parity M)."),
        "0" or "raid0" => (RaidLevel.Raid0, 0),
        "1" or "raid1" => (RaidLevel.Raid1, 0),
        "5" or "raid5" => (RaidLevel.Raid5, 1),
        "6" or "raid6" => (RaidLevel.Raid6, 2),
        "rs" or "reed-solomon" => (RaidLevel.ReedSolomon, parity ?? throw new UsageException("--level rs needs --parity M (parity chunks per stripe).")),
        _ => throw new UsageException($"unknown level '{text}'; use 0, 1, 5, 6 or rs."),
    };

    /// <summary>The flags only <c>array create</c> takes.</summary>
    private sealed record CreateArgs(string? Level, int? Parity, long? Chunk, IReadOnlyList<string> Spares, string? Name, bool NoJournal, string? JournalDevice, bool NoBitmap, long? BitmapRegion);

    private static async Task<int> CreateAsync(ArrayArgs args, CreateArgs c, TextWriter output)
    {
        var (levelText, parityCount, chunkSize, spares, name, noJournal, journalPath) = (c.Level, c.Parity, c.Chunk, c.Spares, c.Name, c.NoJournal, c.JournalDevice);
        if (c.NoBitmap && c.BitmapRegion is not null)
            throw new UsageException("--bitmap-region and --no-bitmap contradict each other; drop one.");
        if (journalPath is not null && noJournal)
            throw new UsageException("--journal-device and --no-journal contradict each other; drop one.");
        journalPath = journalPath is null ? null : Path.GetFullPath(journalPath);
        var (level, parity) = ParseLevel(levelText, parityCount);
        var members = RequireDisks(args);
        long chunk = chunkSize ?? 64 * 1024;
        if ((chunk & (chunk - 1)) != 0)
            throw new UsageException($"--chunk must be a power of two (4K to 16M), got {chunk}.");
        long size = args.Size ?? 0;
        var all = members.Concat(spares).ToList();
        var named = journalPath is null ? all : [.. all, journalPath];
        var duplicate = named.GroupBy(p => p, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            throw new UsageException($"{duplicate.Key} is named twice.");
        if (LiveArrays.Find(named) is { } server)
            throw new UsageException($"{named.First(server.Disks.Contains)} belongs to array '{server.Name}', which storage serve (pid {server.Pid}) is running; nothing was changed.");
        var created = all.Where(p => !File.Exists(p) && !Disks.IsBlockDevicePath(p)).ToList();
        if (created.Count > 0 && size == 0)
            throw new UsageException($"{created[0]} does not exist. Pass --size to create file-backed disks, or name existing files or block devices.");
        bool createJournal = journalPath is not null && !File.Exists(journalPath) && !Disks.IsBlockDevicePath(journalPath);
        var devices = new List<IBlockDevice>();
        try
        {
            devices = Disks.OpenAll(all, size);
            if (journalPath is not null)
            {
                long journalSize = (RaidArray.JournalDeviceSize(members.Count, (int)chunk) + (1 << 20) - 1) >> 20 << 20;
                devices.Add(Disks.Open(journalPath, createJournal ? journalSize : 0));
            }
            var options = new ArrayCreateOptions
            {
                Level = level,
                ParityCount = parity,
                ChunkSize = (int)chunk,
                Name = name ?? "array",
                Force = args.Force,
                Journal = !noJournal,
                JournalDevice = journalPath is null ? null : devices[^1],
                Bitmap = !c.NoBitmap,
                BitmapRegionBytes = c.BitmapRegion ?? 64L << 20,
                AssumeZeroed = created.Count == all.Count,   // fresh sparse files read as zeros: parity already matches
            };
            var array = await RaidArray.CreateAsync(devices[..members.Count], options, devices[members.Count..all.Count]).ConfigureAwait(false);
            devices.Clear();   // the array owns them now
            if (!options.AssumeZeroed)
                Human(output).WriteLine("computed the initial parity over the disks' existing contents");
            Print(array.Status(), args.Json, output);
            await array.StopAsync().ConfigureAwait(false);
            return Cli.Ok;
        }
        catch (ArrayConfigurationException e)
        {
            foreach (var path in createJournal ? [.. created, journalPath!] : created)
                File.Delete(path);   // nothing half-made is left behind
            throw new UsageException(e.Message);
        }
        finally
        {
            foreach (var device in devices)
                device.Dispose();
        }
    }

    private static async Task<int> StatusAsync(ArrayArgs args, TextWriter output)
    {
        if (Forwarded(args, "status", output) is { } forwarded)
            return forwarded;
        if (LiveArrays.Current is { } live)
        {
            Print(live.Array.Status(), args.Json, output);
            return Cli.Ok;
        }
        var rows = new List<DiskRow>();
        Superblock? newest = null;
        foreach (var path in RequireDisks(args))
        {
            using var device = Disks.Open(path, readOnly: true);
            var label = await MemberLabel.ReadAsync(device).ConfigureAwait(false);
            rows.Add(new DiskRow(path, label.Content.ToString().ToLowerInvariant(), label.Superblock?.MemberId ?? Guid.Empty, label.Superblock?.Role ?? -1, label.Superblock?.Events ?? 0, label.Description));
            if (label.Superblock is { Role: not Superblock.JournalRole } superblock && (newest is null || superblock.Events > newest.Events))
                newest = superblock;
        }
        if (args.Json)
        {
            output.WriteLine(JsonSerializer.Serialize(new StatusDocument(newest is null ? null : Describe(newest), rows), CliJson.Default.StatusDocument));
            return newest is null ? Cli.Failed : Cli.Ok;
        }
        if (newest is null)
        {
            output.WriteLine("no array superblock on these disks:");
            foreach (var row in rows)
                output.WriteLine($"  {row.Path}: {row.Description}");
            return Cli.Failed;
        }
        var summary = Describe(newest);
        output.WriteLine($"array '{summary.Name}' {summary.Id}: {summary.Geometry}, events {summary.Events}, {(summary.Clean ? "stopped cleanly" : "not stopped cleanly (the journal is replayed at assembly)")}");
        var table = Tables.Create("role", "state", "disk", "events");
        for (int role = 0; role < newest.Roles.Count; role++)
        {
            var record = newest.Roles[role];
            var disk = rows.FirstOrDefault(r => r.Content == "member" && r.MemberId == record.MemberId && record.MemberId != Guid.Empty);
            string state = record.State == MemberState.Rebuilding ? $"rebuilding {100 * record.RebuildCheckpoint / Math.Max(1, newest.Geometry.StripeCount)}%" : record.State.ToString().ToLowerInvariant();
            table.AddRow(Tables.Cell(role), Tables.Cell(state), Tables.Cell(disk?.Path ?? "(not given)"), Tables.Cell(disk?.Events.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? ""));
        }
        foreach (var row in rows.Where(r => !newest.Roles.Any(role => role.MemberId == r.MemberId && r.Content == "member")))
        {
            string state = row.Content != "member" ? row.Content
                : row.Role == Superblock.JournalRole ? (row.MemberId == newest.JournalDevice ? "journal" : "journal of another array")
                : row.Role < 0 && row.Events == newest.Events ? "spare" : "stale";
            table.AddRow(Tables.Cell("-"), Tables.Cell(state), Tables.Cell(row.Path), Tables.Cell(row.Events));
        }
        if (newest.JournalDevice != Guid.Empty && !rows.Any(r => r.Role == Superblock.JournalRole && r.MemberId == newest.JournalDevice))
            table.AddRow(Tables.Cell("-"), Tables.Cell("journal"), Tables.Cell("(not given)"), Tables.Cell(""));
        Tables.Write(output, table);
        if (newest.BadBlocks.Count > 0)
            output.WriteLine($"  bad blocks: {string.Join(", ", newest.BadBlocks.Select(b => $"{b.Offset}+{b.Length}"))}");
        return Cli.Ok;
    }

    private static ArraySummary Describe(Superblock s) => new(s.Name, s.ArrayId, s.Geometry.ToString(), s.Events, s.Clean,
        [.. s.Roles.Select((r, i) => new RoleSummary(i, r.MemberId, r.State.ToString().ToLowerInvariant(), r.RebuildCheckpoint))]);

    /// <summary>Assembles the array from --disks, runs <paramref name="action"/>, prints the status and stops it.</summary>
    private static async Task<int> WithArrayAsync(ArrayArgs args, TextWriter output, string verb, Func<RaidArray, ArrayArgs, Task<int>> action)
    {
        if (Forwarded(args, verb, output) is { } forwarded)
            return forwarded;
        if (LiveArrays.Current is { } live)
        {
            int result = await action(live.Array, args).ConfigureAwait(false);
            Print(live.Array.Status(), args.Json, output);
            return result;
        }
        var array = await AssembleAsync(RequireDisks(args), args.Limit, output, args.WithoutJournalDevice).ConfigureAwait(false);
        try
        {
            int code = await action(array, args).ConfigureAwait(false);
            Print(array.Status(), args.Json, output);
            return code;
        }
        finally
        {
            await array.StopAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Opens the disks and assembles their array (<paramref name="limitMBps"/> sets the rebuild speed); prints what
    /// assembly noticed and closes the disks it left out. Bad disks are a usage error and leave everything closed.
    /// </summary>
    public static async Task<RaidArray> AssembleAsync(IReadOnlyList<string> paths, int? limitMBps, TextWriter output, bool withoutJournalDevice = false)
    {
        var devices = Disks.OpenAll(paths);
        RaidArray array;
        try
        {
            var run = new ArrayRunOptions { RebuildBytesPerSecond = (limitMBps ?? 0) * 1_000_000L, AssembleWithoutJournalDevice = withoutJournalDevice };
            array = await RaidArray.AssembleAsync(devices, run).ConfigureAwait(false);
        }
        catch (ArrayConfigurationException e)
        {
            foreach (var device in devices)
                device.Dispose();
            throw new UsageException(e.Message);
        }
        var report = array.Assembly!;
        foreach (var warning in report.Warnings)
            Human(output).WriteLine($"note: {warning}");
        if (!report.WasClean && report.JournalRecordsReplayed + report.JournalRecordsDiscarded > 0)
            Human(output).WriteLine($"journal: {report.JournalRecordsReplayed} stripe update(s) replayed, {report.JournalRecordsDiscarded} unfinished one(s) dropped");
        foreach (var device in report.LeftOut)
            device.Dispose();
        return array;
    }

    private static int RoleOf(RaidArray array, ArrayArgs args)
    {
        string member = Path.GetFullPath(args.Member ?? throw new UsageException("--member DISK is required: the member to act on."));
        var disk = array.Status().Disks.FirstOrDefault(d => d.Device == member)
            ?? throw new UsageException($"{member} is not a member of array '{array.Name}'. Members: {string.Join(", ", array.Status().Disks.Where(d => d.Device.Length > 0).Select(d => d.Device))}.");
        return disk.Role >= 0 ? disk.Role : throw new UsageException($"{member} is a spare of array '{array.Name}', not in a role.");
    }

    private static async Task<int> FailAsync(RaidArray array, ArrayArgs args)
    {
        try
        {
            await array.FailAsync(RoleOf(array, args)).ConfigureAwait(false);
            return Cli.Ok;
        }
        catch (InvalidOperationException e)
        {
            throw new UsageException(e.Message);
        }
    }

    /// <summary>Runs an action, then follows any rebuild it started (a spare taking over) to the end.</summary>
    private static Func<RaidArray, ArrayArgs, Task<int>> ThenRebuild(Func<RaidArray, ArrayArgs, Task<int>> action, TextWriter output) => async (array, args) =>
    {
        int code = await action(array, args).ConfigureAwait(false);
        return code == Cli.Ok ? await WaitRebuildAsync(array, output).ConfigureAwait(false) : code;
    };

    private static async Task<int> RemoveAsync(RaidArray array, ArrayArgs args)
    {
        try
        {
            using var removed = await array.RemoveAsync(RoleOf(array, args)).ConfigureAwait(false);
            return Cli.Ok;
        }
        catch (InvalidOperationException e)
        {
            throw new UsageException(e.Message);
        }
    }

    private static async Task<int> AddAsync(ArrayArgs args, TextWriter output)
    {
        if (Forwarded(args, "add", output) is { } forwarded)
            return forwarded;
        string member = Path.GetFullPath(args.Member ?? throw new UsageException("--member DISK is required: the disk to add."));
        if (RequireDisks(args).Contains(member))
            throw new UsageException($"{member} is in --disks already; --member names the new disk.");
        var device = Disks.Open(member, args.Size ?? 0);
        bool added = false;
        try
        {
            return await WithArrayAsync(args, output, "add", async (array, a) =>
            {
                try
                {
                    await array.AddAsync(device, a.Force).ConfigureAwait(false);
                }
                catch (ArrayConfigurationException e)
                {
                    throw new UsageException(e.Message);
                }
                added = true;
                return await WaitRebuildAsync(array, output).ConfigureAwait(false);
            }).ConfigureAwait(false);
        }
        finally
        {
            if (!added)
                device.Dispose();
        }
    }

    private static async Task<int> WaitRebuildAsync(RaidArray array, TextWriter output)
    {
        if (array.Rebuilds.Count == 0)
            return Cli.Ok;
        long total = array.Rebuilds.Sum(r => r.StripesTotal) * array.Geometry.ChunkSize;
        await Progress.RunAsync(Human(output), "rebuild", total, async report =>
        {
            while (array.Rebuilds is { Count: > 0 } now)
            {
                report(now.Sum(r => r.StripesDone) * array.Geometry.ChunkSize);
                await Task.Delay(100).ConfigureAwait(false);
            }
            await array.WaitForRebuildsAsync().ConfigureAwait(false);
            report(total);
        }).ConfigureAwait(false);
        return Cli.Ok;
    }

    private static async Task<int> ScrubAsync(ArrayArgs args, TextWriter output)
    {
        if (Forwarded(args, "scrub", output) is { } forwarded)
            return forwarded;
        ScrubResult? result = null;
        ArrayStatus? status = null;
        var text = Human(output);   // with --json, one JSON document and nothing else
        int code = await WithArrayAsync(args with { Json = false }, text, "scrub", async (array, a) =>
        {
            var run = array.ScrubAsync(args.Repair);
            long total = array.Geometry.StripeCount * array.Geometry.StripeDataSize;
            await Progress.RunAsync(text, args.Repair ? "scrub repair" : "scrub", total, async report =>
            {
                while (!run.IsCompleted)
                {
                    report(array.ScrubProgress.Done * array.Geometry.StripeDataSize);
                    await Task.WhenAny(run, Task.Delay(100)).ConfigureAwait(false);
                }
                report(total);
            }).ConfigureAwait(false);
            result = await run.ConfigureAwait(false);
            status = array.Status();
            return result.Mismatches > result.Repaired ? Cli.Failed : Cli.Ok;
        }).ConfigureAwait(false);
        if (result is null)
            return code;
        if (args.Json)
            output.WriteLine(JsonSerializer.Serialize(new ScrubDocument(result, status!), CliJson.Default.ScrubDocument));
        else
            output.WriteLine($"scrub: {result.StripesChecked} stripes checked, {result.Mismatches} mismatched, {result.Repaired} repaired, {result.StripesSkipped} skipped");
        return code;
    }

    private static void Print(ArrayStatus status, bool json, TextWriter output)
    {
        if (json)
        {
            output.WriteLine(JsonSerializer.Serialize(status, CliJson.Default.ArrayStatus));
            return;
        }
        output.WriteLine($"array '{status.Name}' {status.Id}: {status.Level}, {status.DataChunks}+{status.ParityChunks}, {status.ChunkSize / 1024} KiB chunks, {status.Capacity >> 20} MiB, {status.State}, events {status.Events}, journal {(status.Journal ? status.JournalDevice is { } jd ? $"on {jd}" : "on" : "off")}, " +
            (status.BitmapOffset is null ? "no bitmap" : $"bitmap {status.BitmapDirtyRegions} of {status.BitmapRegions} regions of {status.BitmapRegionBytes >> 20} MiB marked"));
        var table = Tables.Create("role", "state", "disk", "read errors");
        foreach (var disk in status.Disks)
            table.AddRow(Tables.Cell(disk.Role < 0 ? "-" : disk.Role), Tables.Cell(disk.State), Tables.Cell(disk.Device.Length == 0 ? "(missing)" : disk.Device), Tables.Cell(disk.ReadErrors));
        Tables.Write(output, table);
        foreach (var rebuild in status.Rebuilds)
            output.WriteLine($"  rebuilding role {rebuild.Role}: {100 * rebuild.Fraction:0}% at {rebuild.BytesPerSecond / 1e6:0} MB/s");
        if (status.BadBlocks.Count > 0)
            output.WriteLine($"  bad blocks: {string.Join(", ", status.BadBlocks.Select(b => $"{b.Offset}+{b.Length}"))}");
    }
}
