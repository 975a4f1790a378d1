using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Storage.CommandLine;

namespace Storage.Cli;

/// <summary>What <c>storage mount</c> set up, so <c>storage umount</c> can take it down in reverse.</summary>
/// <c>Export</c>: the pool volume (or snapshot) mounted, null for an array served whole.
internal sealed record MountRecord(string Dir, string Array, string Loop, string FuseDir, int NbdfusePid, bool StartedServer, int ServerPid, IReadOnlyList<string> Disks, string? Export = null);

/// <summary>
/// <c>storage mount</c>: exposes an array, or a volume of the pool on it (<c>--volume VOL</c>, or <c>--name
/// POOL/VOL</c>; a snapshot <c>VOL@SNAP</c> mounts read-only), to the kernel and mounts its filesystem. There is no /dev/nbd here, so
/// the path is: our NBD server (a running <c>storage serve</c>, started in the background when needed) →
/// <c>nbdfuse</c>, which presents the export as one file in a FUSE mount → a loop device on that file with direct
/// I/O → <c>mount</c>. <c>storage umount</c> unmounts, detaches the loop device, unmounts FUSE and, when mount
/// started the server, stops it cleanly (flushed, marked clean).
/// </summary>
internal static class MountCommand
{
    public static Command BuildMount()
    {
        var dir = new Argument<string[]>("[POOL/VOL] DIR") { Description = "an empty directory to mount on; before it, POOL/VOL[@SNAP] served by storage serve (as --name)", Arity = new ArgumentArity(0, 2) };
        var disks = CliOptions.Paths("--disks", "the array's disks (storage serve is started for them when none runs)");
        var device = PoolCommands.PathOption("--device", "a pool on one file or block device (storage serve is started for it when none runs)", "PATH");
        var name = CliOptions.Text("--name", "an array or pool that storage serve already serves; POOL/VOL names a volume", "ARRAY");
        var volume = CliOptions.Text("--volume", "the pool volume to mount (VOL@SNAP: a snapshot, read-only)", "VOL");
        var mkfs = CliOptions.Text("--mkfs", "make a filesystem first: ext4, ext3, ext2, xfs or btrfs", "FS");
        var command = new Command("mount", "mount the filesystem of an array or of a pool volume on DIR (NBD → nbdfuse → loop device → mount)");
        command.Arguments.Add(dir);
        command.Options.Add(disks);
        command.Options.Add(device);
        command.Options.Add(name);
        command.Options.Add(volume);
        command.Options.Add(mkfs);
        command.SetAction(p =>
        {
            var positional = p.GetValue(dir) ?? [];
            string? served = p.GetValue(name);
            if (positional.Length == 2)
            {
                if (served is not null)
                    throw new UsageException($"{positional[0]} names what to mount already; drop --name.");
                served = positional[0];
            }
            return Mount(positional.LastOrDefault(), p.GetValue(disks)!, p.GetValue(device), served, p.GetValue(volume), p.GetValue(mkfs), p.Out());
        });
        return command;
    }

    public static Command BuildUnmount()
    {
        var dir = new Argument<string?>("DIR") { Description = "the mount point", Arity = ArgumentArity.ZeroOrOne };
        var command = new Command("umount", "unmount, detach, flush and stop what storage mount started");
        command.Arguments.Add(dir);
        command.SetAction(p => Unmount(p.GetValue(dir), p.Out()));
        return command;
    }

