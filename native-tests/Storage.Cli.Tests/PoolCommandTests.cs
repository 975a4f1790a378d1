using System.Text.Json;
using Storage.Devices;
using Storage.Versioning;
using static Storage.Cli.Tests.CliRunner;

namespace Storage.Cli.Tests;

/// <summary>The pool, volume and snapshot verbs, run in-process on file-backed pools; data written and read through the library.</summary>
public sealed class PoolCommandTests : ScratchFolder
{
    private string PoolFile => At("pool.img");

    [Fact]
    public async Task Volumes_snapshots_clones_rollback_and_deletes_through_the_cli()
    {
        Ok("pool", "create", "--device", PoolFile, "--size", "64M", "--name", "tank");
        Ok("volume", "create", "vm1", "--size", "1G", "--device", PoolFile);   // thin: 16x the pool
        await WriteAsync("vm1", 0, Pattern(1, 1 << 20));

        using (var volumes = Json("volume", "list", "--device", PoolFile, "--json"))
        {
            var vm1 = Assert.Single(volumes.RootElement.EnumerateArray());
            Assert.Equal("vm1", vm1.GetProperty("name").GetString());
            Assert.Equal(1L << 30, vm1.GetProperty("size").GetInt64());
            Assert.Equal(1L << 20, vm1.GetProperty("mappedBytes").GetInt64());
        }

        Assert.Contains("created snapshot vm1@monday", Ok("snapshot", "create", "vm1@monday", "--device", PoolFile), StringComparison.Ordinal);
        await WriteAsync("vm1", 0, Pattern(2, 1 << 20));
        Ok("snapshot", "create", "vm1@tuesday", "--device", PoolFile);
        using (var snapshots = Json("snapshot", "list", "vm1", "--device", PoolFile, "--json"))
        {
            var rows = snapshots.RootElement.EnumerateArray().ToList();
            Assert.Equal(["vm1@monday", "vm1@tuesday"], rows.Select(r => r.GetProperty("fullName").GetString()));
            Assert.Equal(1L << 20, rows[0].GetProperty("uniqueBytes").GetInt64());   // overwritten since: only monday holds it
        }

        Assert.Contains("cloned vm1@monday as volume 'dev'", Ok("snapshot", "clone", "vm1@monday", "dev", "--device", PoolFile), StringComparison.Ordinal);
        Assert.Equal(Pattern(1, 1 << 20), await ReadAsync("dev", 0, 1 << 20));

        // Rolling back past a newer snapshot needs --destroy-newer, and says so.
        var (code, _, error) = Run("snapshot", "rollback", "vm1@monday", "--device", PoolFile);
        Assert.Equal(2, code);
        Assert.Contains("tuesday", error, StringComparison.Ordinal);
        Assert.Equal(Pattern(2, 1 << 20), await ReadAsync("vm1", 0, 1 << 20));
        Assert.Contains("deleted the newer vm1@tuesday", Ok("snapshot", "rollback", "vm1@monday", "--destroy-newer", "--device", PoolFile), StringComparison.Ordinal);
        Assert.Equal(Pattern(1, 1 << 20), await ReadAsync("vm1", 0, 1 << 20));

        Assert.Contains("is now 2 GiB", Ok("volume", "resize", "vm1", "--size", "2G", "--device", PoolFile), StringComparison.Ordinal);
        (code, _, error) = Run("snapshot", "delete", "vm1@monday", "--device", PoolFile);
        Assert.True(code != 0, "a snapshot with a clone must not be deleted");
        Assert.Contains("dev", error, StringComparison.Ordinal);
        Ok("volume", "delete", "dev", "--device", PoolFile);
        Ok("snapshot", "delete", "vm1@monday", "--device", PoolFile);
        Ok("volume", "delete", "vm1", "--device", PoolFile);

        using var status = Json("pool", "status", "--device", PoolFile, "--json");
        Assert.Equal(0, status.RootElement.GetProperty("volumes").GetInt32());
        Assert.Equal(0, status.RootElement.GetProperty("snapshots").GetInt32());
        Assert.True(status.RootElement.GetProperty("usedBytes").GetInt64() + status.RootElement.GetProperty("pendingFreeBytes").GetInt64() < 1 << 20, "deleting everything frees the data");
    }

