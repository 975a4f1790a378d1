using System.Security.Cryptography;
using System.Text.Json;
using static Storage.Cli.Tests.CliRunner;

namespace Storage.Cli.Tests;

public sealed class ArrayCommandTests : ScratchFolder
{
    [Fact]
    public void Create_status_fail_rebuild_onto_the_spare_and_scrub()
    {
        var (code, output, error) = Run("array", "create", "--level", "6", "--disks", Disks("d", 5), "--spares", At("s0.img"), "--size", "16M", "--name", "tank");
        Assert.True(code == 0, error);
        Assert.Contains("array 'tank'", output, StringComparison.Ordinal);
        Assert.Contains("RAID-6, 3+2", output, StringComparison.Ordinal);

        (code, output, _) = Run("array", "status", "--disks", At("*.img"));
        Assert.Equal(0, code);
        Assert.Contains("stopped cleanly", output, StringComparison.Ordinal);
        Assert.Contains("spare", output, StringComparison.Ordinal);

        (code, output, error) = Run("array", "fail", "--disks", At("*.img"), "--member", At("d1.img"));
        Assert.True(code == 0, error);
        (code, output, _) = Run("array", "status", "--disks", At("*.img"), "--json");
        Assert.Equal(0, code);
        using var status = JsonDocument.Parse(output);
        var roles = status.RootElement.GetProperty("array").GetProperty("roles").EnumerateArray().Select(r => r.GetProperty("state").GetString()).ToArray();
        Assert.Equal(["active", "active", "active", "active", "active"], roles);   // the spare took role 1 and was rebuilt
        Assert.Contains(status.RootElement.GetProperty("disks").EnumerateArray(), d => d.GetProperty("path").GetString() == At("d1.img") && d.GetProperty("events").GetUInt64() < status.RootElement.GetProperty("array").GetProperty("events").GetUInt64());

        (code, output, error) = Run("array", "scrub", "--disks", $"{At("d0.img")},{At("d2.img")},{At("d3.img")},{At("d4.img")},{At("s0.img")}");
        Assert.True(code == 0, error);
        Assert.Contains("0 mismatched", output, StringComparison.Ordinal);

        (code, output, error) = Run("array", "scrub", "--disks", $"{At("d0.img")},{At("d2.img")},{At("d3.img")},{At("d4.img")},{At("s0.img")}", "--json");
        Assert.True(code == 0, error);
        using var scrub = JsonDocument.Parse(output);   // one JSON document, no progress lines
        Assert.Equal(0, scrub.RootElement.GetProperty("scrub").GetProperty("mismatches").GetInt64());
        Assert.Equal("clean", scrub.RootElement.GetProperty("array").GetProperty("state").GetString());
    }

