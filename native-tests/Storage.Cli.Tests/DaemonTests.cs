using System.Diagnostics;
using System.Text.Json;

namespace Storage.Cli.Tests;

/// <summary>
/// The node daemon as a user runs it: the real executable in the background, three pools attached (two on single
/// files, one on a RAID-5 array), volumes striped and mirrored across them through the CLI, written and read over NBD
/// with qemu-io, a consistency-group snapshot, kill -9 and restart, and a clean stop.
/// </summary>
public sealed class DaemonTests : RealTools
{
    private string DaemonDir => At("node");

    private string Uri(string export) => $"nbd+unix:///{export}?socket={Path.Combine(DaemonDir, "nbd.sock")}";

    [Fact]
    public void Volumes_across_pools_are_served_snapshotted_at_one_cut_and_survive_kill_9()
    {
        Require("daemon test", root: false, "qemu-io", "nbdinfo");
        Storage("pool", "create", "--device", At("p1.img"), "--size", "96M", "--name", "p1");
        Storage("pool", "create", "--device", At("p2.img"), "--size", "96M", "--name", "p2");
        Storage("array", "create", "--level", "5", "--disks", Disks("r", 3), "--size", "48M", "--name", "r5");
        Storage("pool", "create", "--disks", Disks("r", 3), "--name", "p3");

        var daemon = Start();
        try
        {
            Storage("pool", "attach", "--device", At("p1.img"));
            Storage("pool", "attach", "--device", At("p2.img"));
            Assert.Contains("pool 'p3' is online", Storage("pool", "attach", "--disks", Disks("r", 3)), StringComparison.Ordinal);
            using (var pools = Json("pool", "list", "--json"))
                Assert.Equal(["online", "online", "online"], pools.RootElement.EnumerateArray().Select(p => p.GetProperty("state").GetString()));

            // The daemon holds these disks: offline commands leave them alone, and bad requests change nothing.
            var refused = StorageRaw("pool", "status", "--device", At("p1.img"));
            Assert.Equal(2, refused.Code);
            Assert.Contains("storage daemon of node 'n1'", refused.Error, StringComparison.Ordinal);
            refused = StorageRaw("volume", "create", "x", "--size", "64M", "--pools", "p1,nope");
            Assert.Equal(2, refused.Code);
            Assert.Contains("no pool 'nope'", refused.Error, StringComparison.Ordinal);
            Assert.Equal(2, StorageRaw("volume", "create", "x", "--size", "64M", "--policy", "fastest").Code);

            using (var vm = Json("volume", "create", "vm", "--size", "160M", "--segment-size", "16M", "--group", "db", "--json"))
            {
                Assert.Equal(10, vm.RootElement.GetProperty("segments").GetInt32());
                Assert.Equal(["p1", "p2", "p3"], vm.RootElement.GetProperty("pools").EnumerateArray().Select(p => p.GetString()));
            }
            using (var mirror = Json("volume", "create", "logs", "--size", "32M", "--segment-size", "16M", "--mirror", "--pools", "p1,p2", "--group", "db", "--json"))
                Assert.Equal(2, mirror.RootElement.GetProperty("copies").GetInt32());

            // Writes cross segment (and so pool) boundaries; the mirror's bytes read back from either copy.
            Run("qemu-io", "-f", "raw", "-c", "write -P 0xab 15M 34M", Uri("vm"));
            Run("qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 32M", Uri("logs"));
            Run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0xab 15M 34M", "-c", "read -P 0 0 15M", Uri("vm"));
            Run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0x5a 0 32M", Uri("logs"));
            using (var listed = Json("volume", "list", "--json"))
            {
                var split = listed.RootElement.EnumerateArray().Single(v => v.GetProperty("name").GetString() == "logs").GetProperty("readsByPool");
                Assert.Equal(["p1", "p2"], split.EnumerateObject().Select(p => p.Name));
                Assert.True(split.EnumerateObject().Sum(p => p.Value.GetInt64()) > 0, $"the mirror's reads were not counted: {split}");
            }

            // One cut over the group: each volume gets a read-only export of what it held then.
            Assert.Contains("at one cut", Storage("snapshot", "create", "s1", "--group", "db"), StringComparison.Ordinal);
            string list = Run("nbdinfo", "--list", $"nbd+unix://?socket={Path.Combine(DaemonDir, "nbd.sock")}");
            foreach (string export in new[] { "vm", "logs", "vm@s1", "logs@s1" })
                Assert.Contains($"export=\"{export}\"", list, StringComparison.Ordinal);
            Run("qemu-io", "-f", "raw", "-c", "write -P 0xcd 20M 8M", Uri("vm"));
            Run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0xab 15M 34M", Uri("vm@s1"));
            var (code, output) = RunRaw("qemu-io", "-f", "raw", "-c", "write -P 0xee 0 1M", Uri("vm@s1"));
            Assert.True(code != 0 || output.Contains("failed", StringComparison.OrdinalIgnoreCase), $"a write to a snapshot must fail: {output}");

            using (var status = Json("cluster", "status", "--json"))
            {
                var root = status.RootElement;
                Assert.Equal(JsonValueKind.Number, root.GetProperty("leader").ValueKind);
                Assert.Equal(3, root.GetProperty("replicas").GetArrayLength());
                Assert.Equal(3, root.GetProperty("pools").EnumerateArray().Count(p => p.GetProperty("state").GetString() == "online"));
                Assert.Equal(0, root.GetProperty("inDoubt").GetArrayLength());
                Assert.Equal(4, root.GetProperty("exports").GetInt32());
            }
            // A resize withdraws the export and offers it again at the new size.
            using (var grown = Json("volume", "resize", "logs", "--size", "48M", "--json"))
                Assert.Equal(3, grown.RootElement.GetProperty("segments").GetInt32());
            Run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0x5a 0 32M", "-c", "read -P 0 32M 16M", Uri("logs"));
            refused = StorageRaw("pool", "detach", "p3");
            Assert.Equal(2, refused.Code);
            Assert.Contains("vm", refused.Error, StringComparison.Ordinal);

            // kill -9, then a restart finds every pool, volume and snapshot again from the catalogue.
            daemon.Kill();
            Assert.True(daemon.WaitForExit(TimeSpan.FromSeconds(30)));
            daemon.Dispose();
            daemon = Start();
            Run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0xab 15M 5M", "-c", "read -P 0xcd 20M 8M", "-c", "read -P 0xab 28M 21M", Uri("vm"));
            Run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0x5a 0 32M", Uri("logs"));
            Run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0xab 15M 34M", Uri("vm@s1"));
            using (var snapshots = Json("snapshot", "list", "--json"))
                Assert.Equal(["logs@s1", "vm@s1"], snapshots.RootElement.EnumerateArray().Select(s => s.GetProperty("fullName").GetString()).Order(StringComparer.Ordinal));

            // Deleting frees the pools; then a pool with nothing on it may leave.
            Storage("volume", "delete", "logs");
            Storage("volume", "delete", "vm");
            Assert.Contains("detached", Storage("pool", "detach", "p3"), StringComparison.Ordinal);

            Assert.Contains("stopping", Storage("daemon", "stop"), StringComparison.Ordinal);
            Assert.True(daemon.WaitForExit(TimeSpan.FromMinutes(1)), "storage daemon did not stop");
            Assert.Equal(0, daemon.ExitCode);
        }
        finally
        {
            daemon.Dispose();
            Cleanup();
        }
        string log = File.ReadAllText(At("daemon.log"));
        Assert.Contains("node 'n1' stopped cleanly", log, StringComparison.Ordinal);

        // Offline again: the detached array-backed pool was closed cleanly and opens without the daemon.
        Assert.Contains("stopped cleanly", Storage("array", "status", "--disks", Disks("r", 3)), StringComparison.Ordinal);
        Storage("pool", "status", "--disks", Disks("r", 3));
    }

