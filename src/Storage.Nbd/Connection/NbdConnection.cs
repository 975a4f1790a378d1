using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using Storage.Nbd.Buffers;

namespace Storage.Nbd.Connection;

/// <summary>
/// One client: the handshake (<c>NbdConnection.Handshake.cs</c>), then a receive loop that parses requests and starts
/// them on the device (<c>.Receive.cs</c>, <c>.Commands.cs</c>), and a sender that writes replies as requests complete,
/// in completion order, batching those that complete together (<c>.Send.cs</c>).
/// </summary>
/// <remarks>
/// Hostile input never throws out of here: a malformed frame gets an error reply, or ends this connection only.
/// Buffers handed to the device are returned to the pool only after the device operation completed, whatever
/// happened to the socket meanwhile.
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "RunAsync disposes everything when the connection ends; nothing else may.")]
internal sealed partial class NbdConnection
{
    private const int ReceiveBufferSize = 256 << 10;
    private const int SendBufferSize = 256 << 10;

    /// <summary>The largest buffer a connection rents besides payloads.</summary>
    public const int LargestBuffer = ReceiveBufferSize > SendBufferSize ? ReceiveBufferSize : SendBufferSize;

    private readonly NbdServer _server;
    private readonly NbdServerOptions _options;
    private readonly Socket _socket;
    private readonly NbdTlsOptions? _tls;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly FrameReader _reader;
    private readonly NativeBuffer _receiveBuffer;
    private NativeBuffer? _sendBuffer;
    private Stream _stream;
    private SslStream? _sslStream;

    // In-flight accounting, guarded by _flightLock. The receive loop waits on _receiverSignal for room or for drain.
    private readonly Lock _flightLock = new();
    private readonly Stack<NbdRequest> _freeRequests = new();
    private readonly AsyncSignal _receiverSignal = new(inline: false);
    private int _inFlight;
    private long _bytesInFlight;
    private bool _receiverWaiting;

    // Negotiated in the handshake.
    private NbdExport? _export;
    private bool _structuredReplies;

    public NbdConnection(NbdServer server, Socket socket, NbdTlsOptions? tls, string peer)
    {
        _server = server;
        _options = server.Options;
        _socket = socket;
        _tls = tls;
        Peer = peer;
        _stream = new NetworkStream(socket, ownsSocket: false);
        _receiveBuffer = server.Pool.Rent(ReceiveBufferSize);
        _reader = new FrameReader(_receiveBuffer, _stream);
        _senderSignal = new AsyncSignal(inline: true);
    }

    /// <summary>Who is connected: the remote address, or the Unix socket peer's pid and uid.</summary>
    public string Peer { get; }

    /// <summary>The export chosen in the handshake; null until then.</summary>
    public NbdExport? Export => _export;

    /// <summary>Completes when the connection is closed and every buffer it used is back in the pool.</summary>
    public Task Completion => _completion.Task;

    /// <summary>Serves the client until it disconnects, breaks the protocol, or <see cref="Stop"/> is called. Never throws.</summary>
    public async Task RunAsync()
    {
        try
        {
            bool transmit;
            using (var handshakeTimeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token))
            {
                handshakeTimeout.CancelAfter(_options.HandshakeTimeout);
                transmit = await HandshakeAsync(handshakeTimeout.Token).ConfigureAwait(false);
            }
            if (transmit)
                await TransmitAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (IsDisconnect(e))
        {
            Log($"disconnected: {e.Message}");
        }
        catch (Exception e)
        {
            _server.ReportUnexpected(this, e);
        }
        finally
        {
            await CloseAsync().ConfigureAwait(false);
            _completion.TrySetResult();
        }
    }

