using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;

namespace Storage.Cli.Tests;

/// <summary>
/// End to end with the real tools: storage serve → nbdfuse → loop device → ext4. Needs root, /dev/fuse, loop
/// devices, nbdfuse (libnbd-bin), fusermount3 (fuse3), e2fsprogs; skipped without them, failed with CI=true.
/// </summary>
public sealed class MountTests : RealTools
{
    [Fact]
    public void An_ext4_filesystem_on_raid6_survives_two_failures_while_mounted_and_checks_clean()
    {
        RequireMountTools();
        string fs = At("fs");
        Directory.CreateDirectory(fs);
        try
        {
            Storage("array", "create", "--level", "6", "--disks", Disks("d", 6), "--spares", $"{At("s0.img")},{At("s1.img")}", "--size", "96M", "--name", "e2e");
            string mounted = Storage("mount", "--disks", At("*.img"), fs, "--mkfs", "ext4");
            Assert.Contains("mounted array 'e2e'", mounted, StringComparison.Ordinal);

            var files = new Dictionary<string, byte[]>();
            var random = new Random(7);
            for (int i = 0; i < 24; i++)
            {
                var data = new byte[random.Next(1, 2_000_000)];
                random.NextBytes(data);
                string path = Path.Combine(fs, $"file{i:00}.bin");
                File.WriteAllBytes(path, data);
                files[path] = SHA256.HashData(data);
            }
            Run("sync");

            // Two members fail while mounted; the live server moves the spares in and rebuilds them.
            Storage("array", "fail", "--disks", At("*.img"), "--member", At("d1.img"));
            Storage("array", "fail", "--disks", At("*.img"), "--member", At("d4.img"));
            File.WriteAllText("/proc/sys/vm/drop_caches", "3");
            foreach (var (path, hash) in files)
                Assert.Equal(hash, SHA256.HashData(File.ReadAllBytes(path)));

            using var status = JsonDocument.Parse(Storage("array", "status", "--disks", At("*.img"), "--json"));
            Assert.Equal("clean", status.RootElement.GetProperty("state").GetString());
            Assert.Contains(status.RootElement.GetProperty("disks").EnumerateArray(), d => d.GetProperty("device").GetString() == At("s0.img"));

            // Unmount the filesystem but keep the loop device to check it, then let storage take the rest down.
            string loop = JsonDocument.Parse(File.ReadAllText(Directory.GetFiles(Path.Combine(RunDir, "mounts"))[0])).RootElement.GetProperty("loop").GetString()!;
            Run("umount", fs);
            string fsck = Run("fsck.ext4", "-fn", loop);   // exit 0: no errors found
            Assert.Contains("Pass 5", fsck, StringComparison.Ordinal);
            Assert.DoesNotContain("Fix?", fsck, StringComparison.Ordinal);
            Assert.Contains("unmounted", Storage("umount", fs), StringComparison.Ordinal);
            Assert.Contains("stopped cleanly", Storage("array", "status", "--disks", At("*.img")), StringComparison.Ordinal);
        }
        finally
        {
            Cleanup(fs);
        }
    }

    [Fact]
    public void A_snapshot_of_a_mounted_pool_volume_mounts_read_only_with_the_files_of_its_moment()
    {
        RequireMountTools();
        string fs = At("fs"), snap = At("snap");
        Directory.CreateDirectory(fs);
        Directory.CreateDirectory(snap);
        try
        {
            Storage("array", "create", "--level", "6", "--disks", Disks("d", 6), "--size", "48M", "--name", "a6");
            Storage("pool", "create", "--disks", At("d*.img"), "--name", "tank");
            Storage("volume", "create", "home", "--size", "8G", "--disks", At("d*.img"));   // thin: far more than the pool
            Assert.Contains("mounted volume 'home' of pool 'tank'", Storage("mount", "--disks", At("d*.img"), "--volume", "home", fs, "--mkfs", "ext4"), StringComparison.Ordinal);
            var data = new byte[3_000_000];
            new Random(11).NextBytes(data);
            File.WriteAllBytes(Path.Combine(fs, "kept.bin"), data);

            // Taken while mounted and being written: the filesystem is frozen for it, so the snapshot is clean.
            Assert.Contains("froze", Storage("snapshot", "create", "home@monday", "--disks", At("d*.img")), StringComparison.Ordinal);
            File.WriteAllText(Path.Combine(fs, "later.txt"), "after the snapshot");
            File.Delete(Path.Combine(fs, "kept.bin"));
            Run("sync");

            Assert.Contains("read-only", Storage("mount", "tank/home@monday", snap), StringComparison.Ordinal);
            Assert.Equal(SHA256.HashData(data), SHA256.HashData(File.ReadAllBytes(Path.Combine(snap, "kept.bin"))));
            Assert.False(File.Exists(Path.Combine(snap, "later.txt")));
            Assert.Throws<IOException>(() => File.WriteAllText(Path.Combine(snap, "x"), "read-only"));
            Assert.True(File.Exists(Path.Combine(fs, "later.txt")));

            Assert.Contains("still served", Storage("umount", snap), StringComparison.Ordinal);
            string loop = JsonDocument.Parse(File.ReadAllText(Directory.GetFiles(Path.Combine(RunDir, "mounts"))[0])).RootElement.GetProperty("loop").GetString()!;
            Run("umount", fs);
            string fsck = Run("fsck.ext4", "-fn", loop);
            Assert.DoesNotContain("Fix?", fsck, StringComparison.Ordinal);
            Assert.Contains("flushed and stopped", Storage("umount", fs), StringComparison.Ordinal);
            Assert.Contains("stopped cleanly", Storage("array", "status", "--disks", At("d*.img")), StringComparison.Ordinal);
        }
        finally
        {
            Cleanup(snap, fs);
        }
    }

    [Fact]
    public void Mount_refuses_a_busy_mount_point_and_changes_nothing()
    {
        string fs = At("busy");
        Directory.CreateDirectory(fs);
        File.WriteAllText(Path.Combine(fs, "keep"), "x");
        File.WriteAllBytes(At("d0.img"), new byte[4096]);   // --disks must name something; the mount point is checked first
        var (code, _, error) = StorageRaw("mount", "--disks", At("*.img"), fs);
        Assert.Equal(2, code);
        Assert.Contains("is not empty", error, StringComparison.Ordinal);
        Assert.Equal("x", File.ReadAllText(Path.Combine(fs, "keep")));
    }

    private static void RequireMountTools()
        => Require("mount test", root: true, "nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "fsck.ext4");
}
