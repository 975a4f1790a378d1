using System.Buffers.Binary;
using System.Text;
using Storage.Devices;
using static Storage.Nbd.Tests.NbdTestClient;

namespace Storage.Nbd.Tests;

/// <summary>Fixed-newstyle option haggling, well-behaved and not.</summary>
public class HandshakeTests
{
    [Theory]
    [InlineData("tcp")]
    [InlineData("unix")]
    public async Task Go_describes_the_export_with_block_sizes_and_enters_transmission(string transport)
    {
        await using var server = new TestServer(capacity: 8 << 20);
        await using var client = await ConnectAsync(server.EndPoint(transport));
        ushort handshakeFlags = await client.StartAsync();
        Assert.Equal(3, handshakeFlags); // FIXED_NEWSTYLE | NO_ZEROES

        var info = await client.GoAsync("disk");
        Assert.Equal(8 << 20, info.Size);
        Assert.Equal("disk", info.Name);
        Assert.Equal("test disk", info.Description);
        Assert.Equal((512, 4096, 32 << 20), info.BlockSize);
        Assert.Equal(TxHasFlags | TxFlush | TxFua | TxTrim | TxWriteZeroes | TxMultiConn, info.Flags);

        Assert.Equal(server.Memory!.Bytes[..4096].ToArray(), await client.ReadAsync(0, 4096));
        await client.DisconnectAsync();
    }

    [Fact]
    public async Task Info_answers_and_haggling_goes_on()
    {
        await using var server = new TestServer();
        await using var client = await ConnectAsync(server.Tcp);
        await client.StartAsync();
        var (final, info, _) = await client.InfoAsync(OptInfo, "disk");
        Assert.Equal(RepAck, final);
        Assert.Equal(16 << 20, info.Size);
        Assert.Null(info.BlockSize); // not asked for
        Assert.Null(info.Name);

        (final, _, var error) = await client.InfoAsync(OptInfo, "nope", InfoBlockSize);
        Assert.Equal(ErrUnknown, final);
        Assert.Contains("nope", error);

        await client.GoAsync("disk");
        Assert.Equal(server.Memory!.Bytes[512..1024].ToArray(), await client.ReadAsync(512, 512));
    }

