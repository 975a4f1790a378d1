using Storage.Devices;
using static Storage.Nbd.Tests.NbdTestClient;

namespace Storage.Nbd.Tests;

/// <summary>Each command, FUA, concurrency and completion order, with simple and structured replies.</summary>
public class TransmissionTests
{
    [Theory]
    [InlineData(false, 512)]
    [InlineData(true, 512)]
    [InlineData(false, 4096)]
    [InlineData(true, 4096)]
    public async Task Reads_and_writes_at_any_offset_match_a_byte_array_model(bool structured, int sectorSize)
    {
        await using var server = new TestServer(capacity: 1 << 20, sectorSize: sectorSize, seed: 7);
        var model = server.Memory!.Bytes.ToArray();
        var (client, _) = await OpenAsync(server.Tcp, structured: structured);
        await using var _ = client;
        var random = new Random(sectorSize + (structured ? 1 : 0));
        for (int i = 0; i < 200; i++)
        {
            // Mostly unaligned: starts and ends anywhere, within one sector or across many.
            int length = random.Next(4) switch { 0 => random.Next(1, 64), 1 => random.Next(1, 3 * sectorSize), _ => random.Next(1, 40_000) };
            int offset = random.Next(model.Length - length);
            if (random.Next(3) == 0)
                (offset, length) = (offset / sectorSize * sectorSize, Math.Max(1, length / sectorSize) * sectorSize);
            if (random.Next(2) == 0)
            {
                var data = new byte[length];
                random.NextBytes(data);
                await client.WriteAsync(offset, data, random.Next(4) == 0 ? FlagFua : (ushort)0);
                data.CopyTo(model, offset);
            }
            else
            {
                Assert.Equal(model.AsSpan(offset, length).ToArray(), await client.ReadAsync(offset, length));
            }
        }
        Assert.True(model.AsSpan().SequenceEqual(server.Memory.Bytes), "the device differs from the model");
    }

    [Theory]
    [InlineData(512)]
    [InlineData(4096)]
    public async Task Concurrent_unaligned_writes_into_the_same_sectors_all_land(int sectorSize)
    {
        // Device calls take a millisecond, so the read-modify-writes of requests in flight together interleave
        // unless the server serialises them.
        using var inner = new MemoryBlockDevice(1 << 20, sectorSize);
        using var slow = new FaultInjectingDevice(inner, seed: 3, leaveInnerOpen: true) { Latency = TimeSpan.FromMilliseconds(1) };
        await using var server = new TestServer(slow);
        var (a, _) = await OpenAsync(server.Tcp);
        var (b, _) = await OpenAsync(server.Unix, structured: true);
        await using var _ = a;
        await using var __ = b;
        const int Pieces = 64, Piece = 100;
        var requests = new[] { new List<byte>(), new List<byte>() };
        for (int i = 0; i < Pieces; i++)
        {
            // Piece i covers bytes [i * 100, i * 100 + 100) of the first sectors: neighbours share sectors.
            var data = Enumerable.Repeat((byte)(i + 1), Piece).ToArray();
            requests[i % 2].AddRange(Request(CmdWrite, 0, (ulong)i, (ulong)(i * Piece), Piece, data));
        }
        await Task.WhenAll(a.SendAsync(requests[0].ToArray()), b.SendAsync(requests[1].ToArray()));
        for (int i = 0; i < Pieces / 2; i++)
        {
            Assert.Equal(0, (await a.ReadReplyAsync()).Error);
            Assert.Equal(0, (await b.ReadReplyAsync()).Error);
        }
        Assert.Equal(0, (await a.RoundTripAsync(CmdFlush, 0, 0)).Error);
        for (int i = 0; i < Pieces; i++)
            Assert.True(inner.Bytes.Slice(i * Piece, Piece).IndexOfAnyExcept((byte)(i + 1)) < 0, $"piece {i} was lost");
    }

