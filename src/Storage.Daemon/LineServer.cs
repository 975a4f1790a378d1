using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Text;
using Storage.Consensus;

namespace Storage.Daemon;

/// <summary>
/// Accepts connections on a listening socket; each sends one line (a JSON request) and gets one line back from the
/// handler. A connection that closes before its line is a probe. The control socket and the peer port both use it.
/// </summary>
internal sealed class LineServer : IDisposable
{
    private readonly Socket _listener;
    private readonly Func<string, CancellationToken, Task<string>> _handle;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;
    private readonly SslServerAuthenticationOptions? _tls;

    /// <param name="listener">A bound, listening socket; the server owns it.</param>
    /// <param name="handle">Answers one line (never throws for a bad request: it answers with the error).</param>
    /// <param name="tls">TLS required of every client (TCP listeners between nodes), or null.</param>
    public LineServer(Socket listener, Func<string, CancellationToken, Task<string>> handle, SslServerAuthenticationOptions? tls = null)
    {
        _tls = tls;
        _listener = listener;
        _handle = handle;
        _accepting = AcceptAsync();
    }

    private Task AcceptAsync() =>
        Listening.AcceptAsync(_listener.AcceptAsync, ServeAsync, _stop.Token);

    private async Task ServeAsync(Socket client)
    {
        using var socket = client;
        if (socket.ProtocolType == ProtocolType.Tcp)
            socket.NoDelay = true;
        try
        {
            await using var stream = await TransportTls.ServerAsync(new NetworkStream(socket, ownsSocket: false), _tls, _stop.Token).ConfigureAwait(false);
            using var reader = new StreamReader(stream, Encoding.UTF8);
            using var writer = new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true };
            string? line = await reader.ReadLineAsync(_stop.Token).ConfigureAwait(false);
            if (line is null)
                return;   // a probe (is the daemon alive?) or a client that gave up
            // Not the stop token: a request that started finishes (the node waits for it before it closes).
            await writer.WriteLineAsync(await _handle(line, CancellationToken.None).ConfigureAwait(false)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException or AuthenticationException)
        {
            // The client went away, the daemon is stopping, or a client without the cluster's key: nothing to answer.
        }
    }

    public void Dispose()
    {
        if (_stop.IsCancellationRequested)
            return;
        _stop.Cancel();
        _listener.Dispose();
        try
        {
            _accepting.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }
        _stop.Dispose();
    }
}
