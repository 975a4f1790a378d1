using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using Storage.Consensus;

namespace Storage.Metadata;

/// <summary>Serves a replica's client protocol (see <see cref="MetadataClient"/>) on a TCP endpoint.</summary>
public sealed class MetadataServer : IDisposable
{
    private readonly MetadataReplica _replica;
    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private Task? _accept;

    /// <summary>Creates a server for <paramref name="replica"/> listening on <paramref name="endpoint"/>.</summary>
    public MetadataServer(MetadataReplica replica, IPEndPoint endpoint)
    {
        ArgumentNullException.ThrowIfNull(replica);
        _replica = replica;
        _listener = new TcpListener(endpoint);
    }

    /// <summary>TLS required of every client (null: plain TCP).</summary>
    public SslServerAuthenticationOptions? Tls { get; init; }

    /// <summary>The bound endpoint.</summary>
    public IPEndPoint LocalEndpoint => (IPEndPoint)_listener.LocalEndpoint;

    /// <summary>Starts accepting clients.</summary>
    public void Start()
    {
        _listener.Start();
        _accept = Task.Run(AcceptLoop);
    }

    private Task AcceptLoop() =>
        Listening.AcceptAsync(_listener.AcceptTcpClientAsync, client =>
        {
            client.NoDelay = true;
            return Serve(client);
        }, _stop.Token);

    private async Task Serve(TcpClient client)
    {
        using var connection = client;
        // Not disposed: handlers still running when the connection drops may touch it.
        var writeLock = new SemaphoreSlim(1);
        try
        {
            // Disposed when the connection ends: a handler still writing then fails, and its failure is caught there.
            await using var stream = await TransportTls.ServerAsync(client.GetStream(), Tls, _stop.Token).ConfigureAwait(false);
            while (await FrameCodec.ReadAsync(stream, _stop.Token).ConfigureAwait(false) is { } request)
                _ = Handle(request, stream, writeLock);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException or AuthenticationException)
        {
        }
    }

    private async Task Handle(byte[] request, Stream stream, SemaphoreSlim writeLock)
    {
        var w = new ByteWriter(256);
        long id = 0;
        try
        {
            var r = new ByteReader(request);
            id = r.I64();
            byte kind = r.U8();
            var body = request.AsMemory(9);
            w.I64(id);
            switch (kind)
            {
                case Protocol.Execute:
                    var result = await _replica.ExecuteAsync(MetadataCodec.Decode(body.Span), _stop.Token).ConfigureAwait(false);
                    w.U8(Protocol.Ok);
                    MetadataCodec.Write(w, result);
                    break;
                case Protocol.Read:
                    var br = new ByteReader(body.Span);
                    var read = await _replica.ReadAsync(br.String(), _stop.Token).ConfigureAwait(false);
                    w.U8(Protocol.Ok);
                    MetadataCodec.Write(w, read);
                    break;
                case Protocol.List:
                    var lr = new ByteReader(body.Span);
                    var keys = await _replica.ListAsync(lr.String(), _stop.Token).ConfigureAwait(false);
                    w.U8(Protocol.Ok);
                    w.I32(keys.Count);
                    foreach (var (key, version) in keys)
                    {
                        w.String(key);
                        w.I64(version);
                    }
                    break;
                case Protocol.StatusRequest:
                    w.U8(Protocol.Ok);
                    Protocol.WriteStatus(w, _replica.Status);
                    break;
                default:
                    throw new FormatException($"Unknown request kind {kind}.");
            }
        }
        catch (NotLeaderException e)
        {
            w.Clear();
            w.I64(id);
            w.U8(Protocol.NotLeader);
            w.I32(e.LeaderId);
        }
        catch (Exception e) when (e is TimeoutException or FormatException or OperationCanceledException)
        {
            w.Clear();
            w.I64(id);
            w.U8(Protocol.Error);
            w.String(e.Message);
        }
        await writeLock.WaitAsync().ConfigureAwait(false);
        try
        {
            await FrameCodec.WriteAsync(stream, w.WrittenMemory.ToArray()).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
        }
        finally
        {
            writeLock.Release();
        }
    }

    /// <summary>Stops accepting and closes connections.</summary>
    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        try
        {
            _accept?.Wait(TimeSpan.FromSeconds(2));
        }
        catch (AggregateException)
        {
        }
        _listener.Dispose();
        _stop.Dispose();
    }
}
