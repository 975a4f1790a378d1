using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Storage.Consensus;

namespace Storage.Metadata;

/// <summary>Thrown when no replica answered a request in time (it may still be applied).</summary>
public sealed class MetadataUnavailableException(string message) : Exception(message);

/// <summary>
/// A client of replicas served by <see cref="MetadataServer"/>: finds the leader (following hints), keeps
/// one multiplexed connection per replica, and retries a command under the same request id until it gets
/// an answer, so each command applies once. Thread-safe.
/// </summary>
public sealed class MetadataClient : IDisposable
{
    private readonly IReadOnlyDictionary<int, IPEndPoint> _endpoints;
    private readonly ConcurrentDictionary<int, Connection> _connections = new();
    private readonly SessionTracker _session = new();
    private readonly int[] _ids;
    private long _requestId;
    private volatile int _leader;

    /// <summary>Creates a client of the replicas at <paramref name="endpoints"/> (client endpoints by replica id).</summary>
    public MetadataClient(IReadOnlyDictionary<int, IPEndPoint> endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        _endpoints = endpoints;
        _ids = [.. endpoints.Keys.Order()];
        _leader = _ids[0];
    }

    /// <summary>How long one attempt at one replica may take.</summary>
    public TimeSpan AttemptTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>How long a request is retried in all.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Executes <paramref name="command"/> at the leader.</summary>
    /// <exception cref="MetadataUnavailableException">No answer within <see cref="Timeout"/>.</exception>
    public async Task<CommandResult> ExecuteAsync(MetadataCommand command, CancellationToken cancellationToken = default)
    {
        var (seq, acked) = _session.Next();
        try
        {
            byte[] body = MetadataCodec.Encode(new Envelope(_session.Session, seq, command, acked));
            return await Call(Protocol.Execute, body, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _session.Done(seq);
        }
    }

    /// <summary>Reads <paramref name="key"/> linearizably at the leader.</summary>
    public Task<CommandResult> ReadAsync(string key, CancellationToken cancellationToken = default)
    {
        var w = new ByteWriter(64);
        w.String(key);
        return Call(Protocol.Read, w.Written.ToArray(), cancellationToken);
    }

    /// <summary>The status of replica <paramref name="id"/>, or null if it does not answer.</summary>
    public async Task<RemoteStatus?> StatusAsync(int id, CancellationToken cancellationToken = default)
    {
        try
        {
            var (outcome, payload) = await Send(id, Protocol.StatusRequest, [], cancellationToken).ConfigureAwait(false);
            if (outcome != Protocol.Ok)
                return null;
            var r = new ByteReader(payload.Span);
            return Protocol.ReadStatus(ref r);
        }
        catch (Exception e) when (e is IOException or SocketException or TimeoutException or OperationCanceledException)
        {
            return null;
        }
    }

    private async Task<CommandResult> Call(byte kind, byte[] body, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + Timeout;
        int target = _leader;
        string last = "no attempt";
        while (DateTime.UtcNow < deadline)
        {
            cancellationToken.ThrowIfCancellationRequested();
            try
            {
                var (outcome, payload) = await Send(target, kind, body, cancellationToken).ConfigureAwait(false);
                if (outcome == Protocol.Ok)
                {
                    _leader = target;
                    var r = new ByteReader(payload.Span);
                    return MetadataCodec.ReadResult(ref r);
                }
                var br = new ByteReader(payload.Span);
                if (outcome == Protocol.NotLeader)
                {
                    int hint = br.I32();
                    last = $"replica {target} is not the leader";
                    target = hint > 0 && hint != target && _endpoints.ContainsKey(hint) ? hint : Next(target);
                    if (hint <= 0)
                        await Task.Delay(20, cancellationToken).ConfigureAwait(false);
                    continue;
                }
                last = br.String();
            }
            catch (Exception e) when (e is IOException or SocketException or TimeoutException or FormatException)
            {
                last = $"replica {target}: {e.Message}";
                Drop(target);
            }
            target = Next(target);
            await Task.Delay(20, cancellationToken).ConfigureAwait(false);
        }
        throw new MetadataUnavailableException($"No replica answered within {Timeout} ({last}); the request may still be applied.");
    }

    private int Next(int id) => _ids[(Array.IndexOf(_ids, id) + 1) % _ids.Length];

    private async Task<(byte Outcome, ReadOnlyMemory<byte> Payload)> Send(int id, byte kind, byte[] body, CancellationToken cancellationToken)
    {
        var connection = await Connect(id, cancellationToken).ConfigureAwait(false);
        long requestId = Interlocked.Increment(ref _requestId);
        var w = new ByteWriter(body.Length + 9);
        w.I64(requestId);
        w.U8(kind);
        w.Raw(body);
        var response = await connection.Request(requestId, w.Written.ToArray(), AttemptTimeout, cancellationToken).ConfigureAwait(false);
        return (response[8], response.AsMemory(9));
    }

    private async Task<Connection> Connect(int id, CancellationToken cancellationToken)
    {
        if (_connections.TryGetValue(id, out var existing) && !existing.Broken)
            return existing;
        var client = new TcpClient { NoDelay = true };
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(AttemptTimeout);
            await client.ConnectAsync(_endpoints[id], timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            client.Dispose();
            throw new TimeoutException($"Connecting to replica {id} timed out.");
        }
        catch
        {
            client.Dispose();
            throw;
        }
        var connection = new Connection(client);
        if (_connections.TryGetValue(id, out var old))
            old.Dispose();
        _connections[id] = connection;
        return connection;
    }

    private void Drop(int id)
    {
        if (_connections.TryRemove(id, out var c))
            c.Dispose();
    }

    /// <summary>Closes every connection.</summary>
    public void Dispose()
    {
        foreach (var c in _connections.Values)
            c.Dispose();
        _connections.Clear();
    }

    private sealed class Connection : IDisposable
    {
        private readonly TcpClient _client;
        private readonly NetworkStream _stream;
        private readonly SemaphoreSlim _write = new(1);
        private readonly ConcurrentDictionary<long, TaskCompletionSource<byte[]>> _waiting = new();

        public Connection(TcpClient client)
        {
            _client = client;
            _stream = client.GetStream();
            _ = Task.Run(ReadLoop);
        }

        public bool Broken { get; private set; }

        public async Task<byte[]> Request(long id, byte[] frame, TimeSpan timeout, CancellationToken cancellationToken)
        {
            var tcs = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiting[id] = tcs;
            try
            {
                await _write.WaitAsync(cancellationToken).ConfigureAwait(false);
                try
                {
                    await FrameCodec.WriteAsync(_stream, frame, cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    _write.Release();
                }
                return await tcs.Task.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                _waiting.TryRemove(id, out _);
            }
        }

        private async Task ReadLoop()
        {
            try
            {
                while (await FrameCodec.ReadAsync(_stream).ConfigureAwait(false) is { } frame)
                    if (frame.Length >= 9 && _waiting.TryGetValue(BitConverter.ToInt64(frame, 0), out var tcs))
                        tcs.TrySetResult(frame);
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
            {
            }
            Broken = true;
            foreach (var tcs in _waiting.Values)
                tcs.TrySetException(new IOException("Connection closed."));
        }

        public void Dispose()
        {
            Broken = true;
            _client.Dispose();
            _write.Dispose();
        }
    }
}