    private static int Mount(string? mountPoint, IReadOnlyList<string> disks, string? device, string? name, string? volume, string? fs, TextWriter output)
    {
        if (name is not null && name.IndexOf('/', StringComparison.Ordinal) is > 0 and var slash)
        {
            if (volume is not null)
                throw new UsageException($"--name {name} names a volume already; drop --volume.");
            (name, volume) = (name[..slash], name[(slash + 1)..]);
        }
        if (device is not null && disks.Count > 0)
            throw new UsageException("give --disks (an array) or --device (a pool on one file or block device), not both.");
        if (device is not null)
            disks = [device];
        bool readOnly = volume?.Contains('@', StringComparison.Ordinal) == true;
        if (readOnly && fs is not null)
            throw new UsageException($"{volume} is a snapshot: it mounts read-only, so --mkfs cannot make a filesystem on it.");
        if (mountPoint is null)
            throw new UsageException("give exactly one mount point: storage mount --disks A,B,… DIR [--mkfs ext4].");
        string dir = Path.GetFullPath(mountPoint);
        if (!Directory.Exists(dir))
            throw new UsageException($"{dir} does not exist; create the mount point first.");
        if (Directory.EnumerateFileSystemEntries(dir).Any())
            throw new UsageException($"{dir} is not empty; mount on an empty directory.");
        if (Mounted(dir))
            throw new UsageException($"{dir} is already a mount point.");
        if (fs is not null && fs is not ("ext4" or "ext3" or "ext2" or "xfs" or "btrfs"))
            throw new UsageException($"--mkfs takes a filesystem type (ext4, ext3, ext2, xfs, btrfs), got '{fs}'.");
        // --volume alone: a volume (or snapshot) the storage daemon serves.
        var daemon = disks.Count == 0 && name is null && volume is not null ? Storage.Daemon.DaemonRecords.Running() : null;
        if (daemon is { Count: not 1 })
            throw new UsageException(daemon.Count == 0 ? $"no storage daemon is running to serve volume '{volume}'; start one ('storage daemon --dir DIR'), or say where the pool is with --disks/--device."
                : "several storage daemons run here; mount through one with --name POOL/VOL of a storage serve instead.");
        if (disks.Count == 0 && name is null && daemon is null)
            throw new UsageException("say which array: --disks A,B,… (started for you), --device PATH (a pool on one device) or --name ARRAY (already served by storage serve).");
        if (!Environment.IsPrivilegedProcess)
            throw new UsageException("mounting needs root (losetup and mount).");
        string nbdfuse = ExternalTools.Require("nbdfuse", "libnbd-bin");
        ExternalTools.Require("fusermount3", "fuse3");
        ExternalTools.Require("losetup", "mount");
        if (fs is not null)
            ExternalTools.Require($"mkfs.{fs}", fs == "xfs" ? "xfsprogs" : fs == "btrfs" ? "btrfs-progs" : "e2fsprogs");

        string run = LiveArrays.Ensure();
        var undo = new Stack<Action>();
        try
        {
            var server = daemon is [var node] ? new ServerRecord($"node-{node.Node}", node.Pid, [], node.NbdSocket, node.Control, node.NbdTcp, $"daemon node '{node.Node}'") : LiveArrays.Find(disks, name);
            bool started = false;
            if (server is null)
            {
                if (disks.Count == 0)
                    throw new UsageException($"no storage serve runs an array named '{name}'; pass --disks to start one.");
                string log = Path.Combine(run, $"serve-{Environment.ProcessId}.log");
                var self = SelfCommand();
                var process = ExternalTools.Start(self[0], [.. self.Skip(1), "serve", device is null ? "--disks" : "--device", string.Join(',', disks)], log);
                ExternalTools.WaitFor(() => LiveArrays.Find(disks) is not null, TimeSpan.FromSeconds(60), "starting storage serve", process, log);
                server = LiveArrays.Find(disks)!;
                started = true;
                undo.Push(() => StopServer(server));
                output.WriteLine($"started storage serve for {(server.Pool is null ? "array" : "pool")} '{server.Name}' (pid {server.Pid}, log {log})");
            }
            if (server.Pool is not null && volume is null)
                throw new UsageException($"storage serve (pid {server.Pid}) serves pool '{server.Pool}': say which volume with --volume VOL ('storage volume list --disks …' shows them).");
            if (server.Pool is null && volume is not null)
                throw new UsageException($"array '{server.Name}' holds no pool (storage serve pid {server.Pid} serves it whole); mount it without --volume.");
            string label = volume is null ? server.Name : $"{server.Name}-{volume}";
            string fuseDir = Path.Combine(run, $"{label}.fuse");
            Directory.CreateDirectory(fuseDir);
            string pidFile = Path.Combine(run, $"{label}.nbdfuse.pid");
            string fuseLog = Path.Combine(run, $"{label}.nbdfuse.log");
            File.Delete(pidFile);
            string[] source = volume is null ? ["--unix", server.NbdSocket] : [$"nbd+unix:///{Uri.EscapeDataString(volume)}?socket={server.NbdSocket}"];
            var fuse = ExternalTools.Start(nbdfuse, [.. When(readOnly, "-r"), "-P", pidFile, fuseDir, .. source], fuseLog);
            undo.Push(() => { TryRun("fusermount3", "fuse3", "-u", fuseDir); WaitExit(fuse.Id); });
            ExternalTools.WaitFor(() => File.Exists(pidFile) && File.Exists(Path.Combine(fuseDir, "nbd")), TimeSpan.FromSeconds(30), "starting nbdfuse", fuse, fuseLog);
            string loop = ExternalTools.Run("losetup", "mount", ["--find", "--show", "--direct-io=on", .. When(readOnly, "--read-only"), Path.Combine(fuseDir, "nbd")]);
            undo.Push(() => TryRun("losetup", "mount", "-d", loop));
            if (fs is not null)
            {
                output.WriteLine($"making a {fs} filesystem on {loop}");
                ExternalTools.Run($"mkfs.{fs}", "e2fsprogs", fs.StartsWith("ext", StringComparison.Ordinal) ? ["-q", "-F", loop] : ["-q", "-f", loop]);
            }
            ExternalTools.Run("mount", "mount", [.. When(readOnly, "-o", ReadOnlyOptions(loop)), loop, dir]);
            var record = new MountRecord(dir, server.Name, loop, fuseDir, fuse.Id, started, server.Pid, server.Disks, volume);
            File.WriteAllText(RecordPath(dir), JsonSerializer.Serialize(record, CliJson.Default.MountRecord));
            string what = volume is null ? $"array '{server.Name}'" : $"{(readOnly ? "snapshot" : "volume")} '{volume}' of {(daemon is null ? $"pool '{server.Pool}'" : server.Pool)}{(readOnly ? " read-only" : "")}";
            output.WriteLine($"mounted {what} on {dir} ({loop} ← {fuseDir}/nbd ← {server.NbdSocket})");
            return Cli.Ok;
        }
        catch
        {
            while (undo.Count > 0)
                undo.Pop()();
            throw;
        }
    }

