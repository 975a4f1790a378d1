using System.Net.Sockets;
using System.Text;

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

    /// <param name="listener">A bound, listening socket; the server owns it.</param>
    /// <param name="handle">Answers one line (never throws for a bad request: it answers with the error).</param>
    public LineServer(Socket listener, Func<string, CancellationToken, Task<string>> handle)
    {
        _listener = listener;
        _handle = handle;
        _accepting = AcceptAsync();
    }

    private async Task AcceptAsync()
    {
        while (true)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
            {
                return;
            }
            _ = Task.Run(() => ServeAsync(client));
        }
    }

    private async Task ServeAsync(Socket client)
    {
        using var socket = client;
        if (socket.ProtocolType == ProtocolType.Tcp)
            socket.NoDelay = true;
        using var stream = new NetworkStream(socket, ownsSocket: false);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        using var writer = new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true };
        try
        {
            string? line = await reader.ReadLineAsync(_stop.Token).ConfigureAwait(false);
            if (line is null)
                return;   // a probe (is the daemon alive?) or a client that gave up
            // Not the stop token: a request that started finishes (the node waits for it before it closes).
            await writer.WriteLineAsync(await _handle(line, CancellationToken.None).ConfigureAwait(false)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // The client went away, or the daemon is stopping: nothing to answer.
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
