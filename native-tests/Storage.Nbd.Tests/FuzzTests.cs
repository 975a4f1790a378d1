using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Storage.Devices;
using static Storage.Nbd.Tests.NbdTestClient;

namespace Storage.Nbd.Tests;

/// <summary>
/// Seeded fuzzing of the whole protocol: handshakes built from valid and invalid options, sometimes mutated byte by
/// byte; then requests with adversarial fields (unknown commands and flags, offsets past the end, huge lengths,
/// payloads that do not match their length, garbage frames, cut-off frames), sent in random pieces. After each run:
/// every byte outside the ranges of write-like requests that were not refused is unchanged; every acknowledged write
/// that no other request overlapped holds its data; replies are well-formed and answer requests that were sent, once;
/// the server met nothing unexpected and still serves a fresh, well-behaved client.
/// A failing seed prints itself; NBD_FUZZ_SEED=n replays it alone, NBD_FUZZ_ITERATIONS=n runs more.
/// </summary>
public class FuzzTests
{
    private const int MaxPayload = 64 << 10;
    private const int BaseSeed = 20_240_601;

    [Fact]
    public async Task Hostile_clients_never_hurt_the_server_or_data_they_did_not_write()
    {
        int? only = int.TryParse(Environment.GetEnvironmentVariable("NBD_FUZZ_SEED"), out int s) ? s : null;
        int iterations = int.TryParse(Environment.GetEnvironmentVariable("NBD_FUZZ_ITERATIONS"), out int n) ? n : 300;
        var options = new NbdServerOptions
        {
            MaxPayloadSize = MaxPayload,
            MaxRequestsInFlight = 8,
            HandshakeTimeout = TimeSpan.FromSeconds(5),
            StopTimeout = TimeSpan.FromSeconds(2),
        };
        await using var small = new TestServer(capacity: 1 << 20, sectorSize: 512, options: options, seed: 31);
        await using var large = new TestServer(capacity: 1 << 20, sectorSize: 4096, options: options, seed: 32);
        small.Server.AddExport(new NbdExport("ro", small.Device, readOnly: true));

        var stats = new Stats();
        foreach (int seed in only is { } one ? [one] : Enumerable.Range(BaseSeed, iterations))
        {
            var server = seed % 2 == 0 ? small : large;
            try
            {
                await RunOneAsync(server, seed, stats).WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
            }
            catch (Exception e) when (!TestContext.Current.CancellationToken.IsCancellationRequested)
            {
                Assert.Fail($"fuzz seed {seed} failed; replay with NBD_FUZZ_SEED={seed}\n{e}");
            }
        }
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"{stats.Runs} runs ({stats.Mutated} mutated handshakes, {stats.Transmitting} reached transmission): " +
            $"{stats.Sent} requests sent, {stats.Succeeded} succeeded, {stats.Refused} refused, {stats.VerifiedWrites} acknowledged writes verified");
        // The generator must keep reaching the interesting states, or the checks above prove little.
        if (only is null)
        {
            Assert.True(stats.Transmitting > iterations / 3, $"only {stats.Transmitting} of {iterations} runs reached transmission");
            Assert.True(stats.VerifiedWrites > iterations / 5, $"only {stats.VerifiedWrites} acknowledged writes verified");
            Assert.True(stats.Refused > iterations / 2, $"only {stats.Refused} requests refused");
        }
    }

    private sealed class Stats
    {
        public int Runs, Mutated, Transmitting, Sent, Succeeded, Refused, VerifiedWrites;
    }

    private static async Task RunOneAsync(TestServer server, int seed, Stats stats)
    {
        var random = new Random(seed);
        var device = server.Memory!;
        var before = device.Bytes.ToArray();
        var script = new Script(random, device.Capacity, device.SectorSize);
        script.Build();

        await using (var connection = await RawConnection.OpenAsync(server.EndPoint(random.Next(2) == 0 ? "tcp" : "unix")))
        {
            var reader = Task.Run(() => script.Mutated ? connection.DrainAsync() : new ReplyChecker(connection, script).RunAsync());
            await connection.SendInPiecesAsync(script.Bytes.ToArray(), random);
            connection.CloseSend();
            await reader.WaitAsync(TimeSpan.FromSeconds(20));
        }
        await server.WaitForNoConnectionsAsync();
        Assert.Equal(0, server.Server.UnexpectedErrorCount);
        stats.Runs++;
        stats.Mutated += script.Mutated ? 1 : 0;
        stats.Transmitting += script.Requests.Any(r => r.Error != Refused.Unknown) ? 1 : 0;
        stats.Sent += script.Requests.Count;
        stats.Succeeded += script.Requests.Count(r => r.Error == Refused.No);
        stats.Refused += script.Requests.Count(r => r.Error == Refused.Yes);

        // Bytes outside what may have been written are untouched.
        var after = device.Bytes;
        var mayChange = new bool[after.Length];
        foreach (var request in script.Requests.Where(r => r.WritesData && r.Error != Refused.Yes))
        {
            if (request.Offset >= (ulong)after.Length)
                continue;
            int start = (int)request.Offset, end = (int)Math.Min(request.Offset + request.Length, (ulong)after.Length);
            Array.Fill(mayChange, true, start, end - start);
        }
        for (int i = 0; i < after.Length; i++)
        {
            if (!mayChange[i] && after[i] != before[i])
                Assert.Fail($"byte {i} changed outside every write-like request that was not refused");
        }
        // Acknowledged writes hold their data, unless another request may have overlapped them.
        foreach (var write in script.Requests.Where(r => r.Error == Refused.No && r.ContentKnown))
        {
            bool overlapped = script.Requests.Any(o => o != write && o.WritesData && o.Error != Refused.Yes
                && o.Offset < write.Offset + write.Length && write.Offset < o.Offset + o.Length);
            if (overlapped)
                continue;
            stats.VerifiedWrites++;
            var expected = write.Type == CmdWrite ? write.Payload : new byte[write.Length];
            Assert.True(after.Slice((int)write.Offset, (int)write.Length).SequenceEqual(expected),
                $"acknowledged {(write.Type == CmdWrite ? "write" : "write-zeroes")} at {write.Offset} of {write.Length} bytes is not on the device");
        }

        // A well-behaved client is still served.
        var (client, info) = await OpenAsync(server.Tcp, structured: random.Next(2) == 0);
        await using (client)
        {
            Assert.Equal(device.Capacity, info.Size);
            int offset = random.Next((int)device.Capacity - 8192);
            Assert.Equal(device.Bytes.Slice(offset, 8192).ToArray(), await client.ReadAsync(offset, 8192));
            await client.DisconnectAsync();
        }
        await server.WaitForNoConnectionsAsync();
    }

    private enum Refused { Unknown, No, Yes }

    private sealed class SentRequest
    {
        public ushort Type;
        public ushort Flags;
        public ulong Cookie;
        public ulong Offset;
        public uint Length;
        public byte[] Payload = [];
        /// <summary>The data on the device is known if acknowledged: the frame went out whole and in step.</summary>
        public bool ContentKnown;
        public Refused Error = Refused.Unknown;

        public bool WritesData => Type is CmdWrite or CmdWriteZeroes or CmdTrim;
    }

    private sealed record SentOption(uint Option, byte[] Data);

    /// <summary>One connection's bytes: a handshake, then requests; and what they were meant to be.</summary>
    private sealed class Script(Random random, long capacity, int sector)
    {
        public List<byte> Bytes { get; } = [];
        public List<SentOption> Options { get; } = [];
        public List<SentRequest> Requests { get; } = [];
        public uint ClientFlags { get; private set; }
        /// <summary>Bytes were mutated at random: the replies cannot be predicted, only drained.</summary>
        public bool Mutated { get; private set; }

        public void Build()
        {
            ClientFlags = random.Next(10) switch { 0 => 1, 1 => 0, _ => 3 };
            Bytes.AddRange(BigEndian32(ClientFlags));
            int options = random.Next(4);
            for (int i = 0; i < options && ClientFlags != 0; i++)
                AddOption(RandomOption());
            // Choose the export (or not), then requests.
            switch (random.Next(12))
            {
                case 0: AddOption(new SentOption(OptExportName, Encoding.UTF8.GetBytes(random.Next(2) == 0 ? "disk" : "nope"))); break;
                case 1: AddOption(new SentOption(OptAbort, [])); break;
                case 2: break; // no export chosen: requests arrive during option haggling
                case 3: AddOption(new SentOption(OptGo, InfoRequest("ro", InfoBlockSize))); break;
                default:
                    if (ClientFlags == 0)
                        AddOption(new SentOption(OptExportName, "disk"u8.ToArray()));
                    else
                        AddOption(new SentOption(OptGo, InfoRequest("disk", InfoBlockSize, InfoName)));
                    break;
            }
            int handshakeLength = Bytes.Count;
            if (random.Next(4) == 0)
            {
                Mutated = true;
                Mutate(handshakeLength);
            }
            int requests = random.Next(1, 30);
            for (int i = 0; i < requests; i++)
            {
                if (!AddRequest((ulong)i + 1))
                    break;
            }
        }

        private SentOption RandomOption() => random.Next(13) switch
        {
            10 => new SentOption(OptSetMetaContext, MetaContextRequest(random.Next(4) == 0 ? "nope" : "disk",
                [.. Enumerable.Range(0, random.Next(3)).Select(_ => random.Next(3) switch { 0 => "base:allocation", 1 => "base:", _ => "x:y" })])),
            11 => new SentOption(OptListMetaContext, MetaContextRequest("disk", random.Next(2) == 0 ? [] : ["base:"])),
            12 => new SentOption((uint)random.Next(9, 11), RandomBytes(random.Next(24))), // malformed meta context options
            0 => new SentOption(OptList, random.Next(4) == 0 ? [1] : []),
            1 => new SentOption(OptStructuredReply, random.Next(6) == 0 ? [0] : []),
            2 => new SentOption(OptStructuredReply, []),
            3 => new SentOption(OptInfo, InfoRequest(random.Next(2) == 0 ? "disk" : "x", [.. Enumerable.Range(0, random.Next(4)).Select(_ => (ushort)random.Next(5))])),
            4 => new SentOption(OptGo, RandomBytes(random.Next(12))), // malformed
            5 => new SentOption(OptStartTls, []),
            6 => new SentOption((uint)random.Next(9, 1000), RandomBytes(random.Next(64))),
            7 => new SentOption(OptInfo, InfoRequest("nope")),
            8 => new SentOption(99, new byte[random.Next(16 << 10, 40 << 10)]), // beyond the option size limit
            _ => new SentOption(OptGo, InfoRequest("missing")),
        };

        private void AddOption(SentOption option)
        {
            Options.Add(option);
            Bytes.AddRange(Option(option.Option, option.Data));
        }

        private void Mutate(int length)
        {
            int mutations = random.Next(1, 4);
            for (int m = 0; m < mutations && length > 0; m++)
            {
                int at = random.Next(length);
                switch (random.Next(4))
                {
                    case 0: Bytes[at] ^= (byte)(1 << random.Next(8)); break;
                    case 1: Bytes[at] = (byte)random.Next(256); break;
                    case 2: Bytes.InsertRange(at, RandomBytes(random.Next(1, 9))); break;
                    default: Bytes.RemoveRange(at, Math.Min(random.Next(1, 9), length - at)); length = Math.Min(length, Bytes.Count); break;
                }
            }
        }

        /// <summary>Adds one request; false when nothing after it can be in step (garbage, a cut, a disconnect).</summary>
        private bool AddRequest(ulong cookie)
        {
            ushort type = random.Next(100) switch
            {
                < 30 => CmdRead,
                < 60 => CmdWrite,
                < 65 => CmdFlush,
                < 73 => CmdTrim,
                < 81 => CmdWriteZeroes,
                < 83 => CmdDisc,
                < 84 => (ushort)random.Next(5, 8),
                < 86 => CmdBlockStatus,
                < 90 => (ushort)random.Next(65536),
                _ => random.Next(2) == 0 ? CmdRead : CmdWrite,
            };
            ushort flags = random.Next(5) switch
            {
                0 => (ushort)random.Next(65536),
                1 => FlagFua,
                2 => type == CmdWriteZeroes ? FlagNoHole : FlagDf,
                _ => 0,
            };
            ulong offset = random.Next(10) switch
            {
                < 5 => (ulong)random.NextInt64(capacity),
                < 7 => (ulong)(random.NextInt64(capacity / sector) * sector),
                < 9 => (ulong)(capacity - random.Next(1, 70_000)),
                _ => (ulong)random.NextInt64() * 2 + (ulong)random.Next(2),
            };
            uint length = random.Next(10) switch
            {
                < 5 => (uint)random.Next(1, 16 << 10),
                < 7 => (uint)(random.Next(1, MaxPayload / sector + 1) * sector),
                7 => 0,
                8 => (uint)random.Next(MaxPayload, 3 * MaxPayload), // over the payload limit; a write of it may be skipped
                _ => (uint)random.NextInt64(uint.MaxValue),
            };
            if (type is CmdFlush or CmdDisc && random.Next(3) != 0)
                (offset, length) = (0, 0);
            var request = new SentRequest { Type = type, Flags = flags, Cookie = cookie, Offset = offset, Length = length };

            var header = Request(type, flags, cookie, offset, length);
            if (random.Next(40) == 0)
            {
                header[random.Next(4)] ^= 0x5a; // bad magic: the server closes
                Bytes.AddRange(header);
                return false;
            }
            Requests.Add(request);
            Bytes.AddRange(header);
            if (type == CmdDisc)
                return false;
            if (type != CmdWrite)
            {
                request.ContentKnown = type == CmdWriteZeroes;
                return random.Next(50) != 0 || Cut();
            }
            int payload = (int)Math.Min(length, 3L * MaxPayload);
            switch (random.Next(20))
            {
                case 0:
                    // Cut mid-payload, then hang up.
                    Bytes.AddRange(PayloadBytes(random.Next(payload + 1)));
                    return false;
                case 1:
                    // Payload shorter than announced: the server takes later frames as data; nothing after is in step.
                    Bytes.AddRange(PayloadBytes(random.Next(payload + 1)));
                    return AddGarbage();
                default:
                    if (payload != length)
                    {
                        Bytes.AddRange(PayloadBytes(payload));
                        return false;
                    }
                    request.Payload = PayloadBytes((int)length);
                    request.ContentKnown = true;
                    Bytes.AddRange(request.Payload);
                    return true;
            }
        }

        private bool Cut()
        {
            Bytes.AddRange(RandomBytes(random.Next(1, 27)).Select(b => b == 0x25 ? (byte)0 : b)); // a partial header
            return false;
        }

        private bool AddGarbage()
        {
            Bytes.AddRange(RandomBytes(random.Next(1, 200)).Select(b => b == 0x25 ? (byte)0 : b));
            return false;
        }

        /// <summary>Random data without the byte 0x25, so that no request magic can appear inside a payload.</summary>
        private byte[] PayloadBytes(int length)
        {
            var bytes = RandomBytes(length);
            for (int i = 0; i < bytes.Length; i++)
            {
                if (bytes[i] == 0x25)
                    bytes[i] = 0x26;
            }
            return bytes;
        }

        private byte[] RandomBytes(int length)
        {
            var bytes = new byte[length];
            random.NextBytes(bytes);
            return bytes;
        }

        private static byte[] BigEndian32(uint value)
        {
            var bytes = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
            return bytes;
        }
    }

    /// <summary>Parses the server's replies to an unmutated script and checks them against what was sent.</summary>
    private sealed class ReplyChecker(RawConnection connection, Script script)
    {
        public async Task RunAsync()
        {
            if (await connection.ReadAsync(18) is not { } greeting)
                return;
            Assert.Equal(NbdMagic, BinaryPrimitives.ReadUInt64BigEndian(greeting));
            if ((script.ClientFlags & ~3u) != 0)
                return;
            bool structured = false, transmitting = false;
            foreach (var option in script.Options)
            {
                if (option.Option == OptExportName)
                {
                    string name = Encoding.UTF8.GetString(option.Data);
                    if (name != "disk")
                    {
                        Assert.Null(await connection.ReadAsync(1)); // closed
                        return;
                    }
                    var reply = await connection.ReadAsync((script.ClientFlags & 2) != 0 ? 10 : 134);
                    Assert.NotNull(reply);
                    transmitting = true;
                    break;
                }
                if (option.Data.Length > 64 << 10)
                    return;
                uint final = 0;
                while (true)
                {
                    if (await connection.ReadAsync(20) is not { } header)
                        return;
                    Assert.Equal(OptReplyMagic, BinaryPrimitives.ReadUInt64BigEndian(header));
                    Assert.Equal(option.Option, BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8)));
                    uint type = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
                    uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
                    Assert.True(length <= 8192, $"option reply of {length} bytes");
                    if (length > 0 && await connection.ReadAsync((int)length) is null)
                        return;
                    if (type == RepAck || (type & 0x80000000) != 0)
                    {
                        final = type;
                        break;
                    }
                    Assert.True(type is RepInfo or RepServer or RepMetaContext, $"reply type {type}");
                }
                if (option.Option == OptAbort)
                {
                    Assert.Equal(RepAck, final);
                    Assert.Null(await connection.ReadAsync(1));
                    return;
                }
                if (option.Option == OptStructuredReply && final == RepAck)
                    structured = true;
                if (option.Option == OptGo && final == RepAck)
                {
                    transmitting = true;
                    break;
                }
            }
            if (!transmitting)
            {
                // Requests during option haggling are not options: the server hangs up.
                await connection.DrainAsync();
                return;
            }
            await ReadTransmissionRepliesAsync(structured);
        }

        private async Task ReadTransmissionRepliesAsync(bool structured)
        {
            var byCookie = script.Requests.ToDictionary(r => r.Cookie);
            var answered = new HashSet<ulong>();
            while (await connection.ReadAsync(4) is { } magicBytes)
            {
                uint magic = BinaryPrimitives.ReadUInt32BigEndian(magicBytes);
                ulong cookie;
                int error;
                if (magic == SimpleReplyMagic)
                {
                    var rest = await connection.ReadAsync(12);
                    Assert.NotNull(rest);
                    error = (int)BinaryPrimitives.ReadUInt32BigEndian(rest);
                    cookie = BinaryPrimitives.ReadUInt64BigEndian(rest.AsSpan(4));
                    Assert.True(byCookie.TryGetValue(cookie, out var request), $"reply to unknown cookie {cookie}");
                    Assert.False(structured && request.Type == CmdRead, "a simple reply to a read after structured replies were negotiated");
                    if (request.Type == CmdRead && error == 0)
                    {
                        var data = await connection.ReadAsync((int)request.Length);
                        Assert.NotNull(data);
                    }
                }
                else
                {
                    Assert.True(structured && magic == StructuredReplyMagic, $"bad reply magic 0x{magic:x8}");
                    (cookie, error) = await ReadStructuredAsync(byCookie);
                }
                Assert.True(answered.Add(cookie), $"cookie {cookie} answered twice");
                var answeredRequest = byCookie[cookie];
                Assert.NotEqual(CmdDisc, answeredRequest.Type);
                answeredRequest.Error = error == 0 ? Refused.No : Refused.Yes;
                Assert.True(error is 0 or EPERM or EINVAL or ENOSPC or EOVERFLOW, $"error {error} for cookie {cookie}");
            }
        }

        private async Task<(ulong Cookie, int Error)> ReadStructuredAsync(Dictionary<ulong, SentRequest> byCookie)
        {
            ulong? cookie = null;
            int error = 0;
            long covered = 0;
            bool first = true;
            while (true)
            {
                var header = await connection.ReadAsync(first ? 16 : 20);
                Assert.NotNull(header);
                if (!first)
                {
                    Assert.Equal(StructuredReplyMagic, BinaryPrimitives.ReadUInt32BigEndian(header));
                    header = header[4..];
                }
                first = false;
                ushort flags = BinaryPrimitives.ReadUInt16BigEndian(header);
                ushort type = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(2));
                ulong chunkCookie = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(4));
                uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
                Assert.True(byCookie.TryGetValue(chunkCookie, out var request), $"chunk for unknown cookie {chunkCookie}");
                Assert.True(cookie is null || cookie == chunkCookie);
                cookie = chunkCookie;
                Assert.True(length <= MaxPayload + 8 + 2048, $"chunk of {length} bytes");
                var payload = length == 0 ? [] : await connection.ReadAsync((int)length);
                Assert.NotNull(payload);
                if (type == 1)
                {
                    Assert.Equal(CmdRead, request.Type);
                    Assert.Equal(request.Offset + (ulong)covered, BinaryPrimitives.ReadUInt64BigEndian(payload));
                    covered += length - 8;
                }
                else if (type == 5)
                {
                    // BLOCK_STATUS: context id, then descriptors that never describe past the request.
                    Assert.Equal(CmdBlockStatus, request.Type);
                    Assert.True(length >= 12 && (length - 4) % 8 == 0, $"BLOCK_STATUS chunk of {length} bytes");
                    long described = 0;
                    for (int i = 4; i < payload.Length; i += 8)
                    {
                        uint extent = BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(i));
                        Assert.True(extent > 0 && BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(i + 4)) <= 3);
                        described += extent;
                    }
                    Assert.True(described <= request.Length, $"{described} bytes described for a request of {request.Length}");
                    covered = request.Length;
                }
                else if (type == 0x8001)
                {
                    error = (int)BinaryPrimitives.ReadUInt32BigEndian(payload);
                    Assert.NotEqual(0, error);
                    Assert.True(BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(4)) <= length - 6);
                }
                else
                {
                    Assert.True(type == 0 && length == 0, $"chunk type {type}");
                }
                if ((flags & 1) != 0)
                {
                    if (error == 0 && request.Type is CmdRead or CmdBlockStatus)
                        Assert.Equal(request.Length, (ulong)covered);
                    return (cookie.Value, error);
                }
            }
        }
    }

    /// <summary>A socket for misbehaving: sends bytes in random pieces, half-closes, reads until the server hangs up.</summary>
    private sealed class RawConnection(Socket socket) : IAsyncDisposable
    {
        private readonly NetworkStream _stream = new(socket, ownsSocket: true);

        public static async Task<RawConnection> OpenAsync(EndPoint endpoint)
        {
            var socket = endpoint is UnixDomainSocketEndPoint
                ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
                : new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await socket.ConnectAsync(endpoint);
            return new RawConnection(socket);
        }

        public async Task SendInPiecesAsync(byte[] bytes, Random random)
        {
            try
            {
                for (int sent = 0; sent < bytes.Length;)
                {
                    int piece = Math.Min(bytes.Length - sent, random.Next(4) == 0 ? random.Next(1, 64) : random.Next(1, 200_000));
                    await _stream.WriteAsync(bytes.AsMemory(sent, piece));
                    sent += piece;
                }
            }
            catch (IOException)
            {
                // The server hung up on us, as it may.
            }
        }

        public void CloseSend()
        {
            try
            {
                socket.Shutdown(SocketShutdown.Send);
            }
            catch (SocketException)
            {
            }
        }

        /// <summary>Exactly <paramref name="count"/> bytes, or null when the server closes first.</summary>
        public async Task<byte[]?> ReadAsync(int count)
        {
            var buffer = new byte[count];
            try
            {
                await _stream.ReadExactlyAsync(buffer);
                return buffer;
            }
            catch (Exception e) when (e is EndOfStreamException or IOException)
            {
                return null;
            }
        }

        public async Task DrainAsync()
        {
            var buffer = new byte[64 << 10];
            try
            {
                while (await _stream.ReadAsync(buffer) > 0)
                {
                }
            }
            catch (IOException)
            {
            }
        }

        public ValueTask DisposeAsync() => _stream.DisposeAsync();
    }
}
