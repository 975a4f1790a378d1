using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;

namespace Storage.Cli.Tests;

/// <summary>
/// End to end with the real tools: storage serve → nbdfuse → loop device → ext4. Needs root, /dev/fuse, loop
/// devices, nbdfuse (libnbd-bin), fusermount3 (fuse3), e2fsprogs; skipped without them, failed with CI=true.
/// </summary>
public sealed class MountTests : ScratchFolder
{
    private static readonly string[] ToolDirectories = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"];

    private string RunDir => At("run");

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
    {
        var missing = new List<string>();
        if (!Environment.IsPrivilegedProcess)
            missing.Add("root");
        if (!File.Exists("/dev/fuse"))
            missing.Add("/dev/fuse");
        if (!File.Exists("/dev/loop-control"))
            missing.Add("/dev/loop-control");
        foreach (var tool in new[] { "nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "fsck.ext4" })
        {
            if (!ToolDirectories.Any(d => File.Exists(Path.Combine(d, tool))))
                missing.Add(tool);
        }
        if (missing.Count == 0)
            return;
        string reason = $"mount test needs {string.Join(", ", missing)}";
        if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
            Assert.Fail($"CI must provide this: {reason}");
        Assert.Skip(reason);
    }

    private string Storage(params string[] args)
    {
        var (code, output, error) = StorageRaw(args);
        Assert.True(code == 0, $"storage {string.Join(' ', args)} exited {code}:\n{output}\n{error}");
        return output;
    }

    /// <summary>The real executable: mount starts storage serve as a separate process.</summary>
    private (int Code, string Output, string Error) StorageRaw(params string[] args)
    {
        var start = new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "storage")) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
            start.ArgumentList.Add(arg);
        start.Environment["STORAGE_RUN_DIR"] = RunDir;
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(3)), $"storage {string.Join(' ', args)} hung");
        return (process.ExitCode, output.Result, error.Result);
    }

    private static string Run(string tool, params string[] args)
    {
        var start = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
            start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"{tool} {string.Join(' ', args)} exited {process.ExitCode}: {output}");
        return output;
    }

    /// <summary>Best effort: whatever a failed test left mounted, attached or running goes away.</summary>
    private void Cleanup(string fs)
    {
        StorageRaw("umount", fs);
        foreach (var record in Directory.Exists(RunDir) ? Directory.GetFiles(RunDir, "*.json") : [])
        {
            try
            {
                int pid = JsonDocument.Parse(File.ReadAllText(record)).RootElement.GetProperty("pid").GetInt32();
                using var process = Process.GetProcessById(pid);
                process.Kill();
                process.WaitForExit(10_000);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or JsonException or KeyNotFoundException or IOException)
            {
            }
        }
    }
}