    [Fact]
    public async Task Send_and_receive_through_files_full_then_incremental_and_a_damaged_stream_changes_nothing()
    {
        string copy = At("copy.img");
        Ok("pool", "create", "--device", PoolFile, "--size", "64M", "--name", "src");
        Ok("pool", "create", "--device", copy, "--size", "64M", "--name", "dst");
        Ok("volume", "create", "data", "--size", "256M", "--device", PoolFile);
        await WriteAsync("data", 0, Pattern(3, 3 << 20));
        Ok("snapshot", "create", "data@one", "--device", PoolFile);
        await WriteAsync("data", 1 << 20, Pattern(4, 1 << 20));
        Ok("snapshot", "create", "data@two", "--device", PoolFile);

        Assert.Contains("(full)", Ok("snapshot", "send", "data@one", "--output", At("full.stream"), "--device", PoolFile), StringComparison.Ordinal);
        Assert.Contains("incremental from data@one", Ok("snapshot", "send", "data@two", "--from", "@one", "--output", At("incr.stream"), "--device", PoolFile), StringComparison.Ordinal);
        Assert.True(new FileInfo(At("incr.stream")).Length < new FileInfo(At("full.stream")).Length / 2, "the incremental carries only what changed");

        // An incremental without its base is refused; so is a damaged stream.
        var (code, _, error) = Run("snapshot", "receive", "--input", At("incr.stream"), "--device", copy);
        Assert.NotEqual(0, code);
        Assert.Contains("Nothing was changed", error, StringComparison.Ordinal);
        var damaged = File.ReadAllBytes(At("full.stream"));
        damaged[damaged.Length / 2] ^= 0x40;
        File.WriteAllBytes(At("damaged.stream"), damaged);
        (code, _, error) = Run("snapshot", "receive", "--input", At("damaged.stream"), "--device", copy);
        Assert.Equal(1, code);
        Assert.Contains("Nothing was changed", error, StringComparison.Ordinal);
        using (var none = Json("volume", "list", "--device", copy, "--json"))
            Assert.Empty(none.RootElement.EnumerateArray());

        Ok("snapshot", "receive", "--input", At("full.stream"), "--device", copy);
        Ok("snapshot", "receive", "--input", At("incr.stream"), "--device", copy);
        using var snapshots = Json("snapshot", "list", "data", "--device", copy, "--json");
        Assert.Equal(["data@one", "data@two"], snapshots.RootElement.EnumerateArray().Select(r => r.GetProperty("fullName").GetString()));
        Assert.Equal(await ReadAsync("data", 0, 3 << 20, snapshot: "two"), await ReadAsync("data", 0, 3 << 20, snapshot: "two", file: copy));
        Assert.Equal(Pattern(3, 3 << 20), await ReadAsync("data", 0, 3 << 20, snapshot: "one", file: copy));
    }

    [Fact]
    public void A_pool_on_an_array_heals_from_parity_and_scrubs_clean()
    {
        Ok("array", "create", "--level", "6", "--disks", Disks("d", 6), "--size", "32M", "--name", "a6");
        string created = Ok("pool", "create", "--disks", At("d*.img"), "--name", "tank");
        Assert.Contains("on array 'a6'", created, StringComparison.Ordinal);
        Assert.Contains("self-healing from parity", created, StringComparison.Ordinal);
        Ok("volume", "create", "vm1", "--size", "10G", "--disks", At("d*.img"));
        Ok("snapshot", "create", "vm1@empty", "--disks", At("d*.img"));
        using var scrub = Json("pool", "scrub", "--disks", At("d*.img"), "--json");
        Assert.Equal(0, scrub.RootElement.GetProperty("scrub").GetProperty("unrecoverable").GetInt64());
        Assert.Contains("stopped cleanly", Ok("array", "status", "--disks", At("d*.img")), StringComparison.Ordinal);
    }

