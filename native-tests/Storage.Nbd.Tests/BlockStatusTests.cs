using Storage.Devices;
using Storage.Devices.Tests;
using static Storage.Nbd.Tests.NbdTestClient;

namespace Storage.Nbd.Tests;

/// <summary>
/// The base:allocation metadata context and NBD_CMD_BLOCK_STATUS, with the in-process client: over a sparse file
/// (holes made by writing at offsets of an empty file) and over a device that cannot tell (all data).
/// </summary>
public class BlockStatusTests
{
    private const uint HoleZero = 3, Data = 0;
    private const int Size = 1 << 20;

    /// <summary>A 1 MiB sparse file with data at [256 KiB, 320 KiB) and [768 KiB, 772 KiB).</summary>
    internal static FileBlockDevice SparseFile(string directory)
    {
        string path = Path.Combine(directory, "sparse.img");
        var device = FileBlockDevice.Create(path, Size);
        var data = new byte[64 << 10];
        new Random(5).NextBytes(data);
        device.WriteAsync(256 << 10, data).AsTask().GetAwaiter().GetResult();
        device.WriteAsync(768 << 10, data.AsMemory(0, 4096)).AsTask().GetAwaiter().GetResult();
        return device;
    }

    public static TheoryData<string> Directories => ["temp", "shm"];

    private static string Directory(string where, TempDirectory temp)
    {
        if (where == "temp")
            return temp.Path;
        if (!System.IO.Directory.Exists("/dev/shm"))
            Requires.Missing("/dev/shm is not mounted");
        return System.IO.Directory.CreateDirectory(Path.Combine("/dev/shm", "storage-bs-" + Guid.NewGuid().ToString("N"))).FullName;
    }

    [Fact]
    public async Task List_offers_base_allocation_for_no_query_and_the_base_namespace_and_nothing_for_unknown_ones()
    {
        await using var server = new TestServer(capacity: Size);
        await using var client = await ConnectAsync(server.Tcp);
        await client.StartAsync();
        // Not before structured replies.
        Assert.Equal(ErrInvalid, (await client.MetaContextAsync(OptListMetaContext, "disk")).Final);
        Assert.Equal(ErrInvalid, (await client.MetaContextAsync(OptSetMetaContext, "disk", "base:allocation")).Final);
        await client.SendOptionAsync(OptStructuredReply, []);
        Assert.Equal(RepAck, (await client.ReadOptionReplyAsync()).Type);

        foreach (var queries in new[] { Array.Empty<string>(), ["base:"], ["base:allocation"], ["qemu:dirty-bitmap:x", "base:allocation"] })
        {
            var (contexts, final) = await client.MetaContextAsync(OptListMetaContext, "disk", queries);
            Assert.Equal(RepAck, final);
            Assert.Equal([(0u, "base:allocation")], contexts);
        }
        foreach (var queries in new[] { ["qemu:dirty-bitmap:x"], ["base:other"], new[] { "nonsense" } })
        {
            var (contexts, final) = await client.MetaContextAsync(OptListMetaContext, "disk", queries);
            Assert.Equal(RepAck, final);
            Assert.Empty(contexts);
        }
        Assert.Equal(ErrUnknown, (await client.MetaContextAsync(OptListMetaContext, "nope")).Final);
        // Malformed: a query count with no queries after it.
        await client.SendOptionAsync(OptListMetaContext, [0, 0, 0, 4, (byte)'d', (byte)'i', (byte)'s', (byte)'k', 0, 0, 0, 1]);
        Assert.Equal(ErrInvalid, (await client.ReadOptionReplyAsync()).Type);
    }

    [Fact]
    public async Task Each_set_gives_a_new_id_a_later_set_replaces_the_earlier_and_go_keeps_it()
    {
        await using var server = new TestServer(capacity: Size);
        await using var client = await ConnectAsync(server.Tcp);
        await client.StartAsync();
        await client.SendOptionAsync(OptStructuredReply, []);
        Assert.Equal(RepAck, (await client.ReadOptionReplyAsync()).Type);

        var (first, _) = await client.MetaContextAsync(OptSetMetaContext, "disk", "base:allocation");
        var (second, _) = await client.MetaContextAsync(OptSetMetaContext, "disk", "base:allocation", "other:thing");
        Assert.Single(first);
        Assert.Single(second);
        Assert.NotEqual(0u, first[0].Id);
        Assert.NotEqual(first[0].Id, second[0].Id);
        Assert.Equal("base:allocation", second[0].Name);
        await client.GoAsync("disk");

        var (reply, contextId, extents) = await client.BlockStatusAsync(0, Size);
        Assert.Equal(0, reply.Error);
        Assert.Equal(second[0].Id, contextId);
        Assert.Equal([(Size, Data)], extents); // a memory disk cannot tell: all data
    }

    [Fact]
    public async Task A_later_set_without_the_context_leaves_none_and_block_status_is_refused()
    {
        await using var server = new TestServer(capacity: Size);
        await using var client = await ConnectAsync(server.Tcp);
        await client.StartAsync();
        await client.SendOptionAsync(OptStructuredReply, []);
        Assert.Equal(RepAck, (await client.ReadOptionReplyAsync()).Type);
        Assert.Single((await client.MetaContextAsync(OptSetMetaContext, "disk", "base:allocation")).Contexts);
        var (none, final) = await client.MetaContextAsync(OptSetMetaContext, "disk", "base:");
        Assert.Equal(RepAck, final);
        Assert.Empty(none);
        await client.GoAsync("disk");
        var (reply, _, _) = await client.BlockStatusAsync(0, 4096);
        Assert.Equal(EINVAL, reply.Error);
        Assert.Contains("metadata context", reply.Message);
    }

