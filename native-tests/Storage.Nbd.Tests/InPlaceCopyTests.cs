using Storage.Devices;
using static Storage.Nbd.Tests.NbdTestClient;

namespace Storage.Nbd.Tests;

/// <summary>
/// Payloads copied in place by the receive thread on TCP connections (<see cref="INoWaitBlockDevice"/>), large read
/// payloads sent in a call of their own, and what a full file system tells the client.
/// </summary>
public class InPlaceCopyTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Transfers_done_partly_in_place_and_partly_later_come_out_whole(bool structured)
    {
        using var device = new PartlyWaitingDevice(8 << 20);
        await using var server = new TestServer(device);
        var model = new byte[device.Capacity];
        var (client, _) = await OpenAsync(server.Tcp, structured: structured);
        await using var _ = client;
        var random = new Random(structured ? 21 : 22);
        for (int i = 0; i < 60; i++)
        {
            int length = random.Next(3) switch { 0 => 4096, 1 => 1 << 20, _ => random.Next(1, 300) * 512 };
            int offset = random.Next((model.Length - length) / 512) * 512;
            if (random.Next(2) == 0)
            {
                var data = new byte[length];
                random.NextBytes(data);
                await client.WriteAsync(offset, data);
                data.CopyTo(model, offset);
            }
            else
            {
                Assert.Equal(model.AsSpan(offset, length).ToArray(), await client.ReadAsync(offset, length));
            }
        }
        Assert.True(model.AsSpan().SequenceEqual(device.Inner.Bytes), "the device differs from the model");
        Assert.True(device.InPlaceCalls > 0, "nothing was copied in place over TCP");
    }

    [Fact]
    public async Task Over_a_unix_socket_nothing_is_copied_in_place()
    {
        using var device = new PartlyWaitingDevice(4 << 20);
        await using var server = new TestServer(device);
        var (client, _) = await OpenAsync(server.Unix);
        await using var _ = client;
        var data = Bytes.Random(1 << 20, 23);
        await client.WriteAsync(4096, data);
        Assert.Equal(data, await client.ReadAsync(4096, data.Length));
        Assert.Equal(0, device.InPlaceCalls);
    }

    [Fact]
    public async Task Forced_writes_are_not_copied_in_place_and_are_durable_when_acknowledged()
    {
        using var device = new PartlyWaitingDevice(4 << 20);
        await using var server = new TestServer(device);
        var (client, _) = await OpenAsync(server.Tcp);
        await using var _ = client;
        var data = Bytes.Random(1 << 20, 24);
        await client.WriteAsync(0, data, FlagFua);
        Assert.Equal(0, device.InPlaceCalls);
        Assert.Equal(1, device.ForcedWrites);
        Assert.True(device.Inner.Bytes[..data.Length].SequenceEqual(data));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_copy_in_place_that_fails_gets_an_error_reply_and_the_connection_goes_on(bool structured)
    {
        using var device = new PartlyWaitingDevice(4 << 20);
        await using var server = new TestServer(device);
        var (client, _) = await OpenAsync(server.Tcp, structured: structured);
        await using var _ = client;
        device.InPlaceFailure = new BlockDeviceException("partly-waiting", 0, 1 << 20, "the disk is on fire");
        Assert.Equal(EIO, (await client.RoundTripAsync(CmdRead, 0, 1 << 20)).Error);
        Assert.Equal(EIO, (await client.RoundTripAsync(CmdWrite, 0, 4096, new byte[4096])).Error);
        device.InPlaceFailure = null;
        var data = Bytes.Random(1 << 20, 25);
        await client.WriteAsync(0, data);
        Assert.Equal(data, await client.ReadAsync(0, data.Length));
    }

    [Theory]
    [InlineData("tcp", false)]
    [InlineData("tcp", true)]
    [InlineData("unix", false)]
    [InlineData("unix", true)]
    public async Task Large_and_small_replies_sent_together_arrive_intact(string transport, bool structured)
    {
        // One batch of requests whose replies mix payloads sent by a call of their own (64 KiB and up) with small
        // ones, replies without data, and an error: every reply must come out whole and in its own frame. The device
        // is not copied in place, so its replies, done at once, gather while the batch is parsed and leave together.
        using var device = new GatedDevice(16 << 20);
        new Random(26).NextBytes(device.Inner.Bytes);
        await using var server = new TestServer(device);
        var (client, _) = await OpenAsync(server.EndPoint(transport), structured: structured);
        await using var _ = client;
        (ushort Type, ulong Offset, uint Length)[] plan =
        [
            (CmdRead, 0, 4096), (CmdRead, 4096, 1 << 20), (CmdFlush, 0, 0), (CmdRead, 3 << 20, 64 << 10),
            (CmdRead, 5 << 20, (64 << 10) - 512), (CmdRead, 16 << 20, 4096), (CmdRead, 7 << 20, 2 << 20),
            (CmdWrite, 12 << 20, 512), (CmdRead, 512, 512), (CmdRead, 9 << 20, 1 << 20),
        ];
        var requests = new List<byte>();
        for (int i = 0; i < plan.Length; i++)
        {
            var (type, offset, length) = plan[i];
            if (type == CmdRead)
                client.ExpectRead((ulong)i, length);
            requests.AddRange(Request(type, 0, (ulong)i, offset, length, type == CmdWrite ? new byte[length] : default));
        }
        await client.SendAsync(requests.ToArray());
        var seen = new HashSet<ulong>();
        for (int i = 0; i < plan.Length; i++)
        {
            var reply = await client.ReadReplyAsync();
            Assert.True(seen.Add(reply.Cookie), $"reply {reply.Cookie} came twice");
            var (type, offset, length) = plan[reply.Cookie];
            if (offset + length > (ulong)device.Capacity)
            {
                Assert.Equal(EINVAL, reply.Error);
                continue;
            }
            Assert.Equal(0, reply.Error);
            if (type == CmdRead && reply.Cookie != 8)   // request 8 reads what request 7 may or may not have written yet
                Assert.True(device.Inner.Bytes.Slice((int)offset, (int)length).SequenceEqual(reply.Data), $"reply {reply.Cookie} has the wrong data");
        }
        Assert.Equal(0, (await client.RoundTripAsync(CmdFlush, 0, 0)).Error);
    }

    [Theory]
    [InlineData("tcp")]
    [InlineData("unix")]
    public async Task Writing_to_a_full_file_system_tells_the_client_there_is_no_space(string transport)
    {
        Requires.Tool("mount", "mount");
        using var fs = SmallTmpfs.TryMount(1 << 20, out string reason);
        if (fs is null)
            Requires.Missing(reason);
        using var device = FileBlockDevice.Create(fs!.File("disk.img"), 8 << 20);   // sparse, larger than the file system
        await using var server = new TestServer(device);
        var (client, _) = await OpenAsync(server.EndPoint(transport), structured: true);
        await using var _ = client;
        var data = Bytes.Random(1 << 20, 27);
        int error = 0;
        for (long at = 0; at < device.Capacity && error == 0; at += data.Length)
            error = (await client.RoundTripAsync(CmdWrite, (ulong)at, (uint)data.Length, data)).Error;
        Assert.Equal(ENOSPC, error);
        Assert.Equal(ENOSPC, (await client.RoundTripAsync(CmdWrite, 7 << 20, 4096, data.AsMemory(0, 4096))).Error);
        Assert.Equal(0, (await client.RoundTripAsync(CmdRead, 0, 4096)).Error);   // the connection goes on
    }
}
