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
/// <c>storage volume create|list|resize|delete|move</c>: thin volumes in a pool (moves: between the daemon's pools). A volume's size is virtual: space is
/// taken on first write, so the volumes of a pool may add up to more than it holds.
/// </summary>
internal static class VolumeCommands
{
    public static Command Build()
    {
        var t = new Target();
        var name = new Argument<string?>("NAME") { Description = "the volume's name (its NBD export name)", Arity = ArgumentArity.ZeroOrOne };
        var size = CliOptions.Size("--size", "the volume's virtual size, e.g. 10G (a multiple of the device's sector)", 1, 1L << 56);

        var pools = CliOptions.Text("--pools", "daemon: the pools its segments may go to (default: every pool)", "P1,P2,…");
        var policy = CliOptions.Text("--policy", "daemon: segment placement: round-robin (default), random, weighted (by free space), least-loaded", "POLICY");
        var mirror = CliOptions.Flag("--mirror", "daemon: two copies of every segment, on different pools");
        var reads = CliOptions.Text("--read-policy", "daemon: which copy a mirrored read uses: least-queue-depth (default), round-robin, random", "POLICY");
        var segment = CliOptions.Size("--segment-size", "daemon: bytes per segment, a whole number of MiB (default 1G)", 1 << 20, 1L << 56);
        var group = CliOptions.Text("--group", "daemon: its consistency group ('storage snapshot create SNAP --group G' takes them all at one cut)", "GROUP");
        Option[] spanned = [pools, policy, mirror, reads, segment, group];

        var create = t.Verb("create", "create an empty thin volume (space is taken on first write); without --disks/--device, across the daemon's pools",
            [name, size, .. spanned, DaemonCommands.DaemonOption, t.Json]);
        create.SetAction(p =>
        {
            string volume = Require(p.GetValue(name), "create");
            long bytes = RequireSize(p.GetValue(size), "create");
            var args = t.Read(p);
            if (args.Paths.Count == 0)
            {
                var request = new CreateVolumeRequest(volume, bytes, p.GetValue(segment) ?? 1L << 30, DaemonCommands.List(p.GetValue(pools)), DaemonCommands.ParsePolicy(p.GetValue(policy)),
                    p.GetValue(mirror), DaemonCommands.ParseReads(p.GetValue(reads)), p.GetValue(group));
                return DaemonCommands.Send(p, request, args.Json, r => JsonSerializer.Serialize(r.Volumes![0], DaemonJson.Default.VolumeView));
            }
            if (spanned.FirstOrDefault(o => p.GetResult(o) is { Implicit: false }) is { } used)
                throw new UsageException($"{used.Name} is for volumes across the daemon's pools; leave out --disks/--device to create one there.");
            return RunAsync(args, async (pool, a) =>
            {
                var info = await pool.CreateVolumeAsync(volume, bytes).ConfigureAwait(false);
                return PrintOne(info, a, $"created volume '{info.Name}' of {Bytes(info.Size)} in pool '{pool.Name}'");
            }).GetAwaiter().GetResult();
        });

        var list = t.Verb("list", "every volume: size, space used, snapshots, origin (without --disks/--device: the daemon's volumes across pools)", DaemonCommands.DaemonOption, t.Json);
        list.SetAction(p => t.Read(p) is { Paths.Count: 0 } args
            ? DaemonCommands.Send(p, new ListVolumesRequest(), args.Json, r => JsonSerializer.Serialize(r.Volumes!, DaemonJson.Default.IReadOnlyListVolumeView), (r, o) => DaemonCommands.PrintVolumes(r.Volumes!, o))
            : RunAsync(t.Read(p), (pool, a) =>
        {
            var volumes = pool.ListVolumes();
            if (a.Json)
                a.Output.WriteLine(JsonSerializer.Serialize(volumes, CliJson.Default.IReadOnlyListVolumeInfo));
            else if (volumes.Count == 0)
                a.Output.WriteLine($"pool '{pool.Name}' has no volumes; create one with 'storage volume create NAME --size 10G'.");
            else
                Print(volumes, a.Output);
            return Task.FromResult(Cli.Ok);
        }).GetAwaiter().GetResult());

        var resize = t.Verb("resize", "change a volume's size (shrinking frees what lies beyond; snapshots keep theirs)", name, size, DaemonCommands.DaemonOption, t.Json);
        resize.SetAction(p =>
        {
            string volume = Require(p.GetValue(name), "resize");
            long bytes = RequireSize(p.GetValue(size), "resize");
            if (t.Read(p) is { Paths.Count: 0 } args)
                return DaemonCommands.Send(p, new ResizeVolumeRequest(volume, bytes), args.Json, r => JsonSerializer.Serialize(r.Volumes![0], DaemonJson.Default.VolumeView));
            return RunAsync(t.Read(p), async (pool, a) =>
            {
                await pool.ResizeVolumeAsync(volume, bytes).ConfigureAwait(false);
                var info = Find(pool, volume);
                return PrintOne(info, a, $"volume '{volume}' is now {Bytes(info.Size)}");
            }).GetAwaiter().GetResult();
        });

        var delete = t.Verb("delete", "delete a volume and its snapshots, freeing the space only they hold", name, DaemonCommands.DaemonOption, t.Json);
        delete.SetAction(p =>
        {
            string volume = Require(p.GetValue(name), "delete");
            if (t.Read(p) is { Paths.Count: 0 } args)
                return DaemonCommands.Send(p, new DeleteVolumeRequest(volume), args.Json, _ => null);
            return RunAsync(t.Read(p), async (pool, a) =>
            {
                var info = Find(pool, volume);
                await pool.DeleteVolumeAsync(volume).ConfigureAwait(false);
                return PrintOne(info, a, $"deleted volume '{volume}' and its {info.Snapshots} snapshot(s); {Bytes(info.UsedBytes)} freed");
            }).GetAwaiter().GetResult();
        });

        var segmentIndex = CliOptions.Number("--segment", "the segment to move (0 is the first; 'storage volume list --json' counts them)", 0, int.MaxValue, "N");
        var from = CliOptions.Text("--from", "the pool it leaves (without --segment: every segment there moves); a mirror's stale copies there (a lost pool) are replaced on --to and resynchronized", "POOL");
        var to = CliOptions.Text("--to", "the pool it moves to", "POOL");
        var cancel = CliOptions.Flag("--cancel", "undo the move in progress (the new copy is dropped)");
        var move = t.Verb("move", "daemon: move a segment (or every segment on a pool) to another pool while the volume is served; clients stay connected",
            name, segmentIndex, from, to, cancel, DaemonCommands.DaemonOption, t.Json);
        move.SetAction(p =>
        {
            string volume = Require(p.GetValue(name), "move");
            var args = t.Read(p);
            if (args.Paths.Count > 0)
                throw new UsageException("'storage volume move' moves segments between the daemon's pools; leave out --disks/--device.");
            var request = new MoveVolumeRequest(volume, p.GetValue(segmentIndex), p.GetValue(from), p.GetValue(to), p.GetValue(cancel));
            return DaemonCommands.Send(p, request, args.Json, r => JsonSerializer.Serialize(r.Volumes![0], DaemonJson.Default.VolumeView));
        });

        return Cli.Group("volume", "thin volumes in a pool: each is an NBD export", create, list, resize, delete, move).WithNotes(Notes);
    }