    /// <summary>
    /// Stops reading requests; those in flight are answered, then the connection closes. Safe to call more than once
    /// and from any thread.
    /// </summary>
    public void Stop()
    {
        try
        {
            _stop.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>Closes the socket at once (the stop timeout ran out): pending sends and receives fail.</summary>
    public void Abort()
    {
        Stop();
        try
        {
            _socket.Dispose();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private async ValueTask CloseAsync()
    {
        try
        {
            if (_sslStream is not null)
                await _sslStream.ShutdownAsync().WaitAsync(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
        }
        catch (Exception e) when (IsDisconnect(e) || e is TimeoutException)
        {
        }
        await LingerAsync().ConfigureAwait(false);
        _sslStream?.Dispose();
        _stream.Dispose();
        _socket.Dispose();
        _stop.Dispose();
        // Every request has been released (the transmission phase drains before returning), so the buffers are free.
        _server.Pool.Return(_receiveBuffer);
        if (_sendBuffer is not null)
            _server.Pool.Return(_sendBuffer);
        _server.OnConnectionClosed(this);
    }

    /// <summary>
    /// Sends FIN after the last reply, then reads and discards what the client still sends until it closes too (for
    /// at most <see cref="LingerTime"/>). Closing a socket with unread input makes the kernel reset the connection
    /// and throw away replies still in the send queue, so a client that sent more than was read (after a refused
    /// frame, or when the server stops) would lose answers to requests that were carried out.
    /// </summary>
    private async ValueTask LingerAsync()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Send);
            using var timeout = new CancellationTokenSource(LingerTime);
            var discard = _receiveBuffer.DataMemory(_receiveBuffer.Length);
            long total = 0;
            while (total < LingerBytes)
            {
                int read = await _socket.ReceiveAsync(discard, SocketFlags.None, timeout.Token).ConfigureAwait(false);
                if (read == 0)
                    break;
                total += read;
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
        {
        }
    }

    private static readonly TimeSpan LingerTime = TimeSpan.FromSeconds(1);
    private const long LingerBytes = 64 << 20;

    /// <summary>Takes a request from the free list, waiting while the connection is at its in-flight limits.</summary>
    private ValueTask<NbdRequest> AcquireRequestAsync(long budget)
    {
        lock (_flightLock)
        {
            if (TryAcquireLocked(budget, out var request))
                return ValueTask.FromResult(request);
        }
        return AcquireRequestSlowAsync(budget);
    }

    private async ValueTask<NbdRequest> AcquireRequestSlowAsync(long budget)
    {
        while (true)
        {
            Uncork();
            lock (_flightLock)
            {
                if (TryAcquireLocked(budget, out var request))
                    return request;
                _receiverSignal.Arm();
                _receiverWaiting = true;
            }
            await _receiverSignal.WaitAsync().ConfigureAwait(false);
        }
    }

    private bool TryAcquireLocked(long budget, out NbdRequest request)
    {
        if (_inFlight >= _options.MaxRequestsInFlight || (_inFlight > 0 && _bytesInFlight + budget > _options.MaxBytesInFlight))
        {
            request = null!;
            return false;
        }
        request = _freeRequests.Count > 0 ? _freeRequests.Pop() : new NbdRequest(this);
        _inFlight++;
        _bytesInFlight += budget;
        request.Budget = budget;
        return true;
    }

    /// <summary>Returns a request (its reply sent or dropped) and its buffer; wakes the receive loop if it waits.</summary>
    private void Release(NbdRequest request)
    {
        if (request.Buffer is { } buffer)
        {
            request.Buffer = null;
            _server.Pool.Return(buffer);
        }
        bool wake;
        lock (_flightLock)
        {
            _inFlight--;
            _bytesInFlight -= request.Budget;
            _freeRequests.Push(request);
            wake = _receiverWaiting;
            _receiverWaiting = false;
        }
        if (wake)
            _receiverSignal.Set();
    }

    /// <summary>Waits until every request in flight has been answered (or its reply dropped).</summary>
    private async ValueTask DrainAsync()
    {
        while (true)
        {
            Uncork();
            lock (_flightLock)
            {
                if (_inFlight == 0)
                    return;
                _receiverSignal.Arm();
                _receiverWaiting = true;
            }
            await _receiverSignal.WaitAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Called by a request whose device operation threw.</summary>
    internal void OnDeviceError(NbdRequest request, Exception e)
    {
        if (NbdErrors.IsExpected(e))
            Log($"{CommandName(request.Type)} at {request.Offset} of {request.Length} bytes failed: {e.Message}");
        else
            _server.ReportUnexpected(this, e);
    }

    private void Log(string message) => _server.Log($"{Peer}: {message}");

    private static bool IsDisconnect(Exception e) =>
        e is IOException or SocketException or OperationCanceledException or ObjectDisposedException or AuthenticationException or EndOfStreamException;
}
