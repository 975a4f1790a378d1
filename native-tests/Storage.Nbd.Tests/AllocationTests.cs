using System.Buffers.Binary;
using System.Net.Sockets;
using static Storage.Nbd.Tests.NbdTestClient;

namespace Storage.Nbd.Tests;

/// <summary>
/// Serving a request allocates nothing once warm: buffers come from the native pool, requests from the connection's
/// free list, continuations are cached. Measured over the whole process, so these run alone, with a client on a
/// blocking socket and preallocated buffers (which allocates nothing itself).
/// </summary>
[Collection(AllocationGroup.Name)]
public class AllocationTests
{
    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public async Task Warm_requests_allocate_nothing(bool structured, bool unaligned)
    {
        const int Depth = 16, Rounds = 40, Length = 4096;
        await using var server = new TestServer(capacity: 4 << 20);
        var (client, _) = await OpenAsync(server.Tcp, structured: structured);
        await client.DisposeAsync();
        // The async client above cannot be used with blocking calls; open a second, blocking one by hand.
        using var socket = new Socket(System.Net.Sockets.AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        socket.Connect(server.Tcp);
        Handshake(socket, structured);

        var requests = new byte[Depth * (28 + Length)];
        var replies = new byte[Depth * (32 + Length)];
        int replyBytes = 0;
        int offsetShift = unaligned ? 100 : 0;
        for (int i = 0; i < Depth; i++)
        {
            // Even slots write, odd slots read: the same shape every round.
            bool write = i % 2 == 0;
            var header = requests.AsSpan(i * (28 + Length));
            BinaryPrimitives.WriteUInt32BigEndian(header, RequestMagic);
            BinaryPrimitives.WriteUInt16BigEndian(header[4..], write && i % 4 == 0 ? FlagFua : (ushort)0);
            BinaryPrimitives.WriteUInt16BigEndian(header[6..], write ? CmdWrite : CmdRead);
            BinaryPrimitives.WriteUInt64BigEndian(header[8..], (ulong)i);
            BinaryPrimitives.WriteUInt64BigEndian(header[16..], (ulong)(i * 65536 + offsetShift));
            BinaryPrimitives.WriteUInt32BigEndian(header[24..], Length);
            replyBytes += write ? 16 : (structured ? 28 : 16) + Length;
        }
        // Writes carry a payload; reads do not, so squeeze the read requests' unused payload space out.
        var wire = new byte[requests.Length];
        int wireLength = 0;
        for (int i = 0; i < Depth; i++)
        {
            int size = 28 + (i % 2 == 0 ? Length : 0);
            requests.AsSpan(i * (28 + Length), size).CopyTo(wire.AsSpan(wireLength));
            wireLength += size;
        }

        void Round()
        {
            int sent = 0;
            while (sent < wireLength)
                sent += socket.Send(wire, sent, wireLength - sent, SocketFlags.None);
            int received = 0;
            while (received < replyBytes)
            {
                int n = socket.Receive(replies, received, replyBytes - received, SocketFlags.None);
                Assert.True(n > 0, "server closed the connection");
                received += n;
            }
        }

        var windows = new List<long>();
        // Many windows a pause apart: the test runner may still be reporting the previous test on another thread.
        for (int window = 0; window < 40 && (windows.Count == 0 || windows[^1] >= Rounds * Depth); window++)
        {
            if (window > 0)
                await Task.Delay(20, TestContext.Current.CancellationToken);
            long before = GC.GetTotalAllocatedBytes(precise: true);
            for (int i = 0; i < Rounds; i++)
                Round();
            windows.Add(GC.GetTotalAllocatedBytes(precise: true) - before);
        }
        Assert.True(windows[^1] < Rounds * Depth, $"bytes allocated per {Rounds * Depth} warm requests: {string.Join(", ", windows)}");
        Assert.Equal(0, server.Server.UnexpectedErrorCount);
    }

    private static void Handshake(Socket socket, bool structured)
    {
        var buffer = new byte[1024];
        ReceiveExactly(socket, buffer.AsSpan(0, 18));
        socket.Send([0, 0, 0, 3]);
        if (structured)
        {
            socket.Send(Option(OptStructuredReply, []));
            ReceiveExactly(socket, buffer.AsSpan(0, 20));
            Assert.Equal(RepAck, BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(12)));
        }
        socket.Send(Option(OptGo, InfoRequest("disk")));
        while (true)
        {
            ReceiveExactly(socket, buffer.AsSpan(0, 20));
            uint type = BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(12));
            int length = (int)BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(16));
            ReceiveExactly(socket, buffer.AsSpan(0, length));
            if (type == RepAck)
                return;
            Assert.Equal(RepInfo, type);
        }
    }

    private static void ReceiveExactly(Socket socket, Span<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            int n = socket.Receive(buffer);
            Assert.True(n > 0, "server closed the connection");
            buffer = buffer[n..];
        }
    }
}

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocationGroup
{
    public const string Name = "allocation";
}