    [Fact]
    public async Task Fua_writes_are_durable_at_once_and_flush_makes_earlier_writes_durable()
    {
        using var inner = new MemoryBlockDevice(1 << 20);
        using var cached = new FaultInjectingDevice(inner, seed: 1, leaveInnerOpen: true);
        await using var server = new TestServer(cached);
        var (client, _) = await OpenAsync(server.Tcp);
        await using var _ = client;

        var plain = Enumerable.Repeat((byte)0x5a, 8192).ToArray();
        await client.WriteAsync(0, plain);
        Assert.NotEqual(plain, inner.Bytes[..8192].ToArray()); // still in the device's write cache

        var forced = Enumerable.Repeat((byte)0xa5, 4096).ToArray();
        await client.WriteAsync(65536, forced, FlagFua);
        Assert.Equal(forced, inner.Bytes.Slice(65536, 4096).ToArray());

        // Unaligned FUA (read-modify-write in several pieces) is durable too.
        var odd = Enumerable.Repeat((byte)0x77, 1000).ToArray();
        await client.WriteAsync(200_100, odd, FlagFua);
        Assert.Equal(odd, inner.Bytes.Slice(200_100, 1000).ToArray());

        Assert.Equal(0, (await client.RoundTripAsync(CmdFlush, 0, 0)).Error);
        Assert.Equal(plain, inner.Bytes[..8192].ToArray());
        Assert.Equal(0, cached.UnflushedSectors);
    }