    private static int Unmount(string? mountPoint, TextWriter output)
    {
        if (mountPoint is null)
            throw new UsageException("give the mount point: storage umount DIR.");
        string dir = Path.GetFullPath(mountPoint);
        string path = RecordPath(dir);
        if (!File.Exists(path))
            throw new UsageException($"{dir} was not mounted by storage mount (no record in {LiveArrays.Directory}).");
        var record = JsonSerializer.Deserialize(File.ReadAllText(path), CliJson.Default.MountRecord)!;
        if (Mounted(dir))
            ExternalTools.Run("umount", "mount", dir);
        TryRun("losetup", "mount", "-d", record.Loop);
        TryRun("fusermount3", "fuse3", "-u", record.FuseDir);
        WaitExit(record.NbdfusePid);
        File.Delete(path);
        // Another mount of a volume of the same pool still uses the server this mount started.
        bool shared = Directory.EnumerateFiles(Path.GetDirectoryName(path)!, "*.json").Any(other => ReadRecord(other)?.ServerPid == record.ServerPid);
        bool stop = record.StartedServer && !shared;
        if (stop && LiveArrays.Find(record.Disks, record.Array) is { } server)
            StopServer(server);
        string what = record.Export is null ? $"array '{record.Array}'" : $"pool '{record.Array}'";
        output.WriteLine($"unmounted {dir}; {what} {(stop ? "flushed and stopped" : "still served")}");
        return Cli.Ok;
    }

    /// <summary>
    /// Mount options for a snapshot: read-only, and no journal replay (the device is read-only, and a snapshot of a
    /// filesystem that was mounted but not frozen holds a journal that needs one: ext4 and xfs then refuse plain ro).
    /// </summary>
    private static string ReadOnlyOptions(string loop)
    {
        string type;
        try
        {
            type = ExternalTools.Run("blkid", "util-linux", "-o", "value", "-s", "TYPE", loop).Trim();
        }
        catch (ExternalToolException)
        {
            type = "";   // no recognisable filesystem: let mount say so
        }
        return type switch
        {
            "ext3" or "ext4" => "ro,noload",
            "xfs" => "ro,norecovery",
            "btrfs" => "ro,rescue=nologreplay",
            _ => "ro",
        };
    }

