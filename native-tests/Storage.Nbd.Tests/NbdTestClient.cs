using System.Buffers.Binary;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Storage.Nbd.Tests;

/// <summary>
/// An NBD client written from the protocol document, independent of the server's code (its own constants), for
/// protocol tests: raw bytes when a test needs to misbehave, helpers for the well-behaved path. Pipelining is the
/// caller's: send any number of requests, then read replies in whatever order they come.
/// </summary>
internal sealed class NbdTestClient : IAsyncDisposable
{
    public const ulong NbdMagic = 0x4e42444d41474943, IHaveOpt = 0x49484156454F5054, OptReplyMagic = 0x3e889045565a9;
    public const uint RequestMagic = 0x25609513, SimpleReplyMagic = 0x67446698, StructuredReplyMagic = 0x668e33ef;
    public const uint OptExportName = 1, OptAbort = 2, OptList = 3, OptStartTls = 5, OptInfo = 6, OptGo = 7, OptStructuredReply = 8, OptListMetaContext = 9, OptSetMetaContext = 10;
    public const uint RepAck = 1, RepServer = 2, RepInfo = 3, RepMetaContext = 4;
    public const uint ErrUnsup = 0x80000001, ErrPolicy = 0x80000002, ErrInvalid = 0x80000003, ErrTlsReqd = 0x80000005, ErrUnknown = 0x80000006, ErrTooBig = 0x80000009;
    public const ushort InfoExport = 0, InfoName = 1, InfoDescription = 2, InfoBlockSize = 3;
    public const ushort CmdRead = 0, CmdWrite = 1, CmdDisc = 2, CmdFlush = 3, CmdTrim = 4, CmdWriteZeroes = 6, CmdBlockStatus = 7;
    public const ushort FlagFua = 1, FlagNoHole = 2, FlagDf = 4, FlagReqOne = 8;
    public const ushort TxHasFlags = 1, TxReadOnly = 2, TxFlush = 4, TxFua = 8, TxTrim = 32, TxWriteZeroes = 64, TxDf = 128, TxMultiConn = 256;
    public const int EPERM = 1, EIO = 5, EINVAL = 22, ENOSPC = 28, EOVERFLOW = 75;

    private readonly Socket _socket;
    private Stream _stream;
    private readonly Dictionary<ulong, uint> _pendingReads = [];

    private NbdTestClient(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    public bool Structured { get; private set; }

    public static async Task<NbdTestClient> ConnectAsync(EndPoint endpoint)
    {
        var socket = endpoint is UnixDomainSocketEndPoint
            ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(endpoint);
        return new NbdTestClient(socket);
    }

    /// <summary>Connects, handshakes and selects <paramref name="export"/> with NBD_OPT_GO.</summary>
    public static async Task<(NbdTestClient Client, ExportInfo Info)> OpenAsync(EndPoint endpoint, string export = "disk", bool structured = false,
        string[]? metaContexts = null)
    {
        var client = await ConnectAsync(endpoint);
        await client.StartAsync();
        if (structured)
        {
            await client.SendOptionAsync(OptStructuredReply, []);
            var reply = await client.ReadOptionReplyAsync();
            Assert.Equal(RepAck, reply.Type);
            client.Structured = true;
        }
        if (metaContexts is not null)
        {
            var (_, final) = await client.MetaContextAsync(OptSetMetaContext, export, metaContexts);
            Assert.Equal(RepAck, final);
        }
        var info = await client.GoAsync(export);
        return (client, info);
    }

    public Task SendAsync(ReadOnlyMemory<byte> bytes) => _stream.WriteAsync(bytes).AsTask();

    public async Task<byte[]> ReceiveAsync(int count)
    {
        var buffer = new byte[count];
        await _stream.ReadExactlyAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        return buffer;
    }

    /// <summary>True when the server closes the connection (possibly after sending bytes, which are discarded).</summary>
    public async Task<bool> IsClosedByServerAsync(TimeSpan? within = null)
    {
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(within ?? TimeSpan.FromSeconds(5));
        try
        {
            while (await _stream.ReadAsync(buffer, timeout.Token) > 0)
            {
            }
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        catch (IOException)
        {
            return true;
        }
    }

    /// <summary>Reads the greeting and answers with <paramref name="clientFlags"/>; returns the handshake flags.</summary>
    public async Task<ushort> StartAsync(uint clientFlags = 3)
    {
        var greeting = await ReceiveAsync(18);
        Assert.Equal(NbdMagic, BinaryPrimitives.ReadUInt64BigEndian(greeting));
        Assert.Equal(IHaveOpt, BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8)));
        var flags = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(flags, clientFlags);
        await SendAsync(flags);
        return BinaryPrimitives.ReadUInt16BigEndian(greeting.AsSpan(16));
    }

