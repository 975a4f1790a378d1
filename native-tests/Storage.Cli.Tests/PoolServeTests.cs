using System.Diagnostics;
using System.Text.Json;

namespace Storage.Cli.Tests;

/// <summary>
/// storage serve of a pool on RAID-6, driven by real NBD clients (qemu-io, nbdinfo): every volume and snapshot is an
/// export, made live by the CLI; holes show in block status; a full pool answers ENOSPC; a snapshot refuses writes.
/// </summary>
public sealed class PoolServeTests : RealTools
{
    private string Socket => Path.Combine(RunDir, "tank.nbd");

    private string Uri(string export) => $"nbd+unix:///{export}?socket={Socket}";

    [Fact]
    public void Volumes_and_snapshots_are_exports_that_follow_the_cli_live()
    {
        Require("pool serve test", root: false, "qemu-io", "qemu-img", "nbdinfo", "nbdcopy");
        Storage("array", "create", "--level", "6", "--disks", Disks("d", 6), "--size", "24M", "--name", "a6");
        Storage("pool", "create", "--disks", At("d*.img"), "--name", "tank");
        Storage("volume", "create", "vm1", "--size", "4G", "--disks", At("d*.img"));
        using var server = Serve();
        try
        {
            Assert.Contains("export=\"vm1\"", Run("nbdinfo", "--list", $"nbd+unix://?socket={Socket}"), StringComparison.Ordinal);

            // Only what was written is data; the rest of the 4 GiB is a hole that reads as zeros.
            Run("qemu-io", "-f", "raw", "-c", "write -P 0xab 1M 2M", Uri("vm1"));
            var map = Map("vm1");
            Assert.Contains((0L, 1L << 20, true), map);
            Assert.Contains((1L << 20, 2L << 20, false), map);
            Assert.Contains((3L << 20, (4L << 30) - (3L << 20), true), map);
            Run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0 3M 64M", Uri("vm1"));
            using (var qemuMap = JsonDocument.Parse(Run("qemu-img", "map", "--output=json", "-f", "raw", Uri("vm1"))))
            {
                var data = qemuMap.RootElement.EnumerateArray().Where(e => e.GetProperty("data").GetBoolean()).Select(e => (e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64()));
                Assert.Equal([(1L << 20, 2L << 20)], data);
            }
            // nbdcopy skips the holes: the 4 GiB copy is a sparse file holding about the 2 MiB written.
            Run("nbdcopy", Uri("vm1"), At("copy.img"));
            Assert.Equal(4L << 30, new FileInfo(At("copy.img")).Length);
            Assert.True(AllocatedBytes(At("copy.img")) < 8L << 20, $"nbdcopy wrote {AllocatedBytes(At("copy.img"))} bytes");
            File.Delete(At("copy.img"));

            // A snapshot made while serving is an export at once, read-only, and keeps its contents.
            Storage("snapshot", "create", "vm1@before", "--disks", At("d*.img"));
            Assert.Contains("export=\"vm1@before\"", Run("nbdinfo", "--list", $"nbd+unix://?socket={Socket}"), StringComparison.Ordinal);
            Run("qemu-io", "-f", "raw", "-c", "write -P 0xcd 1M 1M", Uri("vm1"));
            Run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0xab 1M 2M", Uri("vm1@before"));
            var (code, output) = RunRaw("qemu-io", "-f", "raw", "-c", "write -P 0xee 1M 1M", Uri("vm1@before"));
            Assert.True(code != 0 || output.Contains("failed", StringComparison.OrdinalIgnoreCase), $"a write to a snapshot must fail: {output}");
            Run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0xab 1M 2M", Uri("vm1@before"));

            // Filling the pool: the write fails with ENOSPC, nothing already written is lost; a discard gives the space back.
            Storage("volume", "create", "big", "--size", "1G", "--disks", At("d*.img"));
            (code, output) = RunRaw("qemu-io", "-f", "raw", "-c", "write -P 0x11 0 200M", Uri("big"));
            Assert.Contains("No space left on device", output, StringComparison.Ordinal);
            Run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0xcd 1M 1M", "-c", "read -P 0xab 2M 1M", Uri("vm1"));
            Run("qemu-io", "-f", "raw", "-c", "discard 0 200M", Uri("big"));
            WaitFor(() => Status().GetProperty("freeBytes").GetInt64() > 64L << 20, "the discarded space to be free again");
            Run("qemu-io", "-f", "raw", "-c", "write -P 0x22 0 32M", Uri("big"));

            // Deleting withdraws the export.
            Storage("volume", "delete", "big", "--disks", At("d*.img"));
            Assert.DoesNotContain("export=\"big\"", Run("nbdinfo", "--list", $"nbd+unix://?socket={Socket}"), StringComparison.Ordinal);

            Assert.Contains("stopping", Storage("pool", "stop", "--disks", At("d*.img")), StringComparison.Ordinal);
            Assert.True(server.WaitForExit(TimeSpan.FromMinutes(1)), "storage serve did not stop");
            Assert.Equal(0, server.ExitCode);
        }
        finally
        {
            Cleanup();
        }

        // Offline again: the data and the snapshot are there, and the array was stopped cleanly.
        Assert.Contains("stopped cleanly", Storage("array", "status", "--disks", At("d*.img")), StringComparison.Ordinal);
        using var snapshots = JsonDocument.Parse(Storage("snapshot", "list", "--disks", At("d*.img"), "--json"));
        Assert.Equal(["vm1@before"], snapshots.RootElement.EnumerateArray().Select(s => s.GetProperty("fullName").GetString()));
    }

    /// <summary>Bytes the file occupies on disk (stat's blocks).</summary>
    private static long AllocatedBytes(string path) => long.Parse(Run("stat", "-c", "%b", path).Trim(), System.Globalization.CultureInfo.InvariantCulture) * 512;

    private Process Serve()
    {
        var server = StartStorage(At("serve.log"), "serve", "--disks", At("d*.img"));
        WaitFor(() => File.Exists(Path.Combine(RunDir, "tank.json")) || server.HasExited, "storage serve to start");
        Assert.False(server.HasExited, $"storage serve exited: {File.ReadAllText(At("serve.log"))}");
        return server;
    }

    private JsonElement Status()
    {
        using var document = JsonDocument.Parse(Storage("pool", "status", "--disks", At("d*.img"), "--json"));
        return document.RootElement.Clone();
    }

    /// <summary>nbdinfo --map as (offset, length, hole).</summary>
    private List<(long Offset, long Length, bool Hole)> Map(string export)
        => [.. Run("nbdinfo", "--map", Uri(export)).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Select(f => (long.Parse(f[0], System.Globalization.CultureInfo.InvariantCulture), long.Parse(f[1], System.Globalization.CultureInfo.InvariantCulture), f[3].Contains("hole", StringComparison.Ordinal)))];
}