    private static string Require(string? name, string verb)
        => name ?? throw new UsageException($"give the volume's name: storage volume {verb} NAME{(verb is "create" or "resize" ? " --size 10G" : "")} --disks …");

    private static long RequireSize(long? size, string verb)
        => size ?? throw new UsageException($"--size is required: the volume's virtual size, e.g. storage volume {verb} NAME --size 10G.");

    /// <summary>The volume's row, or the library's "no such volume" error.</summary>
    public static VolumeInfo Find(Pool pool, string name)
        => pool.ListVolumes().FirstOrDefault(v => v.Name == name) ?? throw new PoolConfigurationException($"Pool '{pool.Name}' has no volume '{name}'; 'storage volume list' shows them.");

    public static int PrintOne(VolumeInfo info, PoolArgs args, string text)
    {
        args.Output.WriteLine(args.Json ? JsonSerializer.Serialize(info, CliJson.Default.VolumeInfo) : text);
        return Cli.Ok;
    }

    public static void Print(IReadOnlyList<VolumeInfo> volumes, TextWriter output)
    {
        var table = Tables.Create("volume", "size", "used", "mapped", "snapshots", "origin");
        foreach (var v in volumes)
            table.AddRow(Tables.Cell(v.Name), Tables.Cell(Bytes(v.Size)), Tables.Cell(Bytes(v.UsedBytes)), Tables.Cell(Bytes(v.MappedBytes)), Tables.Cell(v.Snapshots.ToString(CultureInfo.InvariantCulture)), Tables.Cell(v.Origin ?? "-"));
        Tables.Write(output, table);
    }
}
