using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Threading.Channels;

namespace Storage.Consensus;

/// <summary>
/// Consensus messages over TCP: one outgoing connection per peer (reconnected with backoff, messages
/// dropped while it is down or its queue is full), and a listener for peers' connections. Frames are
/// <see cref="FrameCodec"/> frames; a corrupt frame drops the connection.
/// </summary>
public sealed class TcpTransport : ITransport
{
    private const int QueueLimit = 4096;

    private readonly int _self;
    private readonly IPEndPoint _listen;
    private readonly IReadOnlyDictionary<int, IPEndPoint> _peers;
    private readonly ConcurrentDictionary<int, Channel<byte[]>> _queues = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _tasks = [];
    private TcpListener? _listener;
    private Action<Message>? _receive;

    /// <summary>Creates the transport of replica <paramref name="self"/>.</summary>
    /// <param name="self">This replica's id.</param>
    /// <param name="listen">Where peers connect to this replica.</param>
    /// <param name="peers">Every replica's listen endpoint by id (this one's is ignored).</param>
    public TcpTransport(int self, IPEndPoint listen, IReadOnlyDictionary<int, IPEndPoint> peers)
    {
        ArgumentNullException.ThrowIfNull(listen);
        ArgumentNullException.ThrowIfNull(peers);
        _self = self;
        _listen = listen;
        _peers = peers;
    }

    /// <summary>TLS required of every peer that connects here (null: plain TCP).</summary>
    public SslServerAuthenticationOptions? ServerTls { get; init; }

    /// <summary>TLS for the connections to peers (null: plain TCP).</summary>
    public SslClientAuthenticationOptions? ClientTls { get; init; }

    /// <summary>Connections refused because their TLS handshake failed (a process without the cluster's credentials).</summary>
    public long Refused => Interlocked.Read(ref _refused);

    private long _refused;

    /// <summary>The bound endpoint (useful with port 0).</summary>
    public IPEndPoint? LocalEndpoint => _listener?.LocalEndpoint as IPEndPoint;

    /// <summary>Messages dropped because a peer's queue was full.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    private long _dropped;

    /// <inheritdoc />
    public void Start(Action<Message> receive)
    {
        _receive = receive ?? throw new ArgumentNullException(nameof(receive));
        _listener = new TcpListener(_listen);
        _listener.Start();
        _tasks.Add(Task.Run(AcceptLoop));
        foreach (var (id, endpoint) in _peers)
            if (id != _self)
            {
                var queue = Channel.CreateBounded<byte[]>(new BoundedChannelOptions(QueueLimit)
                {
                    FullMode = BoundedChannelFullMode.DropWrite,
                    SingleReader = true,
                });
                _queues[id] = queue;
                _tasks.Add(Task.Run(() => SendLoop(endpoint, queue.Reader)));
            }
    }

    /// <inheritdoc />
    public void Send(Message message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (_queues.TryGetValue(message.To, out var q) && !q.Writer.TryWrite(FrameCodec.EncodeMessage(message)))
            Interlocked.Increment(ref _dropped);
    }

    private async Task SendLoop(IPEndPoint endpoint, ChannelReader<byte[]> queue)
    {
        var token = _stop.Token;
        int backoff = 10;
        while (!token.IsCancellationRequested)
        {
            long connected = long.MaxValue;
            try
            {
                using var client = new TcpClient { NoDelay = true };
                await client.ConnectAsync(endpoint, token).ConfigureAwait(false);
                await using var stream = await TransportTls.ClientAsync(client.GetStream(), ClientTls, token).ConfigureAwait(false);
                connected = Environment.TickCount64;
                while (await queue.WaitToReadAsync(token).ConfigureAwait(false))
                {
                    // Write everything queued, then flush once: batches frames into few segments.
                    while (queue.TryRead(out var payload))
                        await FrameCodec.WriteAsync(stream, payload, token).ConfigureAwait(false);
                    await stream.FlushAsync(token).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is SocketException or IOException or AuthenticationException)
            {
                // Drop what queued while the peer was unreachable: stale consensus traffic is worthless.
                while (queue.TryRead(out _))
                {
                }
                // A connection that lived a while was good: retry at once. One refused right after its handshake (a
                // peer that rejects our TLS certificate says so on the first write) keeps backing off.
                if (Environment.TickCount64 - connected > 2000)
                    backoff = 10;
                try
                {
                    await Task.Delay(backoff, token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                backoff = Math.Min(backoff * 2, 1000);
            }
        }
    }

    private Task AcceptLoop() =>
        Listening.AcceptAsync(_listener!.AcceptTcpClientAsync, client =>
        {
            client.NoDelay = true;
            return ReceiveLoop(client);
        }, _stop.Token);

    private async Task ReceiveLoop(TcpClient client)
    {
        using var _ = client;
        try
        {
            Stream stream;
            try
            {
                stream = await TransportTls.ServerAsync(client.GetStream(), ServerTls, _stop.Token).ConfigureAwait(false);
            }
            catch (AuthenticationException)
            {
                Interlocked.Increment(ref _refused);
                return;
            }
            await using var __ = stream;
            while (await FrameCodec.ReadAsync(stream, _stop.Token).ConfigureAwait(false) is { } payload)
                _receive!(FrameCodec.DecodeMessage(payload));
        }
        catch (Exception e) when (e is IOException or SocketException or FormatException or OperationCanceledException or ObjectDisposedException)
        {
            // The peer reconnects; anything lost is retransmitted by the protocol.
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _stop.Cancel();
        _listener?.Stop();
        foreach (var q in _queues.Values)
            q.Writer.TryComplete();
        try
        {
            Task.WaitAll([.. _tasks], TimeSpan.FromSeconds(2));
        }
        catch (AggregateException)
        {
        }
        _listener?.Dispose();
        _stop.Dispose();
    }
}
