using System.Text.Json;
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
    public const string Usage = """
          storage array create --level 0|1|5|6|rs --disks A,B,… [--parity M] [--chunk 64K] [--spares X,…]
                               [--size SIZE] [--name NAME] [--no-journal] [--force] [--json]
          storage array status   --disks A,B,… [--json]          read the superblocks; change nothing
          storage array assemble --disks A,B,… [--json]          assemble, replay the journal, stop cleanly
          storage array fail     --disks A,B,… --member DISK     mark a member faulty (a spare then takes over)
          storage array remove   --disks A,B,… --member DISK     take a faulty member out
          storage array add      --disks A,B,… --member DISK [--size SIZE] [--force] [--limit MB/s]
                                                                 add a disk (rebuilds onto it or keeps it as a spare)
          storage array rebuild  --disks A,B,… [--limit MB/s]    finish pending rebuilds (progress, resumable)
          storage array scrub    --disks A,B,… [--repair] [--json]
          storage array stop     --disks A,B,…                   stop the storage serve that runs the array
        While storage serve runs an array, these commands act on it live through its control socket.
        --disks takes comma-separated paths and globs ('disks/*.img'); /dev/… paths are block devices.
""";

    private static readonly AsyncLocal<LiveArray?> Live = new();
    private static readonly AsyncLocal<bool> JsonOutput = new();

    /// <summary>Where progress and notes go: nowhere when --json asked for one JSON document.</summary>
    private static TextWriter Human(TextWriter output) => JsonOutput.Value ? TextWriter.Null : output;

    /// <summary>
    /// Runs an array command. Inside <c>storage serve</c>, <paramref name="live"/> is the served array and the
    /// command acts on it directly; otherwise a command naming disks that a running server holds is sent to that
    /// server over its control socket, and any other command works on the disks themselves.
    /// </summary>
    public static int Run(string[] args, TextWriter output, TextWriter error, LiveArray? live = null)
    {
        if (args.Length == 0)
            throw new UsageException("say what to do: storage array create|assemble|status|fail|remove|add|rebuild|scrub|stop (see storage --help).");
        var rest = args[1..];
        Live.Value = live;
        JsonOutput.Value = rest.Contains("--json");
        if (live is null && args[0] != "create" && FindServer(rest) is { } server)
        {
            if (args[0] == "assemble")
                throw new UsageException($"array '{server.Name}' is already assembled and served by storage serve (pid {server.Pid}).");
            return LiveArrays.Forward(server, ["array", .. args], output, error);
        }
        if (args[0] == "stop")
        {
            if (live is null)
                throw new UsageException("no running 'storage serve' holds these disks; there is nothing to stop.");
            live.RequestStop();
            output.WriteLine($"stopping array '{live.Array.Name}'");
            return Cli.Ok;
        }
        return args[0] switch
        {
            "create" => CreateAsync(Options.Parse(rest, "level", "disks", "parity", "chunk", "spares", "size", "name", "no-journal", "force", "json"), output).GetAwaiter().GetResult(),
            "status" => StatusAsync(Options.Parse(rest, "disks", "json"), output).GetAwaiter().GetResult(),
            "assemble" => WithArrayAsync(Options.Parse(rest, "disks", "json"), output, (_, _) => Task.FromResult(Cli.Ok)).GetAwaiter().GetResult(),
            "fail" => WithArrayAsync(Options.Parse(rest, "disks", "member", "limit", "json"), output, ThenRebuild(FailAsync, output)).GetAwaiter().GetResult(),
            "remove" => WithArrayAsync(Options.Parse(rest, "disks", "member", "json"), output, RemoveAsync).GetAwaiter().GetResult(),
            "add" => AddAsync(Options.Parse(rest, "disks", "member", "size", "force", "limit", "json"), output).GetAwaiter().GetResult(),
            "rebuild" => WithArrayAsync(Options.Parse(rest, "disks", "limit", "json"), output, (array, _) => WaitRebuildAsync(array, output)).GetAwaiter().GetResult(),
            "scrub" => ScrubAsync(Options.Parse(rest, "disks", "repair", "json"), output).GetAwaiter().GetResult(),
            "stop" => Cli.Ok,
            var other => throw new UsageException($"unknown array command '{other}'.{Suggest(other)} Commands: create, assemble, status, fail, remove, add, rebuild, scrub."),
        };
    }

    /// <summary>The running server that holds a disk named by --disks, if any.</summary>
    private static ServerRecord? FindServer(string[] rest)
    {
        int at = Array.IndexOf(rest, "--disks");
        if (at < 0 || at + 1 >= rest.Length)
            return null;
        var disks = Options.Parse(["--disks", rest[at + 1]], "disks").Paths("disks");
        return LiveArrays.Find(disks);
    }

    private static string Suggest(string typed)
    {
        string[] known = ["create", "assemble", "status", "fail", "remove", "add", "rebuild", "scrub", "stop"];
        var close = known.FirstOrDefault(k => Options.Distance(k, typed) <= 2);
        return close is null ? "" : $" Did you mean '{close}'?";
    }

    private static IReadOnlyList<string> RequireDisks(Options options)
    {
        var disks = options.Paths("disks");
        if (disks.Count == 0)
            throw new UsageException("--disks is required: the member disks, e.g. --disks 'disks/*.img' or --disks /dev/loop0,/dev/loop1,/dev/loop2.");
        return disks;
    }

    private static (RaidLevel Level, int Parity) ParseLevel(Options options)
    {
        string text = options.String("level") ?? throw new UsageException("--level is required: 0, 1, 5, 6 or rs (Reed-Solomon, with --parity M).");
        return text.ToLowerInvariant() switch
        {
            "0" or "raid0" => (RaidLevel.Raid0, 0),
            "1" or "raid1" => (RaidLevel.Raid1, 0),
            "5" or "raid5" => (RaidLevel.Raid5, 1),
            "6" or "raid6" => (RaidLevel.Raid6, 2),
            "rs" or "reed-solomon" => (RaidLevel.ReedSolomon, options.Int("parity", 0, 1, 254) is var m and > 0 ? m : throw new UsageException("--level rs needs --parity M (parity chunks per stripe).")),
            _ => throw new UsageException($"unknown level '{text}'; use 0, 1, 5, 6 or rs."),
        };
    }

    private static async Task<int> CreateAsync(Options options, TextWriter output)
    {
        var (level, parity) = ParseLevel(options);
        var members = RequireDisks(options);
        var spares = options.Paths("spares");
        long chunk = options.Size("chunk", 64 * 1024, ArrayGeometry.MinChunkSize, ArrayGeometry.MaxChunkSize);
        if ((chunk & (chunk - 1)) != 0)
            throw new UsageException($"--chunk must be a power of two (4K to 16M), got {chunk}.");
        long size = options.Size("size", 0, 4 << 20, 1L << 50);
        var all = members.Concat(spares).ToList();
        var duplicate = all.GroupBy(p => p, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            throw new UsageException($"{duplicate.Key} is named twice.");
        if (LiveArrays.Find(all) is { } server)
            throw new UsageException($"{all.First(server.Disks.Contains)} belongs to array '{server.Name}', which storage serve (pid {server.Pid}) is running; nothing was changed.");
        var created = all.Where(p => !File.Exists(p) && !Disks.IsBlockDevicePath(p)).ToList();
        if (created.Count > 0 && size == 0)
            throw new UsageException($"{created[0]} does not exist. Pass --size to create file-backed disks, or name existing files or block devices.");
        var devices = new List<IBlockDevice>();
        try
        {
            devices = Disks.OpenAll(all, size);
            var options2 = new ArrayCreateOptions
            {
                Level = level,
                ParityCount = parity,
                ChunkSize = (int)chunk,
                Name = options.String("name") ?? "array",
                Force = options.Has("force"),
                Journal = !options.Has("no-journal"),
                AssumeZeroed = created.Count == all.Count,   // fresh sparse files read as zeros: parity already matches
            };
            var array = await RaidArray.CreateAsync(devices[..members.Count], options2, devices[members.Count..]).ConfigureAwait(false);
            devices.Clear();   // the array owns them now
            if (!options2.AssumeZeroed)
                Human(output).WriteLine("computed the initial parity over the disks' existing contents");
            await PrintAsync(array.Status(), options, output).ConfigureAwait(false);
            await array.StopAsync().ConfigureAwait(false);
            return Cli.Ok;
        }
        catch (ArrayConfigurationException e)
        {
            foreach (var path in created)
                File.Delete(path);   // nothing half-made is left behind
            throw new UsageException(e.Message);
        }
        finally
        {
            foreach (var device in devices)
                device.Dispose();
        }
    }

    private static async Task<int> StatusAsync(Options options, TextWriter output)
    {
        if (Live.Value is { } live)
        {
            await PrintAsync(live.Array.Status(), options, output).ConfigureAwait(false);
            return Cli.Ok;
        }
        var rows = new List<DiskRow>();
        Superblock? newest = null;
        foreach (var path in RequireDisks(options))
        {
            using var device = Disks.Open(path, readOnly: true);
            var label = await MemberLabel.ReadAsync(device).ConfigureAwait(false);
            rows.Add(new DiskRow(path, label.Content.ToString().ToLowerInvariant(), label.Superblock?.MemberId ?? Guid.Empty, label.Superblock?.Role ?? -1, label.Superblock?.Events ?? 0, label.Description));
            if (label.Superblock is { } superblock && (newest is null || superblock.Events > newest.Events))
                newest = superblock;
        }
        if (options.Has("json"))
        {
            output.WriteLine(JsonSerializer.Serialize(new { array = newest is null ? null : Describe(newest), disks = rows }, Json.Options));
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
        output.WriteLine($"  {"role",4}  {"state",-11} {"disk",-40} {"events",7}");
        for (int role = 0; role < newest.Roles.Count; role++)
        {
            var record = newest.Roles[role];
            var disk = rows.FirstOrDefault(r => r.Content == "member" && r.MemberId == record.MemberId && record.MemberId != Guid.Empty);
            string state = record.State == MemberState.Rebuilding ? $"rebuilding {100 * record.RebuildCheckpoint / Math.Max(1, newest.Geometry.StripeCount)}%" : record.State.ToString().ToLowerInvariant();
            output.WriteLine($"  {role,4}  {state,-11} {disk?.Path ?? "(not given)",-40} {(disk is null ? "" : disk.Events.ToString(System.Globalization.CultureInfo.InvariantCulture)),7}");
        }
        foreach (var row in rows.Where(r => !newest.Roles.Any(role => role.MemberId == r.MemberId && r.Content == "member")))
        {
            string state = row.Content != "member" ? row.Content : row.Role < 0 && row.Events == newest.Events ? "spare" : "stale";
            output.WriteLine($"  {"-",4}  {state,-11} {row.Path,-40} {row.Events,7}");
        }
        if (newest.BadBlocks.Count > 0)
            output.WriteLine($"  bad blocks: {string.Join(", ", newest.BadBlocks.Select(b => $"{b.Offset}+{b.Length}"))}");
        return Cli.Ok;
    }

    private sealed record DiskRow(string Path, string Content, Guid MemberId, int Role, ulong Events, string Description);

    private static ArraySummary Describe(Superblock s) => new(s.Name, s.ArrayId, s.Geometry.ToString(), s.Events, s.Clean,
        [.. s.Roles.Select((r, i) => new RoleSummary(i, r.MemberId, r.State.ToString().ToLowerInvariant(), r.RebuildCheckpoint))]);

    private sealed record ArraySummary(string Name, Guid Id, string Geometry, ulong Events, bool Clean, IReadOnlyList<RoleSummary> Roles);

    private sealed record RoleSummary(int Role, Guid MemberId, string State, long RebuildCheckpoint);

    /// <summary>Assembles the array from --disks, runs <paramref name="action"/>, prints the status and stops it.</summary>
    private static async Task<int> WithArrayAsync(Options options, TextWriter output, Func<RaidArray, Options, Task<int>> action)
    {
        if (Live.Value is { } live)
        {
            int result = await action(live.Array, options).ConfigureAwait(false);
            await PrintAsync(live.Array.Status(), options, output).ConfigureAwait(false);
            return result;
        }
        var array = await AssembleAsync(RequireDisks(options), options, output).ConfigureAwait(false);
        try
        {
            int code = await action(array, options).ConfigureAwait(false);
            await PrintAsync(array.Status(), options, output).ConfigureAwait(false);
            return code;
        }
        finally
        {
            await array.StopAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Opens the disks and assembles their array (--limit sets the rebuild speed); prints what assembly noticed and
    /// closes the disks it left out. Bad disks are a usage error and leave everything closed.
    /// </summary>
    public static async Task<RaidArray> AssembleAsync(IReadOnlyList<string> paths, Options options, TextWriter output)
    {
        var devices = Disks.OpenAll(paths);
        RaidArray array;
        try
        {
            var run = new ArrayRunOptions { RebuildBytesPerSecond = options.Has("limit") ? options.Int("limit", 0, 1, 1 << 20) * 1_000_000L : 0 };
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
        if (report.JournalRecordsReplayed + report.JournalRecordsDiscarded > 0)
            Human(output).WriteLine($"journal: {report.JournalRecordsReplayed} stripe update(s) replayed, {report.JournalRecordsDiscarded} unfinished one(s) dropped");
        foreach (var device in devices.Where(d => report.Warnings.Any(w => w.StartsWith(d.Name, StringComparison.Ordinal))))
            device.Dispose();
        return array;
    }

    private static int RoleOf(RaidArray array, Options options)
    {
        string member = Path.GetFullPath(options.String("member") ?? throw new UsageException("--member DISK is required: the member to act on."));
        var disk = array.Status().Disks.FirstOrDefault(d => d.Device == member)
            ?? throw new UsageException($"{member} is not a member of array '{array.Name}'. Members: {string.Join(", ", array.Status().Disks.Where(d => d.Device.Length > 0).Select(d => d.Device))}.");
        return disk.Role >= 0 ? disk.Role : throw new UsageException($"{member} is a spare of array '{array.Name}', not in a role.");
    }

    private static async Task<int> FailAsync(RaidArray array, Options options)
    {
        try
        {
            await array.FailAsync(RoleOf(array, options)).ConfigureAwait(false);
            return Cli.Ok;
        }
        catch (InvalidOperationException e)
        {
            throw new UsageException(e.Message);
        }
    }

    /// <summary>Runs an action, then follows any rebuild it started (a spare taking over) to the end.</summary>
    private static Func<RaidArray, Options, Task<int>> ThenRebuild(Func<RaidArray, Options, Task<int>> action, TextWriter output) => async (array, options) =>
    {
        int code = await action(array, options).ConfigureAwait(false);
        return code == Cli.Ok ? await WaitRebuildAsync(array, output).ConfigureAwait(false) : code;
    };

    private static async Task<int> RemoveAsync(RaidArray array, Options options)
    {
        try
        {
            using var removed = await array.RemoveAsync(RoleOf(array, options)).ConfigureAwait(false);
            return Cli.Ok;
        }
        catch (InvalidOperationException e)
        {
            throw new UsageException(e.Message);
        }
    }

    private static async Task<int> AddAsync(Options options, TextWriter output)
    {
        string member = Path.GetFullPath(options.String("member") ?? throw new UsageException("--member DISK is required: the disk to add."));
        if (RequireDisks(options).Contains(member))
            throw new UsageException($"{member} is in --disks already; --member names the new disk.");
        var device = Disks.Open(member, options.Size("size", 0, 4 << 20, 1L << 50));
        bool added = false;
        try
        {
            return await WithArrayAsync(options, output, async (array, o) =>
            {
                try
                {
                    await array.AddAsync(device, o.Has("force")).ConfigureAwait(false);
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
        var progress = new Progress(Human(output), "rebuild", total);
        while (array.Rebuilds is { Count: > 0 } now)
        {
            progress.Report(now.Sum(r => r.StripesDone) * array.Geometry.ChunkSize, now.Sum(r => r.BytesPerSecond), now.Max(r => r.Remaining));
            await Task.Delay(100).ConfigureAwait(false);
        }
        await array.WaitForRebuildsAsync().ConfigureAwait(false);
        progress.Report(total);
        return Cli.Ok;
    }

    private static async Task<int> ScrubAsync(Options options, TextWriter output)
    {
        bool json = options.Has("json");
        ScrubResult? result = null;
        ArrayStatus? status = null;
        var text = json ? TextWriter.Null : output;   // with --json, one JSON document and nothing else
        int code = await WithArrayAsync(options, text, async (array, o) =>
        {
            var run = array.ScrubAsync(o.Has("repair"));
            var progress = new Progress(text, o.Has("repair") ? "scrub repair" : "scrub", array.Geometry.StripeCount * array.Geometry.StripeDataSize);
            while (!run.IsCompleted)
            {
                progress.Report(array.ScrubProgress.Done * array.Geometry.StripeDataSize);
                await Task.WhenAny(run, Task.Delay(100)).ConfigureAwait(false);
            }
            result = await run.ConfigureAwait(false);
            status = array.Status();
            progress.Report(array.Geometry.StripeCount * array.Geometry.StripeDataSize);
            return result.Mismatches > result.Repaired ? Cli.Failed : Cli.Ok;
        }).ConfigureAwait(false);
        if (result is null)
            return code;
        if (json)
            output.WriteLine(JsonSerializer.Serialize(new { scrub = result, array = status }, Json.Options));
        else
            output.WriteLine($"scrub: {result.StripesChecked} stripes checked, {result.Mismatches} mismatched, {result.Repaired} repaired, {result.StripesSkipped} skipped");
        return code;
    }

    private static Task PrintAsync(ArrayStatus status, Options options, TextWriter output)
    {
        if (options.Has("json"))
        {
            output.WriteLine(JsonSerializer.Serialize(status, Json.Options));
            return Task.CompletedTask;
        }
        output.WriteLine($"array '{status.Name}' {status.Id}: {status.Level}, {status.DataChunks}+{status.ParityChunks}, {status.ChunkSize / 1024} KiB chunks, {status.Capacity >> 20} MiB, {status.State}, events {status.Events}, journal {(status.Journal ? "on" : "off")}");
        output.WriteLine($"  {"role",4}  {"state",-11} {"disk",-40} {"read errors",11}");
        foreach (var disk in status.Disks)
            output.WriteLine($"  {(disk.Role < 0 ? "-" : disk.Role.ToString(System.Globalization.CultureInfo.InvariantCulture)),4}  {disk.State,-11} {(disk.Device.Length == 0 ? "(missing)" : disk.Device),-40} {disk.ReadErrors,11}");
        foreach (var rebuild in status.Rebuilds)
            output.WriteLine($"  rebuilding role {rebuild.Role}: {100 * rebuild.Fraction:0}% at {rebuild.BytesPerSecond / 1e6:0} MB/s");
        if (status.BadBlocks.Count > 0)
            output.WriteLine($"  bad blocks: {string.Join(", ", status.BadBlocks.Select(b => $"{b.Offset}+{b.Length}"))}");
        return Task.CompletedTask;
    }
}

internal static class Json
{
    public static JsonSerializerOptions Options { get; } = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase, IncludeFields = true };

    public static JsonSerializerOptions Compact { get; } = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase, IncludeFields = true };
}
