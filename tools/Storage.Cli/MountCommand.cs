using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Storage.CommandLine;

namespace Storage.Cli;

/// <summary>What <c>storage mount</c> set up, so <c>storage umount</c> can take it down in reverse.</summary>
internal sealed record MountRecord(string Dir, string Array, string Loop, string FuseDir, int NbdfusePid, bool StartedServer, int ServerPid, IReadOnlyList<string> Disks);

/// <summary>
/// <c>storage mount</c>: exposes an array to the kernel and mounts its filesystem. There is no /dev/nbd here, so
/// the path is: our NBD server (a running <c>storage serve</c>, started in the background when needed) →
/// <c>nbdfuse</c>, which presents the export as one file in a FUSE mount → a loop device on that file with direct
/// I/O → <c>mount</c>. <c>storage umount</c> unmounts, detaches the loop device, unmounts FUSE and, when mount
/// started the server, stops it cleanly (flushed, marked clean).
/// </summary>
internal static class MountCommand
{
    public static Command BuildMount()
    {
        var dir = new Argument<string?>("DIR") { Description = "an empty directory to mount on", Arity = ArgumentArity.ZeroOrOne };
        var disks = CliOptions.Paths("--disks", "the array's disks (storage serve is started for them when none runs)");
        var name = CliOptions.Text("--name", "an array that storage serve already serves", "ARRAY");
        var mkfs = CliOptions.Text("--mkfs", "make a filesystem first: ext4, ext3, ext2, xfs or btrfs", "FS");
        var command = new Command("mount", "mount the array's filesystem on DIR (NBD → nbdfuse → loop device → mount)");
        command.Arguments.Add(dir);
        command.Options.Add(disks);
        command.Options.Add(name);
        command.Options.Add(mkfs);
        command.SetAction(p => Mount(p.GetValue(dir), p.GetValue(disks)!, p.GetValue(name), p.GetValue(mkfs), p.Out()));
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

    private static int Mount(string? mountPoint, IReadOnlyList<string> disks, string? name, string? fs, TextWriter output)
    {
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
        if (disks.Count == 0 && name is null)
            throw new UsageException("say which array: --disks A,B,… (started for you) or --name ARRAY (already served by storage serve).");
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
            var server = LiveArrays.Find(disks, name);
            bool started = false;
            if (server is null)
            {
                if (disks.Count == 0)
                    throw new UsageException($"no storage serve runs an array named '{name}'; pass --disks to start one.");
                string log = Path.Combine(run, $"serve-{Environment.ProcessId}.log");
                var self = SelfCommand();
                var process = ExternalTools.Start(self[0], [.. self.Skip(1), "serve", "--disks", string.Join(',', disks)], log);
                ExternalTools.WaitFor(() => LiveArrays.Find(disks) is not null, TimeSpan.FromSeconds(60), "starting storage serve", process, log);
                server = LiveArrays.Find(disks)!;
                started = true;
                undo.Push(() => StopServer(server));
                output.WriteLine($"started storage serve for array '{server.Name}' (pid {server.Pid}, log {log})");
            }
            string fuseDir = Path.Combine(run, $"{server.Name}.fuse");
            Directory.CreateDirectory(fuseDir);
            string pidFile = Path.Combine(run, $"{server.Name}.nbdfuse.pid");
            File.Delete(pidFile);
            var fuse = ExternalTools.Start(nbdfuse, ["-P", pidFile, fuseDir, "--unix", server.NbdSocket], Path.Combine(run, $"{server.Name}.nbdfuse.log"));
            undo.Push(() => { TryRun("fusermount3", "fuse3", "-u", fuseDir); WaitExit(fuse.Id); });
            ExternalTools.WaitFor(() => File.Exists(pidFile) && File.Exists(Path.Combine(fuseDir, "nbd")), TimeSpan.FromSeconds(30), "starting nbdfuse", fuse, Path.Combine(run, $"{server.Name}.nbdfuse.log"));
            string loop = ExternalTools.Run("losetup", "mount", "--find", "--show", "--direct-io=on", Path.Combine(fuseDir, "nbd"));
            undo.Push(() => TryRun("losetup", "mount", "-d", loop));
            if (fs is not null)
            {
                output.WriteLine($"making a {fs} filesystem on {loop}");
                ExternalTools.Run($"mkfs.{fs}", "e2fsprogs", fs.StartsWith("ext", StringComparison.Ordinal) ? ["-q", "-F", loop] : ["-q", "-f", loop]);
            }
            ExternalTools.Run("mount", "mount", loop, dir);
            var record = new MountRecord(dir, server.Name, loop, fuseDir, fuse.Id, started, server.Pid, server.Disks);
            File.WriteAllText(RecordPath(dir), JsonSerializer.Serialize(record, CliJson.Default.MountRecord));
            output.WriteLine($"mounted array '{server.Name}' on {dir} ({loop} ← {fuseDir}/nbd ← {server.NbdSocket})");
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
        if (record.StartedServer && LiveArrays.Find(record.Disks, record.Array) is { } server)
            StopServer(server);
        File.Delete(path);
        output.WriteLine($"unmounted {dir}; array '{record.Array}' {(record.StartedServer ? "flushed and stopped" : "still served")}");
        return Cli.Ok;
    }

    private static void StopServer(ServerRecord server)
    {
        try
        {
            LiveArrays.Forward(server, ["array", "stop", "--disks", string.Join(',', server.Disks)], TextWriter.Null, TextWriter.Null);
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
