using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Storage.Daemon;

/// <summary>
/// The daemon's control socket: a Unix socket that only its owner may open (0600, in a 0700 directory). Each
/// connection sends one JSON <see cref="DaemonRequest"/> line and gets one <see cref="DaemonReply"/> line.
/// </summary>
internal sealed class ControlServer : IDisposable
{
    private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    private readonly string _path;
    private readonly Func<DaemonRequest, CancellationToken, Task<DaemonReply>> _handle;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private Task _accepting = Task.CompletedTask;

    public ControlServer(string path, Func<DaemonRequest, CancellationToken, Task<DaemonReply>> handle, ILogger log)
    {
        _path = path;
        _handle = handle;
        _log = log;
    }

    public void Start()
    {
        File.Delete(_path);
        _listener.Bind(new UnixDomainSocketEndPoint(_path));
        if (!OperatingSystem.IsWindows())
            File.SetUnixFileMode(_path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        _listener.Listen(16);
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
        using var stream = new NetworkStream(socket, ownsSocket: false);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        using var writer = new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true };
        try
        {
            string? line = await reader.ReadLineAsync(_stop.Token).ConfigureAwait(false);
            if (line is null)
                return;   // a probe (is the daemon alive?) or a client that gave up
            DaemonReply reply;
            DaemonRequest? request = null;
            try
            {
                request = JsonSerializer.Deserialize(line, DaemonJson.Default.DaemonRequest);
            }
            catch (JsonException e)
            {
                reply = new DaemonReply(DaemonReply.Refused, $"Not a daemon request: {e.Message}");
                await writer.WriteLineAsync(JsonSerializer.Serialize(reply, DaemonJson.Default.DaemonReply)).ConfigureAwait(false);
                return;
            }
            try
            {
                // Not the stop token: a request that started finishes (the node waits for it before it closes).
                reply = request is null ? new DaemonReply(DaemonReply.Refused, "An empty request.") : await _handle(request, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not (IOException or SocketException or OperationCanceledException or ObjectDisposedException))
            {
                reply = new DaemonReply(DaemonReply.Failed, $"The daemon failed on this request ({e.GetType().Name}: {e.Message}); see its log.");
            }
            if (reply.Code != DaemonReply.Ok)
                _log.RequestNotDone(request?.GetType().Name.Replace("Request", "", StringComparison.Ordinal) ?? "request", reply.Code == DaemonReply.Refused ? "refused" : "failed", reply.Message);
            await writer.WriteLineAsync(JsonSerializer.Serialize(reply, DaemonJson.Default.DaemonReply)).ConfigureAwait(false);
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
        File.Delete(_path);
        try
        {
            _accepting.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }
    }
}
