using System.Text.Json;
using static Storage.Cli.Tests.CliRunner;

namespace Storage.Cli.Tests;

/// <summary>
/// What scripts depend on: every verb and flag that exists, the shape of every --json document and the exit codes
/// (0 success, 1 the operation ran and failed, 2 bad usage or input, nothing changed).
/// </summary>
public sealed class CliContractTests : ScratchFolder
{
    private static readonly string[] StatusShape =
    [
        "badBlocks", "bitmapDirtyRegions", "bitmapOffset", "bitmapRegionBytes", "bitmapRegions", "capacity", "chunkSize", "dataChunks", "dataOffset", "disks", "disks[].device", "disks[].memberId", "disks[].readErrors",
        "disks[].rebuildCheckpoint", "disks[].role", "disks[].state", "events", "id", "journal", "journalBytes", "journalDevice", "journalOffset", "level", "members", "name",
        "parityChunks", "rebuilds", "scrubDone", "scrubTotal", "state",
    ];

    [Fact]
    public void Create_with_every_flag_prints_the_array_status_document()
    {
        var (code, output, error) = Run("array", "create", "--level", "rs", "--parity", "2", "--disks", Disks("d", 5), "--spares", At("s0.img"),
            "--chunk", "16K", "--size", "8M", "--name", "pinned", "--no-journal", "--force", "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);   // nothing but the document
        Assert.Equal(StatusShape, Shape(json.RootElement));
        Assert.Equal("pinned", json.RootElement.GetProperty("name").GetString());
        Assert.False(json.RootElement.GetProperty("journal").GetBoolean());
        Assert.Equal(16384, json.RootElement.GetProperty("chunkSize").GetInt32());
    }

    [Fact]
    public void Status_json_has_the_array_and_every_disk()
    {
        Assert.Equal(0, Run("array", "create", "--level", "5", "--disks", Disks("d", 3), "--size", "8M").Code);
        var (code, output, _) = Run("array", "status", "--disks", At("*.img"), "--json");
        Assert.Equal(0, code);
        using var json = JsonDocument.Parse(output);
        Assert.Equal(
            [
                "array", "array.clean", "array.events", "array.geometry", "array.id", "array.name", "array.roles", "array.roles[].memberId",
                "array.roles[].rebuildCheckpoint", "array.roles[].role", "array.roles[].state", "disks", "disks[].content", "disks[].description",
                "disks[].events", "disks[].memberId", "disks[].path", "disks[].role",
            ],
            Shape(json.RootElement));
    }

    [Fact]
    public void Status_of_disks_without_a_superblock_fails_with_exit_1()
    {
        File.WriteAllBytes(At("blank.img"), new byte[1 << 20]);
        var (code, output, _) = Run("array", "status", "--disks", At("blank.img"));
        Assert.Equal(1, code);
        Assert.Contains("no array superblock", output, StringComparison.Ordinal);
        (code, output, _) = Run("array", "status", "--disks", At("blank.img"), "--json");
        Assert.Equal(1, code);
        using var json = JsonDocument.Parse(output);
        Assert.Equal(JsonValueKind.Null, json.RootElement.GetProperty("array").ValueKind);
    }

    [Fact]
    public void Every_array_verb_takes_its_documented_flags()
    {
        Assert.Equal(0, Run("array", "create", "--level", "6", "--disks", Disks("d", 4), "--size", "8M").Code);
        string disks = At("d*.img");
        AssertOk(Run("array", "assemble", "--disks", disks, "--json"), json: true);
        AssertOk(Run("array", "rebuild", "--disks", disks, "--limit", "500", "--json"), json: true);
        AssertOk(Run("array", "fail", "--disks", disks, "--member", At("d3.img"), "--limit", "500", "--json"), json: true);
        // Offline, a failed member is left out at assembly, so there is nothing to remove; the flags are still taken.
        var removed = Run("array", "remove", "--disks", disks, "--member", At("d3.img"), "--json");
        Assert.Equal(2, removed.Code);
        Assert.Contains("is not a member", removed.Error, StringComparison.Ordinal);
        AssertOk(Run("array", "add", "--disks", $"{At("d0.img")},{At("d1.img")},{At("d2.img")}", "--member", At("n0.img"), "--size", "8M", "--force", "--limit", "500", "--json"), json: true);
        var (code, output, error) = Run("array", "scrub", "--disks", $"{At("d0.img")},{At("d1.img")},{At("d2.img")},{At("n0.img")}", "--repair", "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        Assert.Equal(["mismatches", "mismatchesPerRole", "repaired", "stripesChecked", "stripesSkipped"], Shape(json.RootElement.GetProperty("scrub")));
        Assert.Equal(StatusShape, Shape(json.RootElement.GetProperty("array")));
    }

    [Fact]
    public void Bad_blocks_are_offset_and_length_in_json()
    {
        var shape = JsonSerializer.SerializeToElement(new Raid.ArrayStatus("a", Guid.Empty, "RAID-5", 3, 2, 1, 4096, 8192, "clean", 1, true, [], [], 0, 0,
            [(4096L, 512L)], 1 << 20, 65536, 16 * 69632), CliJson.Default.ArrayStatus);
        Assert.Equal(4096, shape.GetProperty("badBlocks")[0].GetProperty("offset").GetInt64());
        Assert.Equal(512, shape.GetProperty("badBlocks")[0].GetProperty("length").GetInt64());
    }

    [Fact]
    public void Every_verb_has_help()
    {
        var paths = new List<string[]>();
        void Walk(System.CommandLine.Command command, string[] path)
        {
            paths.Add(path);
            foreach (var sub in command.Subcommands)
                Walk(sub, [.. path, sub.Name]);
        }
        Walk(Cli.Build(), []);
        Assert.True(paths.Count > 20, $"only {paths.Count} commands found");
        foreach (var path in paths)
        {
            var (code, output, error) = Run([.. path, "--help"]);
            Assert.True(code == 0, $"storage {string.Join(' ', path)} --help: exit {code} {error}");
            Assert.Contains("Usage:", output, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Examine_prints_where_data_starts_on_a_member()
    {
        Assert.Equal(0, Run("array", "create", "--level", "5", "--disks", Disks("d", 3), "--size", "8M", "--name", "ex").Code);
        var (code, output, error) = Run("array", "examine", At("d1.img"), "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        Assert.Equal(
            [
                "arrayId", "arrayName", "bitmapBytes", "bitmapOffset", "bitmapRegionBytes", "clean", "content", "dataOffset", "description", "events", "geometry", "journalDevice", "journalOffset", "journalSlots",
                "labelAreaSize", "memberDataSize", "memberId", "path", "role", "roleState",
            ],
            Shape(json.RootElement));
        Assert.Equal(1, json.RootElement.GetProperty("role").GetInt32());
        Assert.Equal("active", json.RootElement.GetProperty("roleState").GetString());
        long dataOffset = json.RootElement.GetProperty("dataOffset").GetInt64();
        Assert.True(dataOffset > 0 && dataOffset % (1 << 20) == 0, $"data offset {dataOffset} is 1 MiB-aligned");

        (code, output, _) = Run("array", "assemble", "--disks", Disks("d", 3), "--json");
        Assert.Equal(0, code);
        using (var status = JsonDocument.Parse(output))
        {
            Assert.Equal(dataOffset, status.RootElement.GetProperty("dataOffset").GetInt64());   // status says it too
            long journal = status.RootElement.GetProperty("journalOffset").GetInt64();
            Assert.True(journal >= 64 * 1024 && journal + status.RootElement.GetProperty("journalBytes").GetInt64() <= dataOffset, "the journal lies between the labels and the data");
        }

        (code, output, _) = Run("array", "examine", At("d1.img"));
        Assert.Equal(0, code);
        Assert.Contains($"{dataOffset} bytes", output, StringComparison.Ordinal);

        File.WriteAllBytes(At("blank.img"), new byte[1 << 20]);
        (code, output, _) = Run("array", "examine", At("blank.img"));
        Assert.Equal(1, code);
        Assert.Contains("no array superblock", output, StringComparison.Ordinal);
    }

    [Fact]
    public void A_journal_device_is_created_examined_and_required_at_assembly()
    {
        var (code, output, error) = Run("array", "create", "--level", "6", "--disks", Disks("j", 5), "--size", "16M", "--journal-device", At("journal.img"), "--name", "jd", "--json");
        Assert.True(code == 0, error);
        using (var status = JsonDocument.Parse(output))
            Assert.Equal(At("journal.img"), status.RootElement.GetProperty("journalDevice").GetString());
        Assert.True(new FileInfo(At("journal.img")).Length >= 5 * 16 * (64 << 10), "created to fit 16 slots of 5 chunk parts");

        (code, output, _) = Run("array", "examine", At("journal.img"));
        Assert.Equal(0, code);
        Assert.Contains("journal device", output, StringComparison.Ordinal);
        (code, output, _) = Run("array", "examine", At("j0.img"));
        Assert.Contains("separate journal device", output, StringComparison.Ordinal);

        (code, output, error) = Run("array", "assemble", "--disks", Disks("j", 5));
        Assert.Equal(2, code);
        Assert.Contains("journal on a separate device", output + error, StringComparison.Ordinal);
        (code, output, error) = Run("array", "assemble", "--disks", Disks("j", 5) + "," + At("journal.img"));
        Assert.True(code == 0, error);
        Assert.DoesNotContain("replayed", output + error, StringComparison.Ordinal);   // stopped cleanly: nothing to report
        (code, output, _) = Run("array", "status", "--disks", Disks("j", 5));
        Assert.Equal(0, code);
        Assert.Contains("(not given)", output, StringComparison.Ordinal);
        (code, output, error) = Run("array", "assemble", "--disks", Disks("j", 5));
        Assert.Contains("--without-journal-device", output + error, StringComparison.Ordinal);   // the way out, named
        (code, output, error) = Run("array", "assemble", "--disks", Disks("j", 5), "--without-journal-device", "--json");
        Assert.True(code == 0, error);
        using (var status = JsonDocument.Parse(output))
        {
            Assert.False(status.RootElement.GetProperty("journal").GetBoolean());
            Assert.Equal(JsonValueKind.Null, status.RootElement.GetProperty("journalDevice").ValueKind);
        }

        (code, _, error) = Run("array", "create", "--level", "5", "--disks", Disks("k", 3), "--size", "8M", "--journal-device", At("k-journal.img"), "--no-journal");
        Assert.Equal(2, code);
        Assert.Contains("contradict", error, StringComparison.Ordinal);
        Assert.False(File.Exists(At("k0.img")));
    }

    [Fact]
    public void A_disk_left_out_at_one_assembly_is_re_added_from_the_bitmap_at_the_next()
    {
        var (code, output, error) = Run("array", "create", "--level", "5", "--disks", Disks("b", 4), "--size", "16M", "--bitmap-region", "1M", "--json");
        Assert.True(code == 0, error);
        using (var created = JsonDocument.Parse(output))
        {
            Assert.Equal(64 * 1024, created.RootElement.GetProperty("bitmapOffset").GetInt64());
            Assert.True(created.RootElement.GetProperty("bitmapRegions").GetInt32() >= 40);
        }
        (code, _, error) = Run("array", "assemble", "--disks", $"{At("b0.img")},{At("b1.img")},{At("b2.img")}");
        Assert.True(code == 0, error);   // degraded: b3 was not there
        (code, output, error) = Run("array", "assemble", "--disks", Disks("b", 4));
        Assert.True(code == 0, error);
        Assert.Contains("re-added, resyncing the 0 of", output + error, StringComparison.Ordinal);
        (code, _, error) = Run("array", "rebuild", "--disks", Disks("b", 4));   // assemble stops at once; rebuild finishes the resync
        Assert.True(code == 0, error);
        (code, output, error) = Run("array", "status", "--disks", Disks("b", 4), "--json");
        Assert.True(code == 0, error);
        using (var status = JsonDocument.Parse(output))
            Assert.All(status.RootElement.GetProperty("array").GetProperty("roles").EnumerateArray(), r => Assert.Equal("active", r.GetProperty("state").GetString()));
        (code, output, _) = Run("array", "examine", At("b3.img"));
        Assert.Equal(0, code);
        Assert.Contains("one bit per 0 MiB", output.Replace("per 1 MiB", "per 0 MiB", StringComparison.Ordinal), StringComparison.Ordinal);

        (code, _, error) = Run("array", "create", "--level", "5", "--disks", Disks("c", 3), "--size", "8M", "--no-bitmap", "--bitmap-region", "4M");
        Assert.Equal(2, code);
        Assert.Contains("contradict", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("frobnicate")]
    [InlineData("array")]
    [InlineData("array frob")]
    [InlineData("array status --disks x --bogus")]
    [InlineData("array create --level 5")]
    [InlineData("array stop --disks {dir}/none.img")]
    [InlineData("serve")]
    [InlineData("mount")]
    [InlineData("umount")]
    [InlineData("umount {dir}/not-mounted")]
    [InlineData("quickstart --size-mib")]
    [InlineData("bench")]
    [InlineData("bench parity --size-kib x")]
    [InlineData("meta")]
    [InlineData("meta frobnicate --peers 1=127.0.0.1:1")]
    [InlineData("meta status --peers nonsense")]
    [InlineData("meta serve --peers 1=127.0.0.1:1")]
    public void Usage_errors_exit_2_with_a_message(string command)
    {
        var (code, output, error) = Run(command.Replace("{dir}", Dir, StringComparison.Ordinal).Split(' '));
        Assert.True(code == 2, $"exit {code}\n{output}\n{error}");
        Assert.StartsWith("storage", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Version_prints_the_version()
    {
        var (code, output, _) = Run("--version");
        Assert.Equal(0, code);
        Assert.Matches(@"\d+\.\d+", output);
    }

    private static void AssertOk((int Code, string Output, string Error) result, bool json)
    {
        Assert.True(result.Code == 0, result.Error);
        if (json)
            JsonDocument.Parse(result.Output).Dispose();   // one document, nothing else
    }

    /// <summary>Every property path in a JSON value, sorted (array items as <c>name[]</c>, from their first item).</summary>
    private static string[] Shape(JsonElement element)
    {
        var paths = new SortedSet<string>(StringComparer.Ordinal);
        void Walk(JsonElement e, string prefix)
        {
            if (e.ValueKind == JsonValueKind.Object)
            {
                foreach (var property in e.EnumerateObject())
                {
                    string path = prefix.Length == 0 ? property.Name : $"{prefix}.{property.Name}";
                    paths.Add(path);
                    Walk(property.Value, path);
                }
            }
            else if (e.ValueKind == JsonValueKind.Array && e.GetArrayLength() > 0)
            {
                Walk(e[0], prefix + "[]");
            }
        }
        Walk(element, "");
        return [.. paths];
    }
}
