using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Text;
using Storage.Nbd.Protocol;

namespace Storage.Nbd.Client;

/// <summary>The connection broke: every request on it fails with this and may be retried on a new connection.</summary>
internal sealed class ConnectionLostException(string message, Exception? inner = null) : IOException(message, inner);

/// <summary>What the server said about the export during the handshake.</summary>
internal sealed record ExportInfo(long Size, ushort Flags, int MinimumBlock, int PreferredBlock, int MaximumBlock)
{
    public bool Has(ushort flag) => (Flags & flag) != 0;
}

/// <summary>
/// One NBD connection from the client side: the fixed-newstyle handshake (NBD_OPT_GO, asking for block sizes) and
/// transmission with simple replies, many requests in flight, matched by cookie. A receive loop completes requests
/// as replies arrive; when the connection breaks every pending request fails with <see cref="ConnectionLostException"/>.
/// </summary>
internal sealed class NbdClientConnection : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly Stream _stream;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly ConcurrentDictionary<ulong, Pending> _pending = new();
    private readonly Task _receiving;
    private long _nextCookie;
    private volatile Exception? _broken;

    private NbdClientConnection(Socket socket, Stream stream, ExportInfo export)
    {
        _socket = socket;
        _stream = stream;
        Export = export;
        _receiving = Task.Run(ReceiveLoopAsync);
    }

    public ExportInfo Export { get; }

    public bool IsBroken => _broken is not null;

    /// <summary>Connects, negotiates the export and starts transmission.</summary>
    public static async Task<NbdClientConnection> OpenAsync(NbdClientOptions options, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.ConnectTimeout);
        var socket = options.UnixSocket is not null
            ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        Stream? stream = null;
        try
        {
            if (options.UnixSocket is not null)
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(options.UnixSocket), timeout.Token).ConfigureAwait(false);
            else
                await socket.ConnectAsync(options.Host!, options.Port, timeout.Token).ConfigureAwait(false);
            stream = new NetworkStream(socket, ownsSocket: false);
            await GreetingAsync(stream, options, timeout.Token).ConfigureAwait(false);
            if (options.Tls is not null)
                stream = await StartTlsAsync(stream, options, timeout.Token).ConfigureAwait(false);
            var export = await NegotiateAsync(stream, options, timeout.Token).ConfigureAwait(false);
            return new NbdClientConnection(socket, stream, export);
        }
        catch (AuthenticationException e)
        {
            await Close(stream, socket).ConfigureAwait(false);
            throw new NbdConfigurationException($"{options}: the TLS handshake failed: {e.Message}");
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            await Close(stream, socket).ConfigureAwait(false);
            throw new ConnectionLostException($"{options}: no answer within {options.ConnectTimeout.TotalSeconds:0.#} s.");
        }
        catch (Exception e) when (e is SocketException or EndOfStreamException or IOException)
        {
            await Close(stream, socket).ConfigureAwait(false);
            throw e as ConnectionLostException ?? new ConnectionLostException($"{options}: {e.Message}", e);
        }
        catch
        {
            await Close(stream, socket).ConfigureAwait(false);
            throw;
        }
    }

    private static async ValueTask Close(Stream? stream, Socket socket)
    {
        if (stream is not null)
            await stream.DisposeAsync().ConfigureAwait(false);
        socket.Dispose();
    }

    /// <summary>Reads the server's greeting and sends the client flags.</summary>
    private static async Task GreetingAsync(Stream stream, NbdClientOptions options, CancellationToken cancellationToken)
    {
        var greeting = new byte[18];
        await stream.ReadExactlyAsync(greeting, cancellationToken).ConfigureAwait(false);
        if (BinaryPrimitives.ReadUInt64BigEndian(greeting) != NbdProtocol.InitPassword || BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8)) != NbdProtocol.OptionMagic)
            throw new InvalidDataException($"{options}: not an NBD server speaking the newstyle handshake.");
        ushort serverFlags = BinaryPrimitives.ReadUInt16BigEndian(greeting.AsSpan(16));
        if ((serverFlags & NbdProtocol.FlagFixedNewstyle) == 0)
            throw new InvalidDataException($"{options}: the server does not speak fixed newstyle.");
        uint clientFlags = NbdProtocol.ClientFlagFixedNewstyle | ((serverFlags & NbdProtocol.FlagNoZeroes) != 0 ? NbdProtocol.ClientFlagNoZeroes : 0);
        var flags = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(flags, clientFlags);
        await stream.WriteAsync(flags, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>NBD_OPT_STARTTLS, then the TLS handshake; everything after goes through the returned stream.</summary>
    private static async Task<Stream> StartTlsAsync(Stream stream, NbdClientOptions options, CancellationToken cancellationToken)
    {
        var option = new byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(option, NbdProtocol.OptionMagic);
        BinaryPrimitives.WriteUInt32BigEndian(option.AsSpan(8), NbdProtocol.OptStartTls);
        await stream.WriteAsync(option, cancellationToken).ConfigureAwait(false);
        var (type, data) = await ReadOptionReplyAsync(stream, options, new byte[20], cancellationToken).ConfigureAwait(false);
        if (type != NbdProtocol.RepAck)
            throw new NbdConfigurationException($"{options}: the server does not offer TLS ({Why(type, data)}).");
        var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
        try
        {
            await ssl.AuthenticateAsClientAsync(options.Tls!, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        return ssl;
    }

    /// <summary>One option reply: its type and data (<paramref name="header"/> is a 20-byte scratch buffer).</summary>
    private static async Task<(uint Type, byte[] Data)> ReadOptionReplyAsync(Stream stream, NbdClientOptions options, byte[] header, CancellationToken cancellationToken)
    {
        await stream.ReadExactlyAsync(header, cancellationToken).ConfigureAwait(false);
        if (BinaryPrimitives.ReadUInt64BigEndian(header) != NbdProtocol.OptionReplyMagic)
            throw new InvalidDataException($"{options}: bad option reply.");
        uint type = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
        int length = checked((int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16)));
        if (length > 1 << 20)
            throw new InvalidDataException($"{options}: an option reply of {length} bytes.");
        var data = new byte[length];
        await stream.ReadExactlyAsync(data, cancellationToken).ConfigureAwait(false);
        return (type, data);
    }

    /// <summary>What an error reply says: its message, or its code.</summary>
    private static string Why(uint type, byte[] data) => data.Length > 0 ? Encoding.UTF8.GetString(data) : $"error 0x{type:x8}";

    /// <summary>NBD_OPT_GO for the export, asking for its block sizes.</summary>
    private static async Task<ExportInfo> NegotiateAsync(Stream stream, NbdClientOptions options, CancellationToken cancellationToken)
    {
        // NBD_OPT_GO: u32 name length, name, u16 number of info requests, u16 NBD_INFO_BLOCK_SIZE.
        byte[] name = Encoding.UTF8.GetBytes(options.ExportName);
        var go = new byte[16 + 4 + name.Length + 4];
        BinaryPrimitives.WriteUInt64BigEndian(go, NbdProtocol.OptionMagic);
        BinaryPrimitives.WriteUInt32BigEndian(go.AsSpan(8), NbdProtocol.OptGo);
        BinaryPrimitives.WriteUInt32BigEndian(go.AsSpan(12), (uint)(4 + name.Length + 4));
        BinaryPrimitives.WriteUInt32BigEndian(go.AsSpan(16), (uint)name.Length);
        name.CopyTo(go.AsSpan(20));
        BinaryPrimitives.WriteUInt16BigEndian(go.AsSpan(20 + name.Length), 1);
        BinaryPrimitives.WriteUInt16BigEndian(go.AsSpan(22 + name.Length), NbdProtocol.InfoBlockSize);
        await stream.WriteAsync(go, cancellationToken).ConfigureAwait(false);

        long size = -1;
        ushort flags = 0;
        int minimum = 1, preferred = 4096, maximum = 32 << 20;   // the spec's defaults when the server sends no block sizes
        var header = new byte[20];
        while (true)
        {
            var (type, data) = await ReadOptionReplyAsync(stream, options, header, cancellationToken).ConfigureAwait(false);
            if (type == NbdProtocol.RepAck)
                break;
            if ((type & 0x80000000) != 0)
            {
                string why = Why(type, data);
                throw new NbdConfigurationException(type == NbdProtocol.RepErrUnknown
                    ? $"{options}: the server has no export '{options.ExportName}' ({why})."
                    : $"{options}: the server refused the export: {why}.");
            }
            if (type != NbdProtocol.RepInfo || data.Length < 2)
                continue;
            ushort info = BinaryPrimitives.ReadUInt16BigEndian(data);
            if (info == NbdProtocol.InfoExport && data.Length >= 12)
            {
                size = checked((long)BinaryPrimitives.ReadUInt64BigEndian(data.AsSpan(2)));
                flags = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(10));
            }
            else if (info == NbdProtocol.InfoBlockSize && data.Length >= 14)
            {
                minimum = (int)BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(2));
                preferred = (int)BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(6));
                maximum = (int)Math.Min(BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(10)), int.MaxValue);
            }
        }
        if (size < 0)
            throw new InvalidDataException($"{options}: the server finished the handshake without saying the export's size.");
        return new ExportInfo(size, flags, minimum, preferred, maximum);
    }

    /// <summary>
    /// Sends one request and waits for its reply. For a read, <paramref name="read"/> receives the payload; for a write,
    /// <paramref name="write"/> is sent after the header. Returns the NBD error (0 on success).
    /// </summary>
    public async Task<int> SendAsync(ushort command, ushort flags, long offset, int length, Memory<byte> read, ReadOnlyMemory<byte> write, CancellationToken cancellationToken)
    {
        ThrowIfBroken();
        ulong cookie = (ulong)Interlocked.Increment(ref _nextCookie);
        var pending = new Pending(read);
        _pending[cookie] = pending;
        byte[] header = ArrayPool<byte>.Shared.Rent(NbdProtocol.RequestHeaderLength);
        try
        {
            BinaryPrimitives.WriteUInt32BigEndian(header, NbdProtocol.RequestMagic);
            BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(4), flags);
            BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(6), command);
            BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(8), cookie);
            BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(16), (ulong)offset);
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(24), (uint)length);
            await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                ThrowIfBroken();
                await _stream.WriteAsync(header.AsMemory(0, NbdProtocol.RequestHeaderLength), CancellationToken.None).ConfigureAwait(false);
                if (!write.IsEmpty)
                    await _stream.WriteAsync(write, CancellationToken.None).ConfigureAwait(false);
            }
            finally
            {
                _sendLock.Release();
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException && e is not ConnectionLostException)
        {
            _pending.TryRemove(cookie, out _);
            Break(e);
            throw new ConnectionLostException($"the connection broke while sending: {e.Message}", e);
        }
        catch
        {
            _pending.TryRemove(cookie, out _);
            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(header);
        }
        return await pending.Completion.Task.ConfigureAwait(false);
    }

    private async Task ReceiveLoopAsync()
    {
        var header = new byte[NbdProtocol.SimpleReplyHeaderLength];
        try
        {
            while (true)
            {
                await _stream.ReadExactlyAsync(header).ConfigureAwait(false);
                if (BinaryPrimitives.ReadUInt32BigEndian(header) != NbdProtocol.SimpleReplyMagic)
                    throw new InvalidDataException("the server sent a reply that is not a simple reply.");
                int error = (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4));
                ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8));
                if (!_pending.TryRemove(cookie, out var pending))
                    throw new InvalidDataException($"the server answered a request it was not sent (cookie {cookie}).");
                if (error == 0 && !pending.Read.IsEmpty)
                    await _stream.ReadExactlyAsync(pending.Read).ConfigureAwait(false);
                pending.Completion.TrySetResult(error);
            }
        }
        catch (Exception e)
        {
            Break(e);
        }
    }

    private void Break(Exception cause)
    {
        _broken ??= cause;
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
        foreach (var cookie in _pending.Keys)
        {
            if (_pending.TryRemove(cookie, out var pending))
                pending.Completion.TrySetException(new ConnectionLostException($"the connection broke: {cause.Message}", cause));
        }
    }

    private void ThrowIfBroken()
    {
        if (_broken is { } cause)
            throw new ConnectionLostException($"the connection broke: {cause.Message}", cause);
    }

    /// <summary>Says goodbye (NBD_CMD_DISC) when the connection still works, then closes it.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_broken is null)
        {
            try
            {
                var header = new byte[NbdProtocol.RequestHeaderLength];
                BinaryPrimitives.WriteUInt32BigEndian(header, NbdProtocol.RequestMagic);
                BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(6), NbdProtocol.CmdDisconnect);
                await _sendLock.WaitAsync().ConfigureAwait(false);
                try
                {
                    await _stream.WriteAsync(header).ConfigureAwait(false);
                }
                finally
                {
                    _sendLock.Release();
                }
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
            {
                // Gone already.
            }
        }
        Break(new ObjectDisposedException(nameof(NbdClientConnection)));
        try
        {
            await _receiving.ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
        }
        await _stream.DisposeAsync().ConfigureAwait(false);
        _socket.Dispose();
        _sendLock.Dispose();
    }

    private sealed class Pending(Memory<byte> read)
    {
        public Memory<byte> Read { get; } = read;

        public TaskCompletionSource<int> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