    [Fact]
    public async Task Go_to_another_export_than_the_one_set_drops_the_context()
    {
        await using var server = new TestServer(capacity: Size);
        server.Server.AddExport(new NbdExport("other", new MemoryBlockDevice(Size)));
        await using var client = await ConnectAsync(server.Tcp);
        await client.StartAsync();
        await client.SendOptionAsync(OptStructuredReply, []);
        Assert.Equal(RepAck, (await client.ReadOptionReplyAsync()).Type);
        Assert.Single((await client.MetaContextAsync(OptSetMetaContext, "disk", "base:allocation")).Contexts);
        await client.GoAsync("other");
        Assert.Equal(EINVAL, (await client.BlockStatusAsync(0, 4096)).Reply.Error);
    }

    [Theory]
    [MemberData(nameof(Directories))]
    public async Task Sparse_file_holes_and_data_are_reported_at_their_offsets(string where)
    {
        using var temp = new TempDirectory();
        string directory = Directory(where, temp);
        try
        {
            using var device = SparseFile(directory);
            await using var server = new TestServer(device);
            var (client, _) = await OpenAsync(server.Tcp, structured: true, metaContexts: ["base:allocation"]);
            await using var _c = client;

            var (reply, _, extents) = await client.BlockStatusAsync(0, Size);
            Assert.Equal(0, reply.Error);
            Assert.Equal([(256u << 10, HoleZero), (64u << 10, Data), (448u << 10, HoleZero), (4096u, Data), ((252u << 10), HoleZero)], extents);

            // A range inside: starts at the request, never past its end.
            (_, _, extents) = await client.BlockStatusAsync(300 << 10, 100 << 10);
            Assert.Equal([(20u << 10, Data), (80u << 10, HoleZero)], extents);

            // Not sector-aligned: still exact at both ends.
            (_, _, extents) = await client.BlockStatusAsync((256 << 10) - 100, 200);
            Assert.Equal([(100u, HoleZero), (100u, Data)], extents);

            // REQ_ONE: the first extent only.
            (reply, _, extents) = await client.BlockStatusAsync(0, Size, FlagReqOne);
            Assert.Equal(0, reply.Error);
            Assert.Equal([(256u << 10, HoleZero)], extents);
            (_, _, extents) = await client.BlockStatusAsync(260 << 10, Size - (260 << 10), FlagReqOne);
            Assert.Equal([(60u << 10, Data)], extents);

            // Writing into a hole makes it data; the neighbours merge.
            await client.WriteAsync(320 << 10, new byte[4096]);
            (_, _, extents) = await client.BlockStatusAsync(256 << 10, 128 << 10);
            Assert.Equal([(68u << 10, Data), (60u << 10, HoleZero)], extents);
        }
        finally
        {
            if (where == "shm")
                System.IO.Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task A_fragmented_file_gets_at_most_512_descriptors_and_the_client_asks_again_for_the_rest()
    {
        using var temp = new TempDirectory();
        const int Blocks = 700, Capacity = Blocks * 8192;
        using var device = FileBlockDevice.Create(temp.File("fragmented.img"), Capacity);
        var block = new byte[4096];
        block.AsSpan().Fill(0x5a);
        for (int i = 0; i < Blocks; i++)
            await device.WriteAsync(i * 8192L, block, cancellationToken: TestContext.Current.CancellationToken);
        await using var server = new TestServer(device);
        var (client, _) = await OpenAsync(server.Tcp, structured: true, metaContexts: ["base:allocation"]);
        await using var _c = client;

        var (reply, _, extents) = await client.BlockStatusAsync(0, Capacity);
        Assert.Equal(0, reply.Error);
        Assert.Equal(512, extents.Count);
        for (int i = 0; i < extents.Count; i++)
            Assert.Equal((4096u, i % 2 == 0 ? Data : HoleZero), extents[i]);
        long position = extents.Sum(e => e.Length), total = position;
        int count = extents.Count;
        while (position < Capacity)
        {
            (reply, _, extents) = await client.BlockStatusAsync(position, (uint)(Capacity - position));
            Assert.Equal(0, reply.Error);
            Assert.Equal(position % 8192 == 0 ? Data : HoleZero, extents[0].Flags);
            position += extents.Sum(e => e.Length);
            count += extents.Count;
        }
        Assert.Equal(Capacity, position);
        Assert.Equal(2 * Blocks, count);
        Assert.True(total < Capacity);
    }

    [Fact]
    public async Task Bad_block_status_requests_get_einval()
    {
        using var temp = new TempDirectory();
        using var device = SparseFile(temp.Path);
        await using var server = new TestServer(device);

        // Without a negotiated context (structured replies but no SET).
        var (plain, _) = await OpenAsync(server.Tcp, structured: true);
        await using (plain)
        {
            var (reply, _, _) = await plain.BlockStatusAsync(0, 4096);
            Assert.Equal(EINVAL, reply.Error);
            // The connection goes on.
            Assert.Equal(4096, (await plain.ReadAsync(0, 4096)).Length);
        }

        var (client, _) = await OpenAsync(server.Unix, structured: true, metaContexts: ["base:allocation"]);
        await using var _c = client;
        Assert.Equal(EINVAL, (await client.BlockStatusAsync(0, 0)).Reply.Error);
        Assert.Equal(EINVAL, (await client.BlockStatusAsync(Size, 512)).Reply.Error);
        Assert.Equal(EINVAL, (await client.BlockStatusAsync(Size - 512, 1024)).Reply.Error);
        Assert.Equal(EINVAL, (await client.BlockStatusAsync(0, 4096, FlagFua)).Reply.Error);
        var (ok, _, extents) = await client.BlockStatusAsync(Size - 512, 512);
        Assert.Equal(0, ok.Error);
        Assert.Equal([(512u, HoleZero)], extents);
    }
}