    [Fact]
    public async Task Trim_discards_whole_sectors_only()
    {
        await using var server = new TestServer(capacity: 1 << 20, seed: 3);
        var before = server.Memory!.Bytes.ToArray();
        var (client, _) = await OpenAsync(server.Tcp);
        await using var _ = client;
        Assert.Equal(0, (await client.RoundTripAsync(CmdTrim, 1000, 5000)).Error);
        // [1000, 6000): sectors 1024..5632 are whole; MemoryBlockDevice zeroes what it trims.
        Assert.True(server.Memory.Bytes[1024..5632].IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(before[..1024], server.Memory.Bytes[..1024].ToArray());
        Assert.Equal(before[5632..], server.Memory.Bytes[5632..].ToArray());
        Assert.Equal(0, (await client.RoundTripAsync(CmdTrim, 8192, 4096, flags: FlagFua)).Error);
    }

    [Theory]
    [InlineData(0, 4096, 0)]
    [InlineData(100, 3000, FlagNoHole)]
    [InlineData(512, 3 << 20, FlagFua)] // larger than the server's 1 MiB zero buffer
    [InlineData(777, (3 << 20) + 5, FlagFua | FlagNoHole)]
    public async Task Write_zeroes_zeroes_exactly_the_range(int offset, int length, ushort flags)
    {
        await using var server = new TestServer(capacity: 8 << 20, seed: 5);
        var before = server.Memory!.Bytes.ToArray();
        var (client, _) = await OpenAsync(server.Tcp, structured: true);
        await using var _ = client;
        var reply = await client.RoundTripAsync(CmdWriteZeroes, (ulong)offset, (uint)length, flags: flags);
        Assert.Equal(0, reply.Error);
        var after = server.Memory.Bytes;
        Assert.True(after.Slice(offset, length).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(before[..offset], after[..offset].ToArray());
        Assert.Equal(before[(offset + length)..], after[(offset + length)..].ToArray());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Bad_requests_get_the_documented_errors_and_the_connection_goes_on(bool structured)
    {
        await using var server = new TestServer(capacity: 1 << 20);
        var before = server.Memory!.Bytes.ToArray();
        var (client, _) = await OpenAsync(server.Tcp, structured: structured);
        await using var _ = client;

        async Task Expect(int error, ushort type, ulong offset, uint length, ushort flags = 0, byte[]? payload = null)
        {
            var reply = await client.RoundTripAsync(type, offset, length, payload, flags);
            Assert.True(error == reply.Error, $"command {type} flags {flags} at {offset}+{length}: expected {error}, got {reply.Error} ({reply.Message})");
            Assert.Null(reply.Data);
            if (structured)
                Assert.False(string.IsNullOrEmpty(reply.Message), "a structured error carries a message");
        }

        await Expect(EINVAL, 5, 0, 512); // NBD_CMD_CACHE: not offered
        await Expect(EINVAL, 7, 0, 512); // BLOCK_STATUS without a meta context
        await Expect(EINVAL, 200, 0, 0);
        await Expect(EINVAL, CmdRead, 0, 512, flags: 0x10);
        await Expect(EINVAL, CmdWrite, 0, 512, flags: FlagNoHole, payload: new byte[512]);
        if (!structured)
            await Expect(EINVAL, CmdRead, 0, 512, flags: FlagDf); // DF only with structured replies
        await Expect(EINVAL, CmdRead, 0, 0);
        await Expect(EINVAL, CmdRead, (1 << 20) - 512, 1024);
        await Expect(EINVAL, CmdRead, ulong.MaxValue - 100, 512); // offset + length overflows
        await Expect(ENOSPC, CmdWrite, (1 << 20) - 512, 1024, payload: new byte[1024]);
        await Expect(ENOSPC, CmdWriteZeroes, 1 << 20, 512);
        await Expect(EINVAL, CmdTrim, 1 << 21, 512);
        await Expect(EOVERFLOW, CmdRead, 0, (32 << 20) + 1);
        // A refused write's payload is skipped, so the next request parses.
        await Expect(EOVERFLOW, CmdWrite, 0, (32 << 20) + 512, payload: new byte[(32 << 20) + 512]);

        Assert.Equal(before[..4096], await client.ReadAsync(0, 4096));
        if (structured)
            Assert.Equal(before[..512], (await client.RoundTripAsync(CmdRead, 0, 512, flags: FlagDf | FlagFua)).Data);
        Assert.True(before.AsSpan().SequenceEqual(server.Memory.Bytes), "a refused request changed the device");
    }

    [Fact]
    public async Task A_read_only_export_refuses_writes_with_eperm()
    {
        await using var server = new TestServer(capacity: 1 << 20, readOnly: true);
        var before = server.Memory!.Bytes.ToArray();
        var (client, info) = await OpenAsync(server.Unix);
        await using var _ = client;
        Assert.NotEqual(0, info.Flags & TxReadOnly);
        Assert.Equal(EPERM, (await client.RoundTripAsync(CmdWrite, 0, 512, new byte[512])).Error);
        Assert.Equal(EPERM, (await client.RoundTripAsync(CmdTrim, 0, 512)).Error);
        Assert.Equal(EPERM, (await client.RoundTripAsync(CmdWriteZeroes, 0, 512)).Error);
        Assert.Equal(0, (await client.RoundTripAsync(CmdFlush, 0, 0)).Error);
        Assert.Equal(before[..512], await client.ReadAsync(0, 512));
        Assert.True(before.AsSpan().SequenceEqual(server.Memory.Bytes));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Device_failures_are_eio_and_other_requests_are_unaffected(bool structured)
    {
        using var inner = new MemoryBlockDevice(1 << 20);
        using var faulty = new FaultInjectingDevice(inner, seed: 2, leaveInnerOpen: true);
        faulty.FailReads(8192, 4096);
        faulty.FailWrites(16384, 512);
        await using var server = new TestServer(faulty);
        var (client, _) = await OpenAsync(server.Tcp, structured: structured);
        await using var _ = client;

        var read = await client.RoundTripAsync(CmdRead, 8192, 4096);
        Assert.Equal(EIO, read.Error);
        Assert.Null(read.Data);
        if (structured)
            Assert.Contains("8192", read.Message);
        Assert.Equal(EIO, (await client.RoundTripAsync(CmdRead, 8000, 300)).Error); // unaligned, touching the bad range
        Assert.Equal(EIO, (await client.RoundTripAsync(CmdWrite, 16384, 512, new byte[512])).Error);
        faulty.FailFlushes = true;
        Assert.Equal(EIO, (await client.RoundTripAsync(CmdFlush, 0, 0)).Error);
        faulty.FailFlushes = false;

        await client.WriteAsync(0, [1, 2, 3]);
        Assert.Equal([1, 2, 3], await client.ReadAsync(0, 3));
        Assert.Equal(0, server.Server.UnexpectedErrorCount);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Many_requests_in_flight_are_all_answered_by_cookie(bool structured)
    {
        await using var server = new TestServer(capacity: 4 << 20, seed: 11);
        var model = server.Memory!.Bytes.ToArray();
        var (client, _) = await OpenAsync(server.Unix, structured: structured);
        await using var _ = client;
        var random = new Random(12);
        var expected = new Dictionary<ulong, byte[]?>();
        var requests = new List<byte[]>();
        for (ulong cookie = 1; cookie <= 300; cookie++)
        {
            // Each request has its own 8 KiB slot, so the outcome does not depend on the order they run in.
            int slot = (int)cookie * 8192;
            int length = random.Next(1, 8192);
            if (cookie % 3 == 0)
            {
                var data = new byte[length];
                random.NextBytes(data);
                data.CopyTo(model, slot);
                requests.Add(Request(CmdWrite, cookie % 7 == 0 ? FlagFua : (ushort)0, cookie, (ulong)slot, (uint)length, data));
                expected[cookie] = null;
            }
            else
            {
                client.ExpectRead(cookie, (uint)length);
                requests.Add(Request(CmdRead, 0, cookie, (ulong)slot, (uint)length));
                expected[cookie] = model.AsSpan(slot, length).ToArray();
            }
        }
        // All requests leave in one go, read replies meanwhile (as real clients do: the server stops reading when
        // its in-flight limit is reached and the replies are not collected).
        var send = client.SendAsync(requests.SelectMany(r => r).ToArray());
        for (int i = 0; i < 300; i++)
        {
            var reply = await client.ReadReplyAsync();
            Assert.Equal(0, reply.Error);
            Assert.True(expected.Remove(reply.Cookie, out var data), $"reply for unknown or repeated cookie {reply.Cookie}");
            Assert.Equal(data, reply.Data);
        }
        await send;
        Assert.True(model.AsSpan().SequenceEqual(server.Memory.Bytes));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Replies_come_in_completion_order_not_request_order(bool structured)
    {
        var device = new GatedDevice(1 << 20);
        await using var server = new TestServer(device);
        var (client, _) = await OpenAsync(server.Tcp, structured: structured);
        await using var _ = client;
        device.Hold(0);
        await client.SendRequestAsync(CmdRead, 0, 1, 0, 4096);
        await client.SendRequestAsync(CmdRead, 0, 2, 4096, 4096);
        await client.SendRequestAsync(CmdWrite, 0, 3, 8192, 512, new byte[512]);
        var second = await client.ReadReplyAsync();
        var third = await client.ReadReplyAsync();
        Assert.Equal([2UL, 3UL], new[] { second.Cookie, third.Cookie }.Order());
        device.Open(0);
        var first = await client.ReadReplyAsync();
        Assert.Equal(1UL, first.Cookie);
        Assert.Equal(4096, first.Data!.Length);
    }

    [Theory]
    [InlineData("tcp", false)]
    [InlineData("unix", true)]
    public async Task A_slow_reader_gets_every_reply_intact(string transport, bool structured)
    {
        // More reply data than the socket buffers hold, collected only after a pause: the socket fills, and the
        // connection's send thread finishes what the senders on the way could not send without waiting.
        await using var server = new TestServer(capacity: 16 << 20, seed: 13);
        var (client, _) = await OpenAsync(server.EndPoint(transport), structured: structured);
        await using var _ = client;
        var requests = new List<byte>();
        for (ulong cookie = 0; cookie < 24; cookie++)
        {
            client.ExpectRead(cookie, 1 << 20);
            requests.AddRange(Request(CmdRead, 0, cookie, cookie % 16 << 20, 1 << 20));
        }
        await client.SendAsync(requests.ToArray());
        await Task.Delay(300, TestContext.Current.CancellationToken);
        var seen = new HashSet<ulong>();
        for (int i = 0; i < 24; i++)
        {
            var reply = await client.ReadReplyAsync();
            Assert.Equal(0, reply.Error);
            Assert.True(seen.Add(reply.Cookie));
            int offset = (int)(reply.Cookie % 16) << 20;
            Assert.True(server.Memory!.Bytes.Slice(offset, 1 << 20).SequenceEqual(reply.Data), $"reply {reply.Cookie} has the wrong data");
        }
        Assert.True(server.Server.SendThreadTakeovers > 0, "the send thread never took over");
        await client.WriteAsync(0, [1, 2, 3]);
    }

    [Fact]
    public async Task The_in_flight_limit_holds_back_further_requests()
    {
        var device = new GatedDevice(1 << 20);
        await using var server = new TestServer(device, options: new NbdServerOptions { MaxRequestsInFlight = 2 });
        var (client, _) = await OpenAsync(server.Tcp);
        await using var _ = client;
        device.Hold(0);
        device.Hold(4096);
        for (ulong cookie = 1; cookie <= 3; cookie++)
            await client.SendRequestAsync(CmdRead, 0, cookie, (cookie - 1) * 4096, 512);
        await Task.Delay(200, TestContext.Current.CancellationToken);
        Assert.Equal(2, device.ReadsStarted); // the third waits for room
        device.Open(4096);
        var replies = new[] { await client.ReadReplyAsync(), await client.ReadReplyAsync() };
        Assert.Equal([2UL, 3UL], replies.Select(r => r.Cookie).Order());
        device.Open(0);
        Assert.Equal(1UL, (await client.ReadReplyAsync()).Cookie);
    }

    [Fact]
    public async Task The_byte_budget_is_given_back_so_requests_still_run_concurrently_after_much_traffic()
    {
        var device = new GatedDevice(1 << 20);
        await using var server = new TestServer(device, options: new NbdServerOptions { MaxBytesInFlight = 64 << 10 });
        var (client, _) = await OpenAsync(server.Tcp, structured: true);
        await using var _ = client;
        // Ten times the budget, one request at a time.
        for (int i = 0; i < 160; i++)
            await client.ReadAsync(i % 64 * 4096, 4096);
        await client.WriteAsync(0, new byte[65536]);
        // Two requests within the budget must still run at once: the second completes while the first is held.
        device.Hold(8192);
        await client.SendRequestAsync(CmdRead, 0, 1, 8192, 4096);
        await client.SendRequestAsync(CmdRead, 0, 2, 16384, 4096);
        var reply = await client.ReadReplyAsync();
        Assert.Equal(2UL, reply.Cookie);
        device.Open(8192);
        Assert.Equal(1UL, (await client.ReadReplyAsync()).Cookie);
    }

    [Fact]
    public async Task Disconnect_answers_requests_in_flight_first()
    {
        var device = new GatedDevice(1 << 20);
        await using var server = new TestServer(device);
        var (client, _) = await OpenAsync(server.Tcp);
        await using var _ = client;
        device.Hold(0);
        await client.SendRequestAsync(CmdRead, 0, 9, 0, 4096);
        await client.SendAsync(Request(CmdDisc, 0, 10, 0, 0));
        await Task.Delay(100, TestContext.Current.CancellationToken);
        device.Open(0);
        var reply = await client.ReadReplyAsync();
        Assert.Equal(9UL, reply.Cookie);
        Assert.Equal(0, reply.Error);
        Assert.True(await client.IsClosedByServerAsync());
        await server.WaitForNoConnectionsAsync();
    }

    [Fact]
    public async Task A_client_that_vanishes_mid_write_changes_nothing_and_others_carry_on()
    {
        await using var server = new TestServer(capacity: 1 << 20, seed: 9);
        var before = server.Memory!.Bytes.ToArray();
        var (other, _) = await OpenAsync(server.Tcp);
        await using var _ = other;
        var (client, _) = await OpenAsync(server.Tcp);
        var request = Request(CmdWrite, 0, 1, 4096, 65536, new byte[65536]);
        await client.SendAsync(request.AsMemory(0, 28 + 30000)); // header and part of the payload
        await client.DisposeAsync();
        await Task.Delay(100, TestContext.Current.CancellationToken);
        Assert.True(before.AsSpan().SequenceEqual(server.Memory.Bytes));
        Assert.Equal(before[..512], await other.ReadAsync(0, 512));
        await server.WaitForConnectionsAsync(1);
    }

    [Fact]
    public async Task A_bad_request_magic_closes_that_connection_only()
    {
        await using var server = new TestServer(capacity: 1 << 20);
        var (other, _) = await OpenAsync(server.Unix);
        await using var _ = other;
        var (client, _) = await OpenAsync(server.Unix);
        await using var __ = client;
        var request = Request(CmdRead, 0, 1, 0, 512);
        request[0] ^= 0xff;
        await client.SendAsync(request);
        Assert.True(await client.IsClosedByServerAsync());
        Assert.Equal(server.Memory!.Bytes[..512].ToArray(), await other.ReadAsync(0, 512));
    }

    [Fact]
    public async Task Writes_on_one_connection_are_seen_on_another_after_flush()
    {
        await using var server = new TestServer(capacity: 1 << 20);
        var (a, _) = await OpenAsync(server.Tcp);
        var (b, _) = await OpenAsync(server.Unix, structured: true);
        await using var _ = a;
        await using var __ = b;
        var data = Enumerable.Range(0, 4096).Select(i => (byte)i).ToArray();
        await a.WriteAsync(12288, data);
        Assert.Equal(0, (await a.RoundTripAsync(CmdFlush, 0, 0)).Error);
        Assert.Equal(data, await b.ReadAsync(12288, 4096));
        Assert.Equal(2, server.Server.GetConnectionCount("disk"));
    }
}
