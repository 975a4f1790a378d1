using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using Storage.Consensus;

namespace Storage.Metadata;

/// <summary>Thrown when no replica answered a request in time (it may still be applied).</summary>
public sealed class MetadataUnavailableException(string message) : Exception(message);

/// <summary>
/// A client of replicas served by <see cref="MetadataServer"/>: finds the leader (following hints), keeps
/// one multiplexed connection per replica, and retries a command under the same request id until it gets
/// an answer, so each command applies once. Thread-safe: any number of requests may be in flight at once.
/// </summary>
/// <remarks>
/// A connection is shared by every request in flight to its replica, so it is never disposed under them:
/// when it breaks (or is replaced) it is closed, which fails each request still waiting on it with an
/// <see cref="IOException"/> that <see cref="ExecuteAsync"/> retries elsewhere. One connect per replica runs
/// at a time, and <see cref="AttemptTimeout"/> bounds every step of an attempt (connecting, waiting to write,
/// waiting for the answer).
/// </remarks>
public sealed class MetadataClient : IMetadataStore, IDisposable
{
    private readonly IReadOnlyDictionary<int, IPEndPoint> _endpoints;
    private readonly Dictionary<int, Slot> _slots;
    private readonly SessionTracker _session = new();
    private readonly int[] _ids;
    private long _requestId;
    private volatile int _leader;
    private volatile bool _disposed;

    /// <summary>Creates a client of the replicas at <paramref name="endpoints"/> (client endpoints by replica id).</summary>
    public MetadataClient(IReadOnlyDictionary<int, IPEndPoint> endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        _endpoints = endpoints;
        _ids = [.. endpoints.Keys.Order()];
        _slots = _ids.ToDictionary(id => id, _ => new Slot());
        _leader = _ids[0];
    }

    /// <summary>How long one attempt at one replica may take (connecting included).</summary>
    public TimeSpan AttemptTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>TLS for the connections to replicas (null: plain TCP).</summary>
    public SslClientAuthenticationOptions? Tls { get; init; }

    /// <summary>How long a request is retried in all.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Executes <paramref name="command"/> at the leader.</summary>
    /// <exception cref="MetadataUnavailableException">No answer within <see cref="Timeout"/>.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired.</exception>
    /// <exception cref="ObjectDisposedException">The client was disposed.</exception>
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
    /// <exception cref="MetadataUnavailableException">No answer within <see cref="Timeout"/>.</exception>
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

    /// <summary>The keys under <paramref name="prefix"/>, linearizably at the leader.</summary>
    /// <exception cref="MetadataUnavailableException">No answer within <see cref="Timeout"/>.</exception>
    public async Task<IReadOnlyList<KeyVersion>> ListAsync(string prefix, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        var w = new ByteWriter(64);
        w.String(prefix);
        var payload = await CallRaw(Protocol.List, w.Written.ToArray(), cancellationToken).ConfigureAwait(false);
        var r = new ByteReader(payload.Span);
        var keys = new KeyVersion[r.Count(12)];
        for (int i = 0; i < keys.Length; i++)
            keys[i] = new KeyVersion(r.String(), r.I64());
        return keys;
    }

    /// <summary>How often <see cref="Watch"/> polls the leader.</summary>
    public TimeSpan WatchInterval { get; init; } = TimeSpan.FromMilliseconds(200);

    /// <summary>
    /// Polls the keys under <paramref name="prefix"/> every <see cref="WatchInterval"/> and reports each key whose version
    /// changed (with its value) or that disappeared, in version order. Changes between two polls of a key coalesce
    /// into the last; a poll that fails (no leader for a while) is retried at the next tick and loses nothing.
    /// </summary>
    public IDisposable Watch(string prefix, Action<WatchEvent> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        var stop = new CancellationTokenSource();
        _ = Task.Run(() => PollAsync(prefix, handler, stop.Token));
        return new WatchHandle(stop);
    }

