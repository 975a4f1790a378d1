using System.Globalization;
using System.Text.Json;
using Storage.Devices.Tests;

namespace Storage.Nbd.Tests;

/// <summary>
/// Real clients see the holes of a sparse file served over NBD (base:allocation): qemu-img map, nbdinfo --map, and
/// nbdcopy keeping the holes of the copy. The file is <see cref="BlockStatusTests.SparseFile"/>: data at
/// [256 KiB, 320 KiB) and [768 KiB, 772 KiB) of 1 MiB.
/// </summary>
public class RealClientBlockStatusTests
{
    private static readonly (long Start, long Length, bool Data)[] Expected =
    [
        (0, 256 << 10, false), (256 << 10, 64 << 10, true), (320 << 10, 448 << 10, false), (768 << 10, 4096, true), ((768 << 10) + 4096, 252 << 10, false),
    ];

    public static TheoryData<string> Transports => ["tcp", "unix"];

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Qemu_img_map_shows_holes_and_data_at_their_offsets(string transport)
    {
        string qemuImg = Requires.Tool("qemu-img", "qemu-utils");
        using var temp = new TempDirectory();
        using var device = BlockStatusTests.SparseFile(temp.Path);
        await using var server = new TestServer(device);
        using var json = JsonDocument.Parse(await Shell.CheckAsync(qemuImg, "map", "--output=json", "-f", "raw", server.Uri(transport)));
        var map = json.RootElement.EnumerateArray()
            .Select(e => (e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("data").GetBoolean(), e.GetProperty("zero").GetBoolean()))
            .ToArray();
        Assert.Equal(Expected.Select(e => (e.Start, e.Length, e.Data, !e.Data)), map);
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Nbdinfo_map_shows_holes_and_data_at_their_offsets(string transport)
    {
        string nbdinfo = Requires.Tool("nbdinfo", "libnbd-bin");
        using var temp = new TempDirectory();
        using var device = BlockStatusTests.SparseFile(temp.Path);
        await using var server = new TestServer(device);
        string output = await Shell.CheckAsync(nbdinfo, "--map", server.Uri(transport));
        // Lines: offset, length, type (flags), description.
        var map = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Select(f => (long.Parse(f[0], CultureInfo.InvariantCulture), long.Parse(f[1], CultureInfo.InvariantCulture), int.Parse(f[2], CultureInfo.InvariantCulture)))
            .ToArray();
        Assert.Equal(Expected.Select(e => (e.Start, e.Length, e.Data ? 0 : 3)), map);
        Assert.Contains("hole,zero", output);
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Nbdcopy_into_a_sparse_file_keeps_the_holes(string transport)
    {
        string nbdcopy = Requires.Tool("nbdcopy", "libnbd-bin");
        string stat = Requires.Tool("stat", "coreutils");
        using var temp = new TempDirectory();
        using var device = BlockStatusTests.SparseFile(temp.Path);
        await using var server = new TestServer(device);
        string copy = temp.File("copy.img");
        await Shell.CheckAsync(nbdcopy, server.Uri(transport), copy);

        var source = new byte[1 << 20];
        await device.ReadAsync(0, source, TestContext.Current.CancellationToken);
        var copied = await File.ReadAllBytesAsync(copy, TestContext.Current.CancellationToken);
        Assert.Equal(1 << 20, copied.Length);
        Assert.True(source.AsSpan().SequenceEqual(copied), "the copy's bytes differ from the export's");
        // st_blocks counts 512-byte units: the 68 KiB of data, some file-system slack, never the whole 1 MiB.
        long blocks = long.Parse((await Shell.CheckAsync(stat, "-c", "%b", copy)).Trim(), CultureInfo.InvariantCulture);
        Assert.True(blocks * 512 < 256 << 10, $"the copy has {blocks * 512} bytes allocated; its holes were filled");
    }
}