    /// <summary>
    /// Freezes (fsfreeze) every filesystem that storage mount mounted from <paramref name="export"/> of the server
    /// with pid <paramref name="serverPid"/>, so that a snapshot taken now holds a clean filesystem; thawed on dispose.
    /// </summary>
    /// <summary>The exports of server (or daemon) <paramref name="serverPid"/> that storage mount has mounted.</summary>
    public static HashSet<string> MountedExports(int serverPid)
    {
        string mounts = Path.Combine(LiveArrays.Directory, "mounts");
        return Directory.Exists(mounts)
            ? [.. Directory.EnumerateFiles(mounts, "*.json").Select(ReadRecord).Where(r => r is { Export: not null } && r.ServerPid == serverPid && Mounted(r.Dir)).Select(r => r!.Export!)]
            : [];
    }

    public static IDisposable Freeze(int serverPid, string export, TextWriter notes)
    {
        string mounts = Path.Combine(LiveArrays.Directory, "mounts");
        var dirs = Directory.Exists(mounts)
            ? Directory.EnumerateFiles(mounts, "*.json").Select(ReadRecord).Where(r => r is not null && r.ServerPid == serverPid && r.Export == export && Mounted(r.Dir)).Select(r => r!.Dir).ToList()
            : [];
        var frozen = new List<string>();
        try
        {
            foreach (string dir in dirs)
            {
                ExternalTools.Run("fsfreeze", "util-linux", "--freeze", dir);
                frozen.Add(dir);
                notes.WriteLine($"froze {dir} for the snapshot");
            }
        }
        catch
        {
            Thaw(frozen);
            throw;
        }
        return new Thawing(frozen);
    }

    private static void Thaw(List<string> dirs)
    {
        foreach (string dir in dirs)
            TryRun("fsfreeze", "util-linux", "--unfreeze", dir);
        dirs.Clear();
    }

    private sealed class Thawing(List<string> dirs) : IDisposable
    {
        public void Dispose() => Thaw(dirs);
    }

    /// <summary>The arguments when <paramref name="condition"/> holds, else none.</summary>
    private static string[] When(bool condition, params string[] args) => condition ? args : [];

    private static MountRecord? ReadRecord(string path)
    {
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(path), CliJson.Default.MountRecord);
        }
        catch (Exception e) when (e is JsonException or IOException)
        {
            return null;
        }
    }

    private static void StopServer(ServerRecord server)
    {
        try
        {
            LiveArrays.Forward(server, [server.Pool is null ? "array" : "pool", "stop", "--disks", string.Join(',', server.Disks)], TextWriter.Null, TextWriter.Null);
        }
        catch (IOException)
        {
            // Already gone.
        }
        catch (System.Net.Sockets.SocketException)
        {
            // Already gone.
        }
        WaitExit(server.Pid, TimeSpan.FromSeconds(60));
    }

    private static void WaitExit(int pid, TimeSpan? timeout = null)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            process.WaitForExit(timeout ?? TimeSpan.FromSeconds(10));
        }
        catch (ArgumentException)
        {
            // Not running.
        }
    }

    private static void TryRun(string tool, string package, params string[] args)
    {
        try
        {
            ExternalTools.Run(tool, package, args);
        }
        catch (ExternalToolException)
        {
            // Best effort while taking things down.
        }
    }

    /// <summary>How to run this program again: the apphost, or dotnet with the assembly.</summary>
    private static string[] SelfCommand()
    {
        string process = Environment.ProcessPath ?? throw new ExternalToolException("cannot find this program's path to start storage serve.");
        return Path.GetFileNameWithoutExtension(process) == "dotnet" ? [process, typeof(MountCommand).Assembly.Location] : [process];
    }

    private static bool Mounted(string dir)
        => File.ReadLines("/proc/self/mounts").Select(line => line.Split(' ')).Any(f => f.Length > 1 && f[1].Replace("\\040", " ", StringComparison.Ordinal) == dir);

    private static string RecordPath(string dir)
    {
        string mounts = Path.Combine(LiveArrays.Ensure(), "mounts");
        Directory.CreateDirectory(mounts);
        return Path.Combine(mounts, Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(dir)))[..16] + ".json");
    }
}
