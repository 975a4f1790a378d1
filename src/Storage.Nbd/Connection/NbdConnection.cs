using System.Net.Sockets;
using System.Security.Authentication;
using Storage.Nbd.Buffers;

namespace Storage.Nbd.Connection;

/// <summary>
/// One client, served by a thread of its own: the handshake (<c>NbdConnection.Handshake.cs</c>), then a receive loop
/// that parses requests and starts them on the device without waiting for them (<c>.Receive.cs</c>,
/// <c>.Commands.cs</c>). Replies are sent by whichever thread completes a request, gathered with the replies that
/// completed meanwhile (<c>.Send.cs</c>).
/// </summary>
/// <remarks>
/// <para>Why a thread and blocking receives rather than async sockets: with async sockets every wake-up goes epoll
/// thread → thread pool → receive loop, and the measured cost was about a third more CPU per request and four times
/// the context switches; with both cores shared by client and server, CPU per request decides throughput.</para>
/// <para>Hostile input never throws out of here: a malformed frame gets an error reply, or ends this connection only.
/// Buffers handed to the device are returned to the pool only after the device operation completed, whatever happened
/// to the socket meanwhile.</para>
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The connection's thread disposes everything when the connection ends; nothing else may.")]
internal sealed partial class NbdConnection
{
    // Large enough to take a queue depth of small requests in one receive; small enough that little of a large write's
    // payload is received here and copied again (the rest goes straight into the request's buffer).
    private const int ReceiveBufferSize = 64 << 10;
    private const int SendBufferSize = 64 << 10;

    /// <summary>The largest buffer a connection rents besides payloads.</summary>
    public const int LargestBuffer = ReceiveBufferSize > SendBufferSize ? ReceiveBufferSize : SendBufferSize;

    private static readonly TimeSpan LingerTime = TimeSpan.FromSeconds(1);
    private const long LingerBytes = 64 << 20;

    private readonly NbdServer _server;
    private readonly NbdServerOptions _options;
    private readonly Socket _socket;
    private readonly NbdTlsOptions? _tls;
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly FrameReader _reader;
    private readonly NativeBuffer _receiveBuffer;
    private readonly NativeBuffer _sendBuffer;
    private Transport _transport;

    // In-flight accounting, guarded by _flightLock (a monitor: the receive thread waits on it for room or for drain).
    private readonly object _flightLock = new();
    private readonly Stack<NbdRequest> _freeRequests = new();
    private int _inFlight;
    private long _bytesInFlight;
    private bool _receiverWaiting;

    // Lifecycle, guarded by _stateLock.
    private readonly Lock _stateLock = new();
    private bool _stopRequested;
    private bool _handshakeDone;
    private bool _closed;

    // Negotiated in the handshake.
    private NbdExport? _export;
    private bool _structuredReplies;

    // base:allocation's context id for this connection (0: not negotiated), and the export it was chosen for.
    private uint _metaContextId;
    private string? _metaContextExport;
    private uint _lastContextId;

    public NbdConnection(NbdServer server, Socket socket, NbdTlsOptions? tls, string peer)
    {
        _server = server;
        _options = server.Options;
        _socket = socket;
        _socket.Blocking = true;
        _tls = tls;
        Peer = peer;
        _transport = new Transport.Plain(socket);
        _receiveBuffer = server.Pool.Rent(ReceiveBufferSize);
        _sendBuffer = server.Pool.Rent(SendBufferSize);
        _reader = new FrameReader(_receiveBuffer, _transport);
    }

    /// <summary>Who is connected: the remote address, or the Unix socket peer's pid and uid.</summary>
    public string Peer { get; }

    /// <summary>The export chosen in the handshake; null until then.</summary>
    public NbdExport? Export => _export;

    /// <summary>Completes when the connection is closed and every buffer it used is back in the pool.</summary>
    public Task Completion => _completion.Task;

    /// <summary>Starts the connection's thread.</summary>
    public void Start()
    {
        var thread = new Thread(Run, maxStackSize: 512 << 10) { IsBackground = true, Name = "nbd " + Peer };
        thread.Start();
    }

    /// <summary>Serves the client until it disconnects, breaks the protocol, or <see cref="Stop"/> is called. Never throws.</summary>
    private void Run()
    {
        try
        {
            bool transmit;
            using (new Timer(static state => ((NbdConnection)state!).OnHandshakeTimeout(), this, _options.HandshakeTimeout, Timeout.InfiniteTimeSpan))
            {
                transmit = Handshake();
                lock (_stateLock)
                    _handshakeDone = true;
            }
            if (transmit)
                Transmit();
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
            Close();
            _completion.TrySetResult();
        }
    }