    public Task SendOptionAsync(uint option, ReadOnlySpan<byte> data) => SendAsync(Option(option, data));

    public static byte[] Option(uint option, ReadOnlySpan<byte> data)
    {
        var bytes = new byte[16 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(bytes, IHaveOpt);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(12), (uint)data.Length);
        data.CopyTo(bytes.AsSpan(16));
        return bytes;
    }

    public async Task<OptionReply> ReadOptionReplyAsync()
    {
        var header = await ReceiveAsync(20);
        Assert.Equal(OptReplyMagic, BinaryPrimitives.ReadUInt64BigEndian(header));
        uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
        Assert.True(length < 1 << 20, $"option reply of {length} bytes");
        var data = await ReceiveAsync((int)length);
        return new OptionReply(BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8)), BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12)), data);
    }

    /// <summary>NBD_OPT_INFO / NBD_OPT_GO data: name and information requests.</summary>
    public static byte[] InfoRequest(string export, params ushort[] requests)
    {
        var name = Encoding.UTF8.GetBytes(export);
        var data = new byte[4 + name.Length + 2 + 2 * requests.Length];
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)name.Length);
        name.CopyTo(data, 4);
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(4 + name.Length), (ushort)requests.Length);
        for (int i = 0; i < requests.Length; i++)
            BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(6 + name.Length + 2 * i), requests[i]);
        return data;
    }

    /// <summary>Sends NBD_OPT_INFO or NBD_OPT_GO and collects the replies up to the final one.</summary>
    public async Task<(uint Final, ExportInfo Info, string? Error)> InfoAsync(uint option, string export, params ushort[] requests)
    {
        await SendOptionAsync(option, InfoRequest(export, requests));
        var info = new ExportInfo();
        while (true)
        {
            var reply = await ReadOptionReplyAsync();
            Assert.Equal(option, reply.Option);
            if (reply.Type == RepInfo)
            {
                info.Add(reply.Data);
                continue;
            }
            return (reply.Type, info, reply.Type == RepAck ? null : Encoding.UTF8.GetString(reply.Data));
        }
    }

    public async Task<ExportInfo> GoAsync(string export)
    {
        var (final, info, error) = await InfoAsync(OptGo, export, InfoName, InfoDescription, InfoBlockSize);
        Assert.True(final == RepAck, $"NBD_OPT_GO '{export}' failed: 0x{final:x} {error}");
        return info;
    }

    /// <summary>Starts TLS, trusting exactly <paramref name="serverCertificate"/> (a self-signed test certificate).</summary>
    public async Task UpgradeToTlsAsync(X509Certificate2 serverCertificate)
    {
        var ssl = new SslStream(_stream, leaveInnerStreamOpen: false,
            (_, certificate, _, _) => certificate is not null && certificate.GetCertHashString() == serverCertificate.GetCertHashString());
        await ssl.AuthenticateAsClientAsync("localhost");
        _stream = ssl;
    }

    public static byte[] Request(ushort type, ushort flags, ulong cookie, ulong offset, uint length, ReadOnlySpan<byte> payload = default)
    {
        var bytes = new byte[28 + payload.Length];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, RequestMagic);
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(16), offset);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(24), length);
        payload.CopyTo(bytes.AsSpan(28));
        return bytes;
    }

    /// <summary>Sends a request; remembers reads so that their simple replies can be parsed.</summary>
    public Task SendRequestAsync(ushort type, ushort flags, ulong cookie, ulong offset, uint length, ReadOnlySpan<byte> payload = default)
    {
        if (type == CmdRead)
            _pendingReads[cookie] = length;
        return SendAsync(Request(type, flags, cookie, offset, length, payload));
    }

    /// <summary>Tells the reply parser the length of a read sent as raw bytes.</summary>
    public void ExpectRead(ulong cookie, uint length) => _pendingReads[cookie] = length;

    /// <summary>Reads one complete reply (all chunks of a structured one).</summary>
    public async Task<Reply> ReadReplyAsync()
    {
        var header = await ReceiveAsync(4);
        uint magic = BinaryPrimitives.ReadUInt32BigEndian(header);
        if (magic == SimpleReplyMagic)
        {
            var rest = await ReceiveAsync(12);
            int error = (int)BinaryPrimitives.ReadUInt32BigEndian(rest);
            ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(rest.AsSpan(4));
            byte[]? data = null;
            if (_pendingReads.Remove(cookie, out uint length) && error == 0)
                data = await ReceiveAsync((int)length);
            return new Reply(cookie, error, data, null, Structured: false);
        }
        Assert.True(magic == StructuredReplyMagic, $"bad reply magic 0x{magic:x8}");
        return await ReadStructuredAsync(header);
    }

    private async Task<Reply> ReadStructuredAsync(byte[] magic)
    {
        ulong? cookie = null;
        int error = 0;
        string? message = null;
        MemoryStream? data = null;
        long? first = null;
        while (true)
        {
            var header = magic.Length == 4 ? [.. magic, .. await ReceiveAsync(16)] : await ReceiveAsync(20);
            magic = [];
            Assert.Equal(StructuredReplyMagic, BinaryPrimitives.ReadUInt32BigEndian(header));
            ushort flags = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(4));
            ushort type = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(6));
            ulong chunkCookie = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
            Assert.True(cookie is null || cookie == chunkCookie, "chunks of different requests interleaved unexpectedly");
            cookie = chunkCookie;
            var payload = await ReceiveAsync((int)length);
            switch (type)
            {
                case 0:
                    Assert.Equal(0u, length);
                    break;
                case 1:
                    Assert.True(length > 8, "OFFSET_DATA chunk without data");
                    long offset = (long)BinaryPrimitives.ReadUInt64BigEndian(payload);
                    first ??= offset;
                    data ??= new MemoryStream();
                    data.Position = offset - first.Value;
                    data.Write(payload, 8, payload.Length - 8);
                    break;
                case 5:
                    // BLOCK_STATUS: the raw payload (context id, descriptors) as the reply's data.
                    Assert.True(length >= 12 && (length - 4) % 8 == 0, $"BLOCK_STATUS chunk of {length} bytes");
                    data ??= new MemoryStream();
                    data.Write(payload);
                    break;
                case 0x8001:
                    error = (int)BinaryPrimitives.ReadUInt32BigEndian(payload);
                    int messageLength = BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(4));
                    Assert.True(messageLength <= length - 6);
                    message = Encoding.UTF8.GetString(payload, 6, messageLength);
                    break;
                default:
                    Assert.Fail($"unexpected structured reply type {type}");
                    break;
            }
            if ((flags & 1) != 0)
            {
                _pendingReads.Remove(cookie.Value);
                return new Reply(cookie.Value, error, error == 0 ? data?.ToArray() : null, message, Structured: true);
            }
        }
    }

    /// <summary>One request, one reply.</summary>
    public async Task<Reply> RoundTripAsync(ushort type, ulong offset, uint length, ReadOnlyMemory<byte> payload = default, ushort flags = 0)
    {
        ulong cookie = (ulong)Random.Shared.NextInt64();
        await SendRequestAsync(type, flags, cookie, offset, length, payload.Span);
        var reply = await ReadReplyAsync();
        Assert.Equal(cookie, reply.Cookie);
        return reply;
    }

    /// <summary>Option data of NBD_OPT_LIST/SET_META_CONTEXT: export name, then the queries.</summary>
    public static byte[] MetaContextRequest(string export, params string[] queries)
    {
        var stream = new MemoryStream();
        void WriteString(string text)
        {
            var bytes = Encoding.UTF8.GetBytes(text);
            var length = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(length, (uint)bytes.Length);
            stream.Write(length);
            stream.Write(bytes);
        }
        WriteString(export);
        var count = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(count, (uint)queries.Length);
        stream.Write(count);
        foreach (var query in queries)
            WriteString(query);
        return stream.ToArray();
    }

    /// <summary>Sends a meta context option; returns the contexts replied (id, name) and the final reply type.</summary>
    public async Task<(List<(uint Id, string Name)> Contexts, uint Final)> MetaContextAsync(uint option, string export, params string[] queries)
    {
        await SendOptionAsync(option, MetaContextRequest(export, queries));
        var contexts = new List<(uint, string)>();
        while (true)
        {
            var reply = await ReadOptionReplyAsync();
            Assert.Equal(option, reply.Option);
            if (reply.Type != RepMetaContext)
                return (contexts, reply.Type);
            contexts.Add((BinaryPrimitives.ReadUInt32BigEndian(reply.Data), Encoding.UTF8.GetString(reply.Data, 4, reply.Data.Length - 4)));
        }
    }

    /// <summary>Sends NBD_CMD_BLOCK_STATUS; returns the reply and its descriptors (length, flags) with the context id.</summary>
    public async Task<(Reply Reply, uint ContextId, List<(uint Length, uint Flags)> Extents)> BlockStatusAsync(long offset, uint length, ushort flags = 0)
    {
        var reply = await RoundTripAsync(CmdBlockStatus, (ulong)offset, length, flags: flags);
        var extents = new List<(uint, uint)>();
        if (reply.Error != 0 || reply.Data is null)
            return (reply, 0, extents);
        for (int i = 4; i < reply.Data.Length; i += 8)
            extents.Add((BinaryPrimitives.ReadUInt32BigEndian(reply.Data.AsSpan(i)), BinaryPrimitives.ReadUInt32BigEndian(reply.Data.AsSpan(i + 4))));
        return (reply, BinaryPrimitives.ReadUInt32BigEndian(reply.Data), extents);
    }

    public async Task<byte[]> ReadAsync(long offset, int length)
    {
        var reply = await RoundTripAsync(CmdRead, (ulong)offset, (uint)length);
        Assert.True(reply.Error == 0, $"read at {offset} of {length} failed with {reply.Error} {reply.Message}");
        Assert.NotNull(reply.Data);
        Assert.Equal(length, reply.Data.Length);
        return reply.Data;
    }

    public async Task WriteAsync(long offset, byte[] data, ushort flags = 0)
    {
        var reply = await RoundTripAsync(CmdWrite, (ulong)offset, (uint)data.Length, data, flags);
        Assert.True(reply.Error == 0, $"write at {offset} of {data.Length} failed with {reply.Error} {reply.Message}");
    }

    public async Task DisconnectAsync()
    {
        await SendAsync(Request(CmdDisc, 0, 0, 0, 0));
        Assert.True(await IsClosedByServerAsync(), "the server did not close after NBD_CMD_DISC");
    }

    public async ValueTask DisposeAsync()
    {
        await _stream.DisposeAsync();
        _socket.Dispose();
    }
}