    [Fact]
    public void A_device_that_holds_a_pool_or_an_array_is_not_overwritten_without_force()
    {
        Ok("pool", "create", "--device", PoolFile, "--size", "64M", "--name", "tank");
        Ok("volume", "create", "keep", "--size", "1G", "--device", PoolFile);
        var (code, _, error) = Run("pool", "create", "--device", PoolFile, "--name", "other");
        Assert.Equal(2, code);
        Assert.Contains("already holds pool 'tank'", error, StringComparison.Ordinal);
        Assert.Contains("--force", error, StringComparison.Ordinal);
        Assert.Contains("keep", Ok("volume", "list", "--device", PoolFile), StringComparison.Ordinal);

        Ok("array", "create", "--level", "5", "--disks", Disks("m", 3), "--size", "16M", "--name", "a5");
        byte[] before = File.ReadAllBytes(At("m0.img"));
        (code, _, error) = Run("pool", "create", "--device", At("m0.img"), "--name", "oops");
        Assert.Equal(2, code);
        Assert.Contains("--force", error, StringComparison.Ordinal);
        Assert.Equal(before, File.ReadAllBytes(At("m0.img")));

        Assert.Contains("pool 'fresh'", Ok("pool", "create", "--device", PoolFile, "--name", "fresh", "--force"), StringComparison.Ordinal);
        Assert.DoesNotContain("keep", Ok("volume", "list", "--device", PoolFile), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("pool create --device {pool} --size 64M", "--name is required")]
    [InlineData("pool create --device {pool} --name tank", "does not exist. Pass --size")]
    [InlineData("pool create --device {pool} --size 64M --name tank --block-size 12K", "power of two")]
    [InlineData("pool create --device {pool} --size 64M --name tank --block-size 2M", "--block-size")]
    [InlineData("pool create --device {pool} --size 64M --name bad/name", "name")]
    [InlineData("pool status", "say where the pool is")]
    public void Bad_pool_input_says_what_to_do_and_leaves_no_file_behind(string command, string expected)
    {
        var (code, _, error) = Run(Args(command));
        Assert.Equal(2, code);
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(Dir));
    }

    [Theory]
    [InlineData("volume create --size 1G --device {pool}", "give the volume's name")]
    [InlineData("volume create vm2 --device {pool}", "--size is required")]
    [InlineData("volume create vm1 --size 1G --device {pool}", "already has a volume 'vm1'")]
    [InlineData("volume delete nothing --device {pool}", "has no volume 'nothing'")]
    [InlineData("snapshot create vm1 --device {pool}", "VOL@SNAP")]
    [InlineData("snapshot create vm1@ --device {pool}", "VOL@SNAP")]
    [InlineData("snapshot create nothing@x --device {pool}", "nothing")]
    [InlineData("snapshot rollback vm1@never --device {pool}", "has no snapshot 'never'")]
    [InlineData("snapshot send vm1@s --from other@s --output {dir}/x --device {pool}", "same volume")]
    [InlineData("snapshot receive --input {dir}/missing.stream --device {pool}", "does not exist")]
    [InlineData("snapshot clone vm1@s --device {pool}", "new volume's name")]
    public void Bad_volume_and_snapshot_input_is_refused_and_changes_nothing(string command, string expected)
    {
        Ok("pool", "create", "--device", PoolFile, "--size", "64M", "--name", "tank");
        Ok("volume", "create", "vm1", "--size", "1G", "--device", PoolFile);
        Ok("snapshot", "create", "vm1@s", "--device", PoolFile);
        string before = Ok("pool", "status", "--device", PoolFile, "--json");
        var (code, _, error) = Run(Args(command));
        Assert.Equal(2, code);
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.Equal(Transactionless(before), Transactionless(Ok("pool", "status", "--device", PoolFile, "--json")));
        Assert.Equal([PoolFile], Directory.GetFiles(Dir));
    }

    /// <summary>The status document without the transaction number (opening and closing a pool commits).</summary>
    private static string Transactionless(string status)
    {
        using var document = JsonDocument.Parse(status);
        return string.Join(',', document.RootElement.EnumerateObject().Where(p => p.Name is not ("transaction" or "logFill")).Select(p => $"{p.Name}={p.Value}"));
    }

    private string[] Args(string command)
        => command.Replace("{pool}", PoolFile, StringComparison.Ordinal).Replace("{dir}", Dir, StringComparison.Ordinal).Split(' ');

    private static string Ok(params string[] args)
    {
        var (code, output, error) = Run(args);
        Assert.True(code == 0, $"storage {string.Join(' ', args)} exited {code}:\n{output}\n{error}");
        return output;
    }

    private static JsonDocument Json(params string[] args) => JsonDocument.Parse(Ok(args));

    private static byte[] Pattern(int seed, int length)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private async Task WriteAsync(string volume, long offset, byte[] data)
    {
        using var device = FileBlockDevice.Open(PoolFile);
        await using var pool = await Pool.OpenAsync(device);
        using var target = pool.OpenVolume(volume);
        await target.WriteAsync(offset, data);
        await target.FlushAsync();
    }

    private async Task<byte[]> ReadAsync(string volume, long offset, int length, string? snapshot = null, string? file = null)
    {
        using var device = FileBlockDevice.Open(file ?? PoolFile);
        await using var pool = await Pool.OpenAsync(device);
        using var source = snapshot is null ? pool.OpenVolume(volume) : pool.OpenSnapshot(volume, snapshot);
        var data = new byte[length];
        await source.ReadAsync(offset, data);
        return data;
    }
}
