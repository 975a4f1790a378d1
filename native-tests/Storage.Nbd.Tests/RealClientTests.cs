using System.Text.Json;

namespace Storage.Nbd.Tests;

/// <summary>
/// The server against the clients people use: libnbd's nbdinfo and nbdcopy, qemu-img and qemu-io, fio's nbd engine;
/// over TCP and over the Unix socket. Skipped with the reason when a tool is missing (a failure in CI).
/// </summary>
public class RealClientTests
{
    public static TheoryData<string> Transports => ["tcp", "unix"];

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Nbdinfo_lists_and_describes_the_export(string transport)
    {
        string nbdinfo = Requires.Tool("nbdinfo", "libnbd-bin");
        await using var server = new TestServer(capacity: 8 << 20);
        string list = await Shell.CheckAsync(nbdinfo, "--list", server.Uri(transport));
        Assert.Contains("export=\"disk\"", list);
        Assert.Contains("description: test disk", list);
        Assert.Contains("export-size: 8388608", list);

        using var json = JsonDocument.Parse(await Shell.CheckAsync(nbdinfo, "--json", server.Uri(transport)));
        var root = json.RootElement;
        Assert.Equal("newstyle-fixed", root.GetProperty("protocol").GetString());
        var export = root.GetProperty("exports")[0];
        Assert.Equal(8 << 20, export.GetProperty("export-size").GetInt64());
        Assert.Equal(512, export.GetProperty("block_size_minimum").GetInt32());
        Assert.Equal(4096, export.GetProperty("block_size_preferred").GetInt32());
        Assert.Equal(32 << 20, export.GetProperty("block_size_maximum").GetInt32());
        Assert.True(export.GetProperty("can_multi_conn").GetBoolean());
        Assert.True(export.GetProperty("can_fua").GetBoolean());
        Assert.False(export.GetProperty("is_read_only").GetBoolean());
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Qemu_img_converts_a_raw_file_into_the_export_and_compares_equal(string transport)
    {
        string qemuImg = Requires.Tool("qemu-img", "qemu-utils");
        await using var server = new TestServer(capacity: 8 << 20);
        var image = new byte[8 << 20];
        new Random(21).NextBytes(image.AsSpan(0, 6 << 20)); // the tail stays zero: qemu-img may skip it as sparse
        string file = server.Scratch("source.raw");
        await File.WriteAllBytesAsync(file, image, TestContext.Current.CancellationToken);

        string info = await Shell.CheckAsync(qemuImg, "info", server.Uri(transport));
        Assert.Contains("virtual size: 8 MiB (8388608 bytes)", info);
        await Shell.CheckAsync(qemuImg, "convert", "-n", "-f", "raw", "-O", "raw", file, server.Uri(transport));
        Assert.True(image.AsSpan().SequenceEqual(server.Memory!.Bytes), "the export differs from the converted file");
        Assert.Contains("Images are identical", await Shell.CheckAsync(qemuImg, "compare", "-f", "raw", "-F", "raw", file, server.Uri(transport)));

        // And compare notices a difference.
        server.Memory.Bytes[5_000_000] ^= 1;
        var (code, output, _) = await Shell.RunAsync(qemuImg, ["compare", "-f", "raw", "-F", "raw", file, server.Uri(transport)]);
        Assert.Equal(1, code);
        Assert.Contains("Content mismatch", output);
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Qemu_io_pattern_writes_read_back_and_land_on_the_device(string transport)
    {
        string qemuIo = Requires.Tool("qemu-io", "qemu-utils");
        await using var server = new TestServer(capacity: 8 << 20, seed: 22);
        var before = server.Memory!.Bytes.ToArray();
        string output = await Shell.CheckAsync(qemuIo, "-f", "raw",
            "-c", "write -P 0xab 0 1M", "-c", "read -P 0xab 0 1M",
            "-c", "write -P 0xcd 1048676 3000", "-c", "read -P 0xcd 1048676 3000", // not sector-aligned
            "-c", "write -z 2M 64k", "-c", "read -P 0 2M 64k",
            "-c", "write -P 0x11 -f 3M 4k", // FUA
            "-c", "aio_write -P 0x22 4M 64k", "-c", "aio_write -P 0x33 5M 64k", "-c", "aio_flush",
            "-c", "flush", "-c", "discard 6M 64k",
            server.Uri(transport));
        Assert.DoesNotContain("fail", output, StringComparison.OrdinalIgnoreCase);

        var bytes = server.Memory.Bytes;
        Assert.True(bytes[..(1 << 20)].IndexOfAnyExcept((byte)0xab) < 0);
        Assert.True(bytes.Slice(1048676, 3000).IndexOfAnyExcept((byte)0xcd) < 0);
        Assert.Equal(before.AsSpan(1 << 20, 100).ToArray(), bytes.Slice(1 << 20, 100).ToArray());
        Assert.Equal(before.AsSpan(1048676 + 3000, 100).ToArray(), bytes.Slice(1048676 + 3000, 100).ToArray());
        Assert.True(bytes.Slice(2 << 20, 64 << 10).IndexOfAnyExcept((byte)0) < 0);
        Assert.True(bytes.Slice(3 << 20, 4096).IndexOfAnyExcept((byte)0x11) < 0);
        Assert.True(bytes.Slice(4 << 20, 64 << 10).IndexOfAnyExcept((byte)0x22) < 0);
        Assert.True(bytes.Slice(5 << 20, 64 << 10).IndexOfAnyExcept((byte)0x33) < 0);

        // A wrong pattern fails qemu-io, so the reads above did verify.
        var (code, stdout, stderr) = await Shell.RunAsync(qemuIo, ["-f", "raw", "-c", "read -P 0xac 0 4k", server.Uri(transport)]);
        Assert.Equal(1, code);
        Assert.Contains("Pattern verification failed", stdout + stderr);
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Nbdcopy_copies_into_and_out_of_the_export(string transport)
    {
        string nbdcopy = Requires.Tool("nbdcopy", "libnbd-bin");
        await using var server = new TestServer(capacity: 16 << 20);
        var image = new byte[16 << 20];
        new Random(23).NextBytes(image);
        string source = server.Scratch("in.raw"), target = server.Scratch("out.raw");
        await File.WriteAllBytesAsync(source, image, TestContext.Current.CancellationToken);

        await Shell.CheckAsync(nbdcopy, source, server.Uri(transport));
        Assert.True(image.AsSpan().SequenceEqual(server.Memory!.Bytes), "nbdcopy into the export");
        server.Memory.Bytes[12345] ^= 0xff;
        await Shell.CheckAsync(nbdcopy, server.Uri(transport), target);
        var copied = await File.ReadAllBytesAsync(target, TestContext.Current.CancellationToken);
        Assert.True(server.Memory.Bytes.SequenceEqual(copied), "nbdcopy out of the export");
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Fio_random_read_write_verifies_with_crc32c(string transport)
    {
        string fio = Requires.Tool("fio", "fio");
        await using var server = new TestServer(capacity: 16 << 20);
        string output = await Shell.CheckAsync(fio, "--name=verify", "--ioengine=nbd", $"--uri={server.Uri(transport)}",
            "--rw=randrw", "--bsrange=512-64k", "--size=16M", "--iodepth=16", "--verify=crc32c", "--verify_fatal=1",
            "--do_verify=1", "--output-format=json");
        using var json = JsonDocument.Parse(output[output.IndexOf('{', StringComparison.Ordinal)..]);
        var job = json.RootElement.GetProperty("jobs")[0];
        Assert.Equal(0, job.GetProperty("error").GetInt32());
        Assert.True(job.GetProperty("write").GetProperty("total_ios").GetInt64() > 100);
        Assert.True(job.GetProperty("read").GetProperty("total_ios").GetInt64() > 100);
    }
}