    /// <summary>
    /// Stops reading requests; those in flight are answered, then the connection closes. Safe to call more than once
    /// and from any thread.
    /// </summary>
    public void Stop()
    {
        lock (_stateLock)
        {
            if (_stopRequested || _closed)
                return;
            _stopRequested = true;
            // Ends a blocked receive (it returns 0), in the handshake or between requests.
            TryShutdown(SocketShutdown.Receive);
        }
        lock (_flightLock)
            Monitor.PulseAll(_flightLock);
    }

    /// <summary>Cuts the connection at once (the stop timeout ran out): blocked sends and receives fail.</summary>
    public void Abort()
    {
        Stop();
        lock (_stateLock)
        {
            if (!_closed)
                TryShutdown(SocketShutdown.Both);
        }
    }

    private void OnHandshakeTimeout()
    {
        lock (_stateLock)
        {
            if (_handshakeDone || _closed)
                return;
            Log($"no export chosen within {_options.HandshakeTimeout.TotalSeconds:0.#} s; closing");
            TryShutdown(SocketShutdown.Both);
        }
    }

    private void TryShutdown(SocketShutdown how)
    {
        try
        {
            _socket.Shutdown(how);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
    }

    private void Close()
    {
        StopSendThread();
        if (_transport is Transport.Tls tls)
        {
            try
            {
                tls.Stream.ShutdownAsync().Wait(LingerTime);
            }
            // Best effort, on the connection's own thread: a handshake that failed (garbage, a refused certificate)
            // leaves nothing to shut down and throws at once; whatever it throws must not end the process.
#pragma warning disable CA1031
            catch (Exception)
#pragma warning restore CA1031
            {
            }
        }
        Linger();
        lock (_stateLock)
        {
            _closed = true;
            _transport.Dispose();
            _socket.Dispose();
        }
        // Every request has been released (the transmission phase drains before returning), so the buffers are free.
        _sendThreadSignal.Dispose();
        _server.Pool.Return(_receiveBuffer);
        _server.Pool.Return(_sendBuffer);
        _server.OnConnectionClosed(this);
    }

    /// <summary>
    /// Sends FIN after the last reply, then reads and discards what the client still sends until it closes too (for
    /// at most <see cref="LingerTime"/>). Closing a socket with unread input makes the kernel reset the connection
    /// and throw away replies still in the send queue, so a client that sent more than was read (after a refused
    /// frame, or when the server stops) would lose answers to requests that were carried out.
    /// </summary>
    private void Linger()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Send);
            long deadline = Environment.TickCount64 + (long)LingerTime.TotalMilliseconds;
            var discard = _receiveBuffer.Data;
            for (long total = 0; total < LingerBytes;)
            {
                long left = deadline - Environment.TickCount64;
                if (left <= 0 || !_socket.Poll(TimeSpan.FromMilliseconds(left), SelectMode.SelectRead))
                    break;
                int received = _socket.Receive(discard);
                if (received == 0)
                    break;
                total += received;
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
    }

    /// <summary>Takes a request from the free list, waiting while the connection is at its in-flight limits.</summary>
    /// <exception cref="OperationCanceledException">The connection is stopping.</exception>
    private NbdRequest AcquireRequest(long budget)
    {
        lock (_flightLock)
        {
            if (TryAcquireLocked(budget, out var request))
                return request;
        }
        // Replies held back for batching must go out before waiting for them.
        Uncork();
        lock (_flightLock)
        {
            while (true)
            {
                if (TryAcquireLocked(budget, out var request))
                    return request;
                if (Volatile.Read(ref _stopRequested))
                    throw new OperationCanceledException("the connection is stopping");
                _receiverWaiting = true;
                Monitor.Wait(_flightLock);
            }
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

    /// <summary>Returns a request (its reply sent or dropped) and its buffer; wakes the receive thread if it waits.</summary>
    private void Release(NbdRequest request)
    {
        if (request.Buffer is { } buffer)
        {
            request.Buffer = null;
            _server.Pool.Return(buffer);
        }
        lock (_flightLock)
        {
            _inFlight--;
            _bytesInFlight -= request.Budget;
            _freeRequests.Push(request);
            if (_receiverWaiting)
            {
                _receiverWaiting = false;
                Monitor.PulseAll(_flightLock);
            }
        }
    }

    /// <summary>Waits until every request in flight has been answered (or its reply dropped).</summary>
    private void Drain()
    {
        Uncork();
        lock (_flightLock)
        {
            while (_inFlight > 0)
            {
                _receiverWaiting = true;
                Monitor.Wait(_flightLock);
            }
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