    [Fact]
    public void Without_a_daemon_its_verbs_say_how_to_start_one_and_sockets_are_owner_only()
    {
        Require("daemon test", root: false);
        Assert.SkipWhen(OperatingSystem.IsWindows(), "Unix sockets and modes");
        var refused = StorageRaw("volume", "create", "x", "--size", "1G");
        Assert.Equal(2, refused.Code);
        Assert.Contains("storage daemon --dir", refused.Error, StringComparison.Ordinal);
        Assert.Equal(2, StorageRaw("daemon").Code);
        refused = StorageRaw("volume", "create", "x", "--size", "1G", "--device", At("pool.img"), "--mirror");
        Assert.Equal(2, refused.Code);
        Assert.Contains("--mirror is for volumes across the daemon's pools", refused.Error, StringComparison.Ordinal);

        var daemon = Start();
        try
        {
            if (OperatingSystem.IsWindows())
                return;
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(DaemonDir, "control.sock")));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(DaemonDir));
            // Records in a run directory others can write are not trusted (they could point at someone else's socket).
            File.SetUnixFileMode(RunDir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute);
            Assert.Contains("no storage daemon is running", StorageRaw("volume", "list").Error, StringComparison.Ordinal);
            File.SetUnixFileMode(RunDir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            var second = StorageRaw("daemon", "--dir", DaemonDir);
            Assert.Equal(1, second.Code);
            Assert.Contains("another storage daemon runs", second.Output, StringComparison.Ordinal);
            refused = StorageRaw("volume", "create", "x", "--size", "1G");
            Assert.Equal(2, refused.Code);
            Assert.Contains("No pool is online", refused.Error, StringComparison.Ordinal);
            Storage("daemon", "stop");
            Assert.True(daemon.WaitForExit(TimeSpan.FromMinutes(1)));
            Assert.Equal(0, daemon.ExitCode);
        }
        finally
        {
            daemon.Dispose();
            Cleanup();
        }
    }

    [Fact]
    public void A_volume_of_the_daemon_mounts_with_a_filesystem_and_keeps_its_files()
    {
        Require("daemon mount test", root: true, "nbdfuse", "fusermount3", "losetup", "mkfs.ext4");
        Storage("pool", "create", "--device", At("p1.img"), "--size", "256M", "--name", "p1");
        Storage("pool", "create", "--device", At("p2.img"), "--size", "256M", "--name", "p2");
        string mountPoint = At("mnt");
        Directory.CreateDirectory(mountPoint);
        var daemon = Start();
        try
        {
            Storage("pool", "attach", "--device", At("p1.img"));
            Storage("pool", "attach", "--device", At("p2.img"));
            Storage("volume", "create", "fs", "--size", "128M", "--segment-size", "32M");
            Assert.Contains("mounted volume 'fs' of daemon node 'n1'", Storage("mount", "--volume", "fs", mountPoint, "--mkfs", "ext4"), StringComparison.Ordinal);
            File.WriteAllText(Path.Combine(mountPoint, "hello.txt"), "across pools");
            Assert.Contains($"froze {mountPoint}", Storage("snapshot", "create", "fs@clean"), StringComparison.Ordinal);
            var busy = StorageRaw("volume", "resize", "fs", "--size", "256M");   // would cut the mount's NBD connection
            Assert.Equal(2, busy.Code);
            Assert.Contains("while NBD clients use fs", busy.Error, StringComparison.Ordinal);
            Storage("umount", mountPoint);
            Storage("mount", "--volume", "fs", mountPoint);
            Assert.Equal("across pools", File.ReadAllText(Path.Combine(mountPoint, "hello.txt")));
            Storage("umount", mountPoint);
            Storage("daemon", "stop");
            Assert.True(daemon.WaitForExit(TimeSpan.FromMinutes(1)));
        }
        finally
        {
            daemon.Dispose();
            Cleanup(mountPoint);
        }
    }

    /// <summary>
    /// The daemon is killed (SIGKILL, by itself: STORAGE_DAEMON_KILL_AT) at a step of a volume create; the restarted
    /// daemon finishes a decided transaction and forgets an undecided one: all or nothing, nothing in doubt, and the
    /// pools hold exactly the committed segments.
    /// </summary>
    [Theory]
    [InlineData("after-begin", false)]
    [InlineData("p2:after-prepare", false)]
    [InlineData("after-prepare", false)]
    [InlineData("after-decide", true)]
    [InlineData("p1:after-commit", true)]
    public void A_daemon_killed_inside_a_volume_create_finishes_or_forgets_it_on_restart(string step, bool committed)
    {
        Require("daemon crash test", root: false, "qemu-io");
        Storage("pool", "create", "--device", At("p1.img"), "--size", "64M", "--name", "p1");
        Storage("pool", "create", "--device", At("p2.img"), "--size", "64M", "--name", "p2");
        var daemon = Start(new Dictionary<string, string> { ["STORAGE_DAEMON_KILL_AT"] = step });
        try
        {
            Storage("pool", "attach", "--device", At("p1.img"));
            Storage("pool", "attach", "--device", At("p2.img"));
            var cut = StorageRaw("volume", "create", "vm", "--size", "64M", "--segment-size", "16M");
            Assert.Equal(1, cut.Code);
            Assert.Contains("closed the connection without answering", cut.Error, StringComparison.Ordinal);
            Assert.True(daemon.WaitForExit(TimeSpan.FromSeconds(30)), "the daemon did not die at " + step);
            daemon.Dispose();

            daemon = Start();
            using (var status = Json("cluster", "status", "--json"))
            {
                Assert.Equal(0, status.RootElement.GetProperty("inDoubt").GetArrayLength());
                Assert.Equal(committed ? 4 : 0, status.RootElement.GetProperty("pools").EnumerateArray().Sum(p => p.GetProperty("segments").GetInt32()));
            }
            using (var volumes = Json("volume", "list", "--json"))
                Assert.Equal(committed ? ["vm"] : [], volumes.RootElement.EnumerateArray().Select(v => v.GetProperty("name").GetString()));
            if (!committed)
                Storage("volume", "create", "vm", "--size", "64M", "--segment-size", "16M");   // nothing staged is left in the way
            Run("qemu-io", "-f", "raw", "-c", "write -P 0x77 8M 16M", "-c", "read -P 0x77 8M 16M", Uri("vm"));
            Storage("daemon", "stop");
            Assert.True(daemon.WaitForExit(TimeSpan.FromMinutes(1)));
        }
        finally
        {
            daemon.Dispose();
            Cleanup();
        }
        // Each pool holds its two segments and nothing staged.
        foreach (string pool in new[] { "p1.img", "p2.img" })
        {
            using var status = JsonDocument.Parse(Storage("pool", "status", "--device", At(pool), "--json"));
            Assert.Equal(2, status.RootElement.GetProperty("volumes").GetInt32());
        }
    }

    [Fact]
    public void A_volume_moves_off_a_pool_while_fio_writes_through_one_connection_and_fio_verifies_every_block()
    {
        Require("segment move test", root: false, "fio");
        Process? fio = null;
        Storage("pool", "create", "--device", At("p1.img"), "--size", "128M", "--name", "p1");
        Storage("pool", "create", "--device", At("p2.img"), "--size", "128M", "--name", "p2");
        var daemon = Start();
        try
        {
            Storage("pool", "attach", "--device", At("p1.img"));
            Storage("pool", "attach", "--device", At("p2.img"));
            using (var created = Json("volume", "create", "mv", "--size", "64M", "--segment-size", "16M", "--json"))
                Assert.Equal(["p1", "p2"], created.RootElement.GetProperty("pools").EnumerateArray().Select(p => p.GetString()));
            var refused = StorageRaw("volume", "move", "mv", "--segment", "9", "--to", "p2");
            Assert.Equal(2, refused.Code);
            Assert.Contains("no segment 9", refused.Error, StringComparison.Ordinal);
            Assert.Contains("no segment move in progress", StorageRaw("volume", "move", "mv", "--cancel").Error, StringComparison.Ordinal);
            Assert.Contains("holds segments of volume(s) mv", StorageRaw("pool", "detach", "p1").Error, StringComparison.Ordinal);

            // fio writes every block once and then reads each back, on one NBD connection, while p1's segments move to p2.
            var start = new ProcessStartInfo("fio")
            {
                ArgumentList = { "--name=mv", "--ioengine=nbd", $"--uri={Uri("mv")}", "--rw=randwrite", "--bs=4k", "--iodepth=8", "--size=64M",
                    "--verify=crc32c", "--verify_fatal=1", "--rate_iops=3000", $"--output={At("fio.log")}" },
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            fio = Process.Start(start)!;
            Thread.Sleep(1500);
            using (var moved = Json("volume", "move", "mv", "--from", "p1", "--to", "p2", "--json"))
            {
                Assert.Equal(["p2"], moved.RootElement.GetProperty("pools").EnumerateArray().Select(p => p.GetString()));
                Assert.False(moved.RootElement.TryGetProperty("moving", out var moving) && moving.ValueKind != JsonValueKind.Null, "a move is still in progress");
            }
            Assert.False(fio.HasExited, "fio ended before the move did: the move did not run under load");
            Assert.True(fio.WaitForExit(TimeSpan.FromMinutes(3)), "fio hung");
            Assert.True(fio.ExitCode == 0, $"fio failed: {File.ReadAllText(At("fio.log"))}");
            using (var pools = Json("pool", "list", "--json"))
            {
                var segments = pools.RootElement.EnumerateArray().ToDictionary(p => p.GetProperty("name").GetString()!, p => p.GetProperty("segments").GetInt32());
                Assert.Equal(0, segments["p1"]);
                Assert.Equal(4, segments["p2"]);
            }
            Storage("pool", "detach", "p1");   // nothing of the volume is left there
        }
        finally
        {
            if (fio is { HasExited: false })
                fio.Kill();
            fio?.Dispose();
            daemon.Dispose();
            Cleanup();
        }
    }

    [Fact]
    public void A_mirror_is_served_without_a_pool_that_is_away_resyncs_under_fio_when_it_is_back_and_the_other_copy_then_serves_alone()
    {
        Require("degraded mirror test", root: false, "fio", "qemu-io");
        Process? fio = null;
        Storage("pool", "create", "--device", At("p1.img"), "--size", "96M", "--name", "p1");
        Storage("pool", "create", "--device", At("p2.img"), "--size", "96M", "--name", "p2");
        var daemon = Start();
        try
        {
            Storage("pool", "attach", "--device", At("p1.img"));
            Storage("pool", "attach", "--device", At("p2.img"));
            Storage("volume", "create", "m", "--size", "64M", "--segment-size", "16M", "--mirror", "--pools", "p1,p2");
            StopDaemon(daemon);

            // p2's file is away when the daemon starts: after --degrade-after the volume is served from p1 alone.
            File.Move(At("p2.img"), At("p2.away"));
            daemon = Start(null, "--degrade-after", "1");
            WaitFor(() => Stale("m").Count == 4 && Served("m"), "the volume to be offered without its copies on p2");
            Assert.All(Stale("m"), s => Assert.Equal(("p2", "stale"), s));
            Assert.Contains("p2: 4 stale", Storage("volume", "list"), StringComparison.Ordinal);
            Run("qemu-io", "-f", "raw", "-c", "write -P 0x11 0 64M", Uri("m"));

            // fio writes every block once while p2 comes back: its copies are filled again under those writes.
            string[] job = ["--name=m", "--ioengine=nbd", $"--uri={Uri("m")}", "--rw=randwrite", "--bs=4k", "--iodepth=8", "--size=64M", "--verify=crc32c"];
            var start = new ProcessStartInfo("fio") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string arg in job.Concat(["--do_verify=0", "--rate_iops=3000", $"--output={At("fio.log")}"]))
                start.ArgumentList.Add(arg);
            fio = Process.Start(start)!;
            Thread.Sleep(1500);
            File.Move(At("p2.away"), At("p2.img"));
            Assert.Contains("pool 'p2' is online", Storage("pool", "attach", "--device", At("p2.img")), StringComparison.Ordinal);
            WaitFor(() => Stale("m").Count == 0, "the resync of p2's copies");
            Assert.False(fio.HasExited, "fio ended before the resync did: the resync did not run under writes");
            Assert.True(fio.WaitForExit(TimeSpan.FromMinutes(3)), "fio hung");
            Assert.True(fio.ExitCode == 0, $"fio failed: {File.ReadAllText(At("fio.log"))}");
            StopDaemon(daemon);
            string log = File.ReadAllText(At("daemon.log"));
            Assert.Contains("are stale (not answering", log, StringComparison.Ordinal);
            Assert.Contains("resync finished", log, StringComparison.Ordinal);

            // Now p1 is away: p2 alone must hold every block fio wrote.
            File.Move(At("p1.img"), At("p1.away"));
            daemon = Start(null, "--degrade-after", "1");
            WaitFor(() => Stale("m").Count == 4 && Served("m"), "the volume to be offered without its copies on p1");
            Assert.All(Stale("m"), s => Assert.Equal("p1", s.Pool));
            var (code, output) = RunRaw("fio", [.. job, "--verify_only", "--verify_fatal=1"]);
            Assert.True(code == 0, $"fio's verify failed on the resynchronized copy: {output}");
            Storage("daemon", "stop");
            Assert.True(daemon.WaitForExit(TimeSpan.FromMinutes(1)));
        }
        finally
        {
            if (fio is { HasExited: false })
                fio.Kill();
            fio?.Dispose();
            daemon.Dispose();
            Cleanup();
        }
    }

    [Fact]
    public void The_stale_copies_on_a_lost_pool_are_replaced_on_another_and_the_old_ones_deleted_when_it_is_back()
    {
        Require("mirror replacement test", root: false, "qemu-io");
        foreach (string pool in new[] { "p1", "p2", "p3" })
            Storage("pool", "create", "--device", At($"{pool}.img"), "--size", "64M", "--name", pool);
        var daemon = Start();
        try
        {
            Storage("pool", "attach", "--device", At("p1.img"));
            Storage("pool", "attach", "--device", At("p2.img"));
            Storage("volume", "create", "m", "--size", "32M", "--segment-size", "16M", "--mirror");
            Run("qemu-io", "-f", "raw", "-c", "write -P 0x31 0 32M", Uri("m"));
            StopDaemon(daemon);

            File.Move(At("p2.img"), At("p2.away"));
            daemon = Start(null, "--degrade-after", "1");
            WaitFor(() => Stale("m").Count == 2 && Served("m"), "the volume to be offered without its copies on p2");
            Run("qemu-io", "-f", "raw", "-c", "write -P 0x32 0 16M", Uri("m"));
            Storage("pool", "attach", "--device", At("p3.img"));
            var refused = StorageRaw("volume", "move", "m", "--from", "p1", "--to", "p3");
            Assert.Equal(2, refused.Code);
            Assert.Contains("stale", refused.Error, StringComparison.Ordinal);   // p1 holds the current copies: no move while degraded
            Assert.Contains("replaced the 2 stale copy(ies) of volume 'm' on pool 'p2' by new copies on pool 'p3'", Storage("volume", "move", "m", "--from", "p2", "--to", "p3"),
                StringComparison.Ordinal);
            WaitFor(() => Stale("m").Count == 0, "the new copies on p3 to be resynchronized");
            using (var pools = Json("pool", "list", "--json"))
            {
                var segments = pools.RootElement.EnumerateArray().ToDictionary(p => p.GetProperty("name").GetString()!, p => p.GetProperty("segments").GetInt32());
                Assert.Equal(new Dictionary<string, int> { ["p1"] = 2, ["p2"] = 0, ["p3"] = 2 }, segments);
            }

            // p2 comes back: the old copies are deleted from it, and it may leave.
            File.Move(At("p2.away"), At("p2.img"));
            Storage("pool", "attach", "--device", At("p2.img"));
            Assert.Contains("pool p2: deleted segment", File.ReadAllText(At("daemon.log")), StringComparison.Ordinal);
            Storage("pool", "detach", "p2");
            using (var status = JsonDocument.Parse(Storage("pool", "status", "--device", At("p2.img"), "--json")))
                Assert.Equal(0, status.RootElement.GetProperty("volumes").GetInt32());
            StopDaemon(daemon);

            // p3's copies alone hold every byte.
            File.Move(At("p1.img"), At("p1.away"));
            daemon = Start(null, "--degrade-after", "1");
            WaitFor(() => Stale("m").Count == 2 && Served("m"), "the volume to be offered from p3 alone");
            Run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0x32 0 16M", "-c", "read -P 0x31 16M 16M", Uri("m"));
            Storage("daemon", "stop");
            Assert.True(daemon.WaitForExit(TimeSpan.FromMinutes(1)));
        }
        finally
        {
            daemon.Dispose();
            Cleanup();
        }
    }

    /// <summary>The stale copies of <paramref name="volume"/> as 'storage volume list --json' has them.</summary>
    private List<(string Pool, string State)> Stale(string volume) => StaleCopies(Storage("volume", "list", "--json"), volume);

    /// <summary>Stops <paramref name="daemon"/> with 'storage daemon stop' and waits for it to exit.</summary>
    private void StopDaemon(Process daemon)
    {
        Storage("daemon", "stop");
        Assert.True(daemon.WaitForExit(TimeSpan.FromMinutes(1)), "storage daemon did not stop");
        daemon.Dispose();
    }

    /// <summary>Whether the daemon exports <paramref name="volume"/> (its read counters are listed only then).</summary>
    private bool Served(string volume)
    {
        using var listed = Json("volume", "list", "--json");
        return listed.RootElement.EnumerateArray().Single(v => v.GetProperty("name").GetString() == volume).TryGetProperty("readsByPool", out var reads)
            && reads.ValueKind == JsonValueKind.Object;
    }

    private Process Start(IReadOnlyDictionary<string, string>? environment = null, params string[] options)
    {
        var daemon = StartStorage(At("daemon.log"), environment ?? new Dictionary<string, string>(), ["daemon", "--dir", DaemonDir, .. options]);
        WaitFor(() => PublishedPid() == daemon.Id || daemon.HasExited, "storage daemon to start");
        Assert.False(daemon.HasExited, $"storage daemon exited: {File.ReadAllText(At("daemon.log"))}");
        return daemon;
    }

    /// <summary>The pid in the daemon's record (a daemon killed with -9 leaves its record behind).</summary>
    private int PublishedPid()
    {
        try
        {
            using var record = JsonDocument.Parse(File.ReadAllText(Path.Combine(RunDir, "n1.daemon")));
            return record.RootElement.GetProperty("pid").GetInt32();
        }
        catch (Exception e) when (e is IOException or JsonException)
        {
            return -1;
        }
    }

    private JsonDocument Json(params string[] args) => JsonDocument.Parse(Storage(args));
}