    private async Task PollAsync(string prefix, Action<WatchEvent> handler, CancellationToken cancellationToken)
    {
        Dictionary<string, long>? known = null;
        while (!cancellationToken.IsCancellationRequested && !_disposed)
        {
            try
            {
                var now = (await ListAsync(prefix, cancellationToken).ConfigureAwait(false)).ToDictionary(k => k.Key, k => k.Version, StringComparer.Ordinal);
                if (known is not null)
                {
                    var changes = new List<WatchEvent>();
                    foreach (var (key, version) in now)
                    {
                        if (known.TryGetValue(key, out long before) && before == version)
                            continue;
                        var read = await ReadAsync(key, cancellationToken).ConfigureAwait(false);
                        changes.Add(read.IsOk ? new WatchEvent(key, false, read.Version, read.Version, read.Value) : new WatchEvent(key, true, 0, read.Revision, ReadOnlyMemory<byte>.Empty));
                    }
                    long revision = now.Values.DefaultIfEmpty(0).Max();
                    foreach (var key in known.Keys.Where(k => !now.ContainsKey(k)))
                        changes.Add(new WatchEvent(key, true, 0, revision, ReadOnlyMemory<byte>.Empty));
                    foreach (var change in changes.OrderBy(c => c.Revision))
                        handler(change);
                }
                known = now;
            }
            catch (Exception e) when (e is MetadataUnavailableException or OperationCanceledException or ObjectDisposedException)
            {
                // Retried at the next tick (or stopped).
            }
            try
            {
                await Task.Delay(WatchInterval, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private sealed class WatchHandle(CancellationTokenSource stop) : IDisposable
    {
        // Cancelled, not disposed: the poll loop may still be looking at its token.
        public void Dispose() => stop.Cancel();
    }

    private async Task<CommandResult> Call(byte kind, byte[] body, CancellationToken cancellationToken)
    {
        var payload = await CallRaw(kind, body, cancellationToken).ConfigureAwait(false);
        var r = new ByteReader(payload.Span);
        return MetadataCodec.ReadResult(ref r);
    }

    /// <summary>Sends a request to the leader (following hints and failing over) and returns the body of its Ok answer.</summary>
    private async Task<ReadOnlyMemory<byte>> CallRaw(byte kind, byte[] body, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + Timeout;
        int target = _leader;
        string last = "no attempt";
        while (DateTime.UtcNow < deadline)
        {
            cancellationToken.ThrowIfCancellationRequested();
            ObjectDisposedException.ThrowIf(_disposed, this);
            try
            {
                var (outcome, payload) = await Send(target, kind, body, cancellationToken).ConfigureAwait(false);
                if (outcome == Protocol.Ok)
                {
                    _leader = target;
                    return payload;
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
            }
            target = Next(target);
            await Task.Delay(20, cancellationToken).ConfigureAwait(false);
        }
        throw new MetadataUnavailableException($"No replica answered within {Timeout} ({last}); the request may still be applied.");
    }

    private int Next(int id) => _ids[(Array.IndexOf(_ids, id) + 1) % _ids.Length];

    /// <summary>One attempt at replica <paramref name="id"/>, bounded by <see cref="AttemptTimeout"/>.</summary>
    /// <exception cref="IOException">The connection broke (the request may have been applied).</exception>
    /// <exception cref="TimeoutException">No answer within <see cref="AttemptTimeout"/>.</exception>
    private async Task<(byte Outcome, ReadOnlyMemory<byte> Payload)> Send(int id, byte kind, byte[] body, CancellationToken cancellationToken)
    {
        using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        attempt.CancelAfter(AttemptTimeout);
        long requestId = Interlocked.Increment(ref _requestId);
        var w = new ByteWriter(body.Length + 9);
        w.I64(requestId);
        w.U8(kind);
        w.Raw(body);
        long started = Environment.TickCount64;
        Connection? connection = null;
        try
        {
            connection = await Connect(id, attempt.Token).ConfigureAwait(false);
            var response = await connection.Request(requestId, w.Written.ToArray(), attempt.Token).ConfigureAwait(false);
            return (response[8], response.AsMemory(9));
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // A connection that heard nothing at all while this request waited is presumed dead (a peer that
            // vanished without a reset); one that is merely slow keeps serving the other requests on it.
            if (connection is not null && connection.LastHeard < started)
                Retire(id, connection);
            throw new TimeoutException($"Replica {id} did not answer within {AttemptTimeout}.");
        }
        catch (IOException) when (connection is not null)
        {
            Retire(id, connection);
            throw;
        }
    }

    /// <summary>The live connection to replica <paramref name="id"/>, opening one (one connect at a time) if needed.</summary>
    private async Task<Connection> Connect(int id, CancellationToken cancellationToken)
    {
        var slot = _slots[id];
        if (slot.Current is { Broken: false } existing)
            return existing;
        await slot.Connecting.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            // Another request may have connected while this one waited.
            if (slot.Current is { Broken: false } current)
                return current;
            var client = new TcpClient { NoDelay = true };
            Stream stream;
            try
            {
                await client.ConnectAsync(_endpoints[id], cancellationToken).ConfigureAwait(false);
                stream = await TransportTls.ClientAsync(client.GetStream(), Tls, cancellationToken).ConfigureAwait(false);
            }
            catch (AuthenticationException e)
            {
                client.Dispose();
                throw new IOException($"the TLS handshake with {_endpoints[id]} failed ({e.Message}): it is not a replica of this cluster, or this process lacks the cluster's key", e);
            }
            catch
            {
                client.Dispose();
                throw;
            }
            var connection = new Connection(client, stream);
            var old = slot.Current;
            slot.Current = connection;
            // Closed, not disposed: requests still waiting on it fail with a retryable IOException.
            old?.Close();
            if (_disposed)
                connection.Close();
            return connection;
        }
        finally
        {
            slot.Connecting.Release();
        }
    }

    /// <summary>Closes <paramref name="connection"/> and forgets it, unless it was already replaced.</summary>
    private void Retire(int id, Connection connection)
    {
        Interlocked.CompareExchange(ref _slots[id].Current, null, connection);
        connection.Close();
    }

    /// <summary>Closes every connection; requests in flight fail. Further requests throw <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        _disposed = true;
        foreach (var slot in _slots.Values)
            Interlocked.Exchange(ref slot.Current, null)?.Close();
    }

    [SuppressMessage("Design", "CA1001", Justification = "The semaphore is never disposed: requests may still wait on it.")]
    private sealed class Slot
    {
        // Never disposed: a request may still be waiting on it when the client is disposed.
        public readonly SemaphoreSlim Connecting = new(1);
        public volatile Connection? Current;
    }

    /// <summary>
    /// One TCP connection multiplexing requests by id. <see cref="Close"/> may run at any time, from any
    /// thread, while other requests use it: every request waiting on it, or arriving later, then fails with an
    /// <see cref="IOException"/>. Nothing it holds is ever disposed under a user.
    /// </summary>
    [SuppressMessage("Design", "CA1001", Justification = "Closed, never disposed: other requests may still use it.")]
    private sealed class Connection
    {
        private readonly TcpClient _client;
        private readonly Stream _stream;
        // Never disposed (it owns no wait handle unless asked for one): writers may still be queued on it.
        private readonly SemaphoreSlim _write = new(1);
        private readonly ConcurrentDictionary<long, TaskCompletionSource<byte[]>> _waiting = new();
        private volatile bool _broken;
        private long _lastHeard = Environment.TickCount64;

        public Connection(TcpClient client, Stream stream)
        {
            _client = client;
            _stream = stream;
            _ = Task.Run(ReadLoop);
        }

        public bool Broken => _broken;

        /// <summary>When a frame last arrived (<see cref="Environment.TickCount64"/>).</summary>
        public long LastHeard => Volatile.Read(ref _lastHeard);

        /// <exception cref="IOException">The connection is or became broken.</exception>
        /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired.</exception>
        public async Task<byte[]> Request(long id, byte[] frame, CancellationToken cancellationToken)
        {
            var tcs = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiting[id] = tcs;
            try
            {
                // Close sets _broken before it fails the waiting requests: either it saw this one, or this sees it.
                if (_broken)
                    throw new IOException("Connection closed.");
                await _write.WaitAsync(cancellationToken).ConfigureAwait(false);
                try
                {
                    await FrameCodec.WriteAsync(_stream, frame, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    // A write cut short leaves half a frame on the stream: nothing more can be sent on it.
                    Close();
                    if (e is OperationCanceledException)
                        throw;
                    throw new IOException("Connection closed while sending.", e);
                }
                finally
                {
                    _write.Release();
                }
                return await tcs.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
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
                {
                    Volatile.Write(ref _lastHeard, Environment.TickCount64);
                    if (frame.Length >= 9 && _waiting.TryGetValue(BitConverter.ToInt64(frame, 0), out var tcs))
                        tcs.TrySetResult(frame);
                }
            }
#pragma warning disable CA1031 // Whatever ends the read loop (reset, garbage, close), the requests on it must fail.
            catch (Exception)
#pragma warning restore CA1031
            {
            }
            Close();
        }

        /// <summary>Marks the connection broken, closes the socket and fails every waiting request. Idempotent.</summary>
        public void Close()
        {
            _broken = true;
            _client.Dispose();
            // A writer still on it fails, and Request turns that into the IOException every waiter gets.
            _stream.Dispose();
            foreach (var tcs in _waiting.Values)
                tcs.TrySetException(new IOException("Connection closed."));
        }
    }
}