    [Theory]
    [InlineData("array creat", "Did you mean 'create'?")]
    [InlineData("array create --level 7 --disks {d3} --size 16M", "unknown level '7'")]
    [InlineData("array create --level 6 --disks {d3} --size 16M", "RAID-6 needs 4 to 64 members; got 3")]
    [InlineData("array create --level 5 --disks {d3} --size 16M --chunk 3000", "--chunk must be between 4096")]
    [InlineData("array create --level 5 --disks {d3} --size 16M --chunk 12K", "power of two")]
    [InlineData("array create --level rs --disks {d3} --size 16M", "--parity M")]
    [InlineData("array create --level 5 --disks {d3}", "does not exist. Pass --size")]
    [InlineData("array create --level 5 --disks {d3} --size 4M --chunk 1M", "is too small: every disk needs at least")]
    [InlineData("array create --level 5 --dsks {d3} --size 16M", "Did you mean '--disks'?")]
    [InlineData("array status", "--disks is required")]
    [InlineData("array status --disks {dir}/nothing*.img", "matches no file")]
    public void Bad_input_says_what_to_do_and_leaves_no_file_behind(string command, string expected)
    {
        var args = command.Replace("{d3}", Disks("d", 3), StringComparison.Ordinal).Replace("{dir}", Dir, StringComparison.Ordinal).Split(' ');
        var (code, _, error) = Run(args);
        Assert.Equal(2, code);
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(Dir));
    }

    [Fact]
    public void Failing_one_member_more_than_the_level_tolerates_is_refused_and_changes_nothing()
    {
        Assert.Equal(0, Run("array", "create", "--level", "5", "--disks", Disks("d", 3), "--size", "16M").Code);
        var (code, _, error) = Run("array", "fail", "--disks", At("*.img"), "--member", At("d0.img"));
        Assert.True(code == 0, error);
        (code, _, error) = Run("array", "fail", "--disks", At("*.img"), "--member", At("d1.img"));
        Assert.Equal(2, code);
        Assert.Contains("would leave 1 of 3 members in sync", error, StringComparison.Ordinal);

        // Only the superblocks' events moved (the command assembled and stopped the array); every role is as it was.
        string output;
        (code, output, _) = Run("array", "status", "--disks", At("*.img"), "--json");
        Assert.Equal(0, code);
        using var status = JsonDocument.Parse(output);
        var roles = status.RootElement.GetProperty("array").GetProperty("roles").EnumerateArray().Select(r => r.GetProperty("state").GetString()).ToArray();
        Assert.Equal(["missing", "active", "active"], roles);   // d0 was left out at the assembly
    }

    [Fact]
    public void A_disk_of_another_array_or_with_a_filesystem_is_refused_and_unchanged()
    {
        Assert.Equal(0, Run("array", "create", "--level", "5", "--disks", Disks("a", 3), "--size", "16M", "--name", "first").Code);
        byte[] before = SHA256.HashData(File.ReadAllBytes(At("a1.img")));
        var (code, _, error) = Run("array", "create", "--level", "5", "--disks", $"{At("a1.img")},{At("b0.img")},{At("b1.img")}", "--size", "16M");
        Assert.Equal(2, code);
        Assert.Contains("holds member 1 of array 'first'", error, StringComparison.Ordinal);
        Assert.Equal(before, SHA256.HashData(File.ReadAllBytes(At("a1.img"))));
        Assert.False(File.Exists(At("b0.img")), "the files this command created are removed again");

        // A file with an ext4 superblock is foreign.
        var foreign = new byte[16 << 20];
        foreign[1080] = 0x53;
        foreign[1081] = 0xEF;
        File.WriteAllBytes(At("ext4.img"), foreign);
        (code, _, error) = Run("array", "create", "--level", "5", "--disks", $"{At("ext4.img")},{At("c0.img")},{At("c1.img")}", "--size", "16M");
        Assert.Equal(2, code);
        Assert.Contains("holds an ext2/3/4 filesystem", error, StringComparison.Ordinal);
        Assert.Equal(foreign, File.ReadAllBytes(At("ext4.img")));

        // --force overrides, as mdadm's does.
        Assert.Equal(0, Run("array", "create", "--level", "5", "--disks", $"{At("ext4.img")},{At("c0.img")},{At("c1.img")}", "--size", "16M", "--force").Code);
    }

    [Fact]
    public void Files_under_dev_shm_are_file_disks_not_block_devices()
    {
        if (!Directory.Exists("/dev/shm"))
            Assert.Skip("no /dev/shm here");
        string shm = Directory.CreateTempSubdirectory("storage-cli-").FullName;
        string inShm = Path.Combine("/dev/shm", Path.GetFileName(shm));
        Directory.Delete(shm);
        Directory.CreateDirectory(inShm);
        try
        {
            var disks = string.Join(",", Enumerable.Range(0, 3).Select(i => Path.Combine(inShm, $"d{i}.img")));
            var (code, _, error) = Run("array", "create", "--level", "5", "--disks", disks, "--size", "16M");
            Assert.True(code == 0, error);
        }
        finally
        {
            Directory.Delete(inShm, recursive: true);
        }
    }

    [Fact]
    public void A_mounted_block_device_is_refused()
    {
        using var loop = Storage.Devices.Tests.LoopDevice.Attach(32 << 20);
        string mountPoint = At("mnt");
        Directory.CreateDirectory(mountPoint);
        Storage.Devices.Tests.Shell.Run("mkfs.ext4", "-q", "-F", loop.Path);
        var (mounted, _, why) = Storage.Devices.Tests.Shell.Run("mount", loop.Path, mountPoint);
        Assert.True(mounted == 0, why);
        try
        {
            var (code, _, error) = Run("array", "create", "--level", "5", "--disks", $"{loop.Path},{At("f1.img")},{At("f2.img")}", "--size", "32M");
            Assert.Equal(2, code);
            Assert.Contains($"is mounted on {mountPoint}", error, StringComparison.Ordinal);
            Assert.False(File.Exists(At("f1.img")), "nothing was created");
        }
        finally
        {
            Storage.Devices.Tests.Shell.Run("umount", mountPoint);
        }
    }

    [Fact]
    public void Assembly_without_enough_members_explains_which_are_missing()
    {
        Assert.Equal(0, Run("array", "create", "--level", "5", "--disks", Disks("d", 4), "--size", "16M").Code);
        var (code, _, error) = Run("array", "assemble", "--disks", $"{At("d0.img")},{At("d1.img")}");
        Assert.Equal(2, code);
        Assert.Contains("needs at least 3 of its 4 members in sync; found 2", error, StringComparison.Ordinal);
        Assert.Contains("role 2", error, StringComparison.Ordinal);
    }
}