internal sealed record OptionReply(uint Option, uint Type, byte[] Data);

internal sealed record Reply(ulong Cookie, int Error, byte[]? Data, string? Message, bool Structured);

/// <summary>What NBD_REP_INFO replies said.</summary>
internal sealed class ExportInfo
{
    public long Size { get; private set; } = -1;
    public ushort Flags { get; private set; }
    public string? Name { get; private set; }
    public string? Description { get; private set; }
    public (int Minimum, int Preferred, int Maximum)? BlockSize { get; private set; }

    public void Add(byte[] data)
    {
        switch (BinaryPrimitives.ReadUInt16BigEndian(data))
        {
            case NbdTestClient.InfoExport:
                Assert.Equal(12, data.Length);
                Size = (long)BinaryPrimitives.ReadUInt64BigEndian(data.AsSpan(2));
                Flags = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(10));
                break;
            case NbdTestClient.InfoName:
                Name = Encoding.UTF8.GetString(data, 2, data.Length - 2);
                break;
            case NbdTestClient.InfoDescription:
                Description = Encoding.UTF8.GetString(data, 2, data.Length - 2);
                break;
            case NbdTestClient.InfoBlockSize:
                Assert.Equal(14, data.Length);
                BlockSize = ((int)BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(2)), (int)BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(6)),
                    (int)BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(10)));
                break;
        }
    }
}