    [Fact]
    public async Task Export_name_replies_size_and_flags_with_or_without_the_124_zeroes()
    {
        await using var server = new TestServer(capacity: 1 << 20);
        foreach (uint clientFlags in new uint[] { 1, 3 })
        {
            await using var client = await ConnectAsync(server.Tcp);
            await client.StartAsync(clientFlags);
            await client.SendOptionAsync(OptExportName, "disk"u8);
            var reply = await client.ReceiveAsync(clientFlags == 3 ? 10 : 134);
            Assert.Equal(1UL << 20, BinaryPrimitives.ReadUInt64BigEndian(reply));
            Assert.Equal(TxHasFlags | TxFlush | TxFua | TxTrim | TxWriteZeroes | TxMultiConn, BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(8)));
            Assert.All(reply[10..], b => Assert.Equal(0, b));
            Assert.Equal(server.Memory!.Bytes[..512].ToArray(), await client.ReadAsync(0, 512));
        }
    }

    [Fact]
    public async Task Export_name_of_an_unknown_export_closes_the_connection()
    {
        await using var server = new TestServer();
        await using var client = await ConnectAsync(server.Tcp);
        await client.StartAsync();
        await client.SendOptionAsync(OptExportName, "missing"u8);
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Fact]
    public async Task A_client_without_fixed_newstyle_can_still_use_export_name()
    {
        await using var server = new TestServer(capacity: 1 << 20);
        await using var client = await ConnectAsync(server.Tcp);
        await client.StartAsync(clientFlags: 0);
        await client.SendOptionAsync(OptExportName, "disk"u8);
        var reply = await client.ReceiveAsync(134);
        Assert.Equal(1UL << 20, BinaryPrimitives.ReadUInt64BigEndian(reply));
    }

    [Fact]
    public async Task List_names_every_export_with_its_description()
    {
        await using var server = new TestServer();
        using var second = new MemoryBlockDevice(1 << 20);
        server.Server.AddExport(new NbdExport("snap-1", second, readOnly: true));
        await using var client = await ConnectAsync(server.Tcp);
        await client.StartAsync();
        await client.SendOptionAsync(OptList, []);
        var names = new List<(string, string)>();
        while (true)
        {
            var reply = await client.ReadOptionReplyAsync();
            if (reply.Type == RepAck)
                break;
            Assert.Equal(RepServer, reply.Type);
            int length = (int)BinaryPrimitives.ReadUInt32BigEndian(reply.Data);
            names.Add((Encoding.UTF8.GetString(reply.Data, 4, length), Encoding.UTF8.GetString(reply.Data, 4 + length, reply.Data.Length - 4 - length)));
        }
        Assert.Equal([("disk", "test disk"), ("snap-1", "")], names);

        // The read-only export says so, and offers no write commands.
        var info = await client.GoAsync("snap-1");
        Assert.Equal(TxHasFlags | TxReadOnly | TxFlush | TxMultiConn, info.Flags);
    }

    [Fact]
    public async Task Unknown_options_are_refused_and_bad_option_data_is_invalid()
    {
        await using var server = new TestServer();
        await using var client = await ConnectAsync(server.Tcp);
        await client.StartAsync();

        async Task Expect(uint option, byte[] data, uint type)
        {
            await client.SendOptionAsync(option, data);
            var reply = await client.ReadOptionReplyAsync();
            Assert.Equal(option, reply.Option);
            Assert.Equal(type, reply.Type);
        }

        await Expect(4, [], ErrUnsup); // PEEK_EXPORT, withdrawn
        await Expect(10, [1, 2, 3], ErrInvalid); // SET_META_CONTEXT before structured replies
        await Expect(11, [], ErrUnsup); // EXTENDED_HEADERS: not offered
        await Expect(0xdeadbeef, new byte[300], ErrUnsup);
        await Expect(OptList, [0], ErrInvalid);
        await Expect(OptStructuredReply, [1], ErrInvalid);
        await Expect(OptStartTls, [], ErrPolicy); // no TLS on this listener
        await Expect(OptGo, [0, 0, 0, 9, 1, 2], ErrInvalid); // name longer than the data
        await Expect(OptGo, [0, 0, 0, 0, 0, 2, 0, 3], ErrInvalid); // two info requests announced, one sent
        await Expect(OptInfo, [0, 0], ErrInvalid);
        await Expect(99, new byte[64 << 10], ErrTooBig); // skipped, not buffered

        // Haggling still works.
        var info = await client.GoAsync("disk");
        Assert.Equal(16 << 20, info.Size);
    }

    [Fact]
    public async Task Option_data_beyond_any_reason_closes_the_connection()
    {
        await using var server = new TestServer();
        await using var client = await ConnectAsync(server.Tcp);
        await client.StartAsync();
        var header = Option(OptGo, []);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(12), 0xfffffff0);
        await client.SendAsync(header);
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Theory]
    [InlineData(new byte[] { 0, 0, 0, 4 })] // unknown client flag
    [InlineData(new byte[] { 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 7, 0, 0, 0, 0 })] // bad option magic
    public async Task Malformed_handshakes_close_the_connection(byte[] bytes)
    {
        await using var server = new TestServer();
        await using var client = await ConnectAsync(server.Tcp);
        await client.ReceiveAsync(18);
        await client.SendAsync(bytes);
        Assert.True(await client.IsClosedByServerAsync());
        await server.WaitForNoConnectionsAsync();
    }

    [Fact]
    public async Task Abort_is_acknowledged_then_the_connection_closes()
    {
        await using var server = new TestServer();
        await using var client = await ConnectAsync(server.Unix);
        await client.StartAsync();
        await client.SendOptionAsync(OptAbort, []);
        var reply = await client.ReadOptionReplyAsync();
        Assert.Equal(RepAck, reply.Type);
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Fact]
    public async Task A_client_that_stalls_in_the_handshake_is_dropped_after_the_timeout()
    {
        await using var server = new TestServer(options: new NbdServerOptions { HandshakeTimeout = TimeSpan.FromMilliseconds(300) });
        await using var client = await ConnectAsync(server.Tcp);
        await client.StartAsync();
        Assert.True(await client.IsClosedByServerAsync(TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public async Task Too_many_options_close_the_connection()
    {
        await using var server = new TestServer();
        await using var client = await ConnectAsync(server.Tcp);
        await client.StartAsync();
        var burst = Enumerable.Range(0, 300).SelectMany(_ => Option(42, [])).ToArray();
        await client.SendAsync(burst);
        Assert.True(await client.IsClosedByServerAsync());
    }

    [Fact]
    public async Task The_empty_name_selects_the_only_export_or_the_configured_default()
    {
        await using (var server = new TestServer(capacity: 1 << 20))
        {
            var (client, info) = await OpenAsync(server.Tcp, "");
            await using (client)
                Assert.Equal("disk", info.Name);
        }
        await using (var server = new TestServer(capacity: 1 << 20, options: new NbdServerOptions { DefaultExport = "other" }))
        {
            using var other = new MemoryBlockDevice(2 << 20);
            server.Server.AddExport(new NbdExport("other", other));
            var (client, info) = await OpenAsync(server.Tcp, "");
            await using (client)
            {
                Assert.Equal("other", info.Name);
                Assert.Equal(2 << 20, info.Size);
            }
        }
    }

    [Fact]
    public async Task Structured_replies_add_the_df_flag_and_export_preferred_block_size_is_advertised()
    {
        using var device = new MemoryBlockDevice(1 << 20, 4096);
        await using var server = new TestServer(device);
        using var striped = new MemoryBlockDevice(1 << 20, 512);
        server.Server.AddExport(new NbdExport("striped", striped) { PreferredBlockSize = 256 << 10 });
        var (client, info) = await OpenAsync(server.Tcp, structured: true);
        await using (client)
        {
            Assert.Equal(TxHasFlags | TxFlush | TxFua | TxTrim | TxWriteZeroes | TxMultiConn | TxDf, info.Flags);
            Assert.Equal((4096, 4096, 32 << 20), info.BlockSize);
        }
        (client, info) = await OpenAsync(server.Tcp, "striped");
        await using (client)
            Assert.Equal((512, 256 << 10, 32 << 20), info.BlockSize);
    }
}
