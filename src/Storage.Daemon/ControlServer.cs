using System.Net.Sockets;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Storage.Daemon;

/// <summary>
/// The daemon's control socket: a Unix socket that only its owner may open (0600, in a 0700 directory). Each
/// connection sends one JSON <see cref="DaemonRequest"/> line and gets one <see cref="DaemonReply"/> line.
/// </summary>
internal sealed class ControlServer(string path, Func<DaemonRequest, CancellationToken, Task<DaemonReply>> handle, ILogger log) : IDisposable
{
    private LineServer? _server;

    public void Start()
    {
        File.Delete(path);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(path));
            if (!OperatingSystem.IsWindows())
                File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            listener.Listen(16);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
        _server = new LineServer(listener, AnswerAsync);
    }

    private async Task<string> AnswerAsync(string line, CancellationToken cancellationToken)
        => JsonSerializer.Serialize(await HandleLineAsync(line, handle, log, cancellationToken).ConfigureAwait(false), DaemonJson.Default.DaemonReply);

    /// <summary>Parses and runs one control request line; a bad line or an unexpected error is a reply, not an exception.</summary>
    internal static async Task<DaemonReply> HandleLineAsync(string line, Func<DaemonRequest, CancellationToken, Task<DaemonReply>> handle, ILogger log, CancellationToken cancellationToken)
    {
        DaemonRequest? request;
        try
        {
            request = JsonSerializer.Deserialize(line, DaemonJson.Default.DaemonRequest);
        }
        catch (JsonException e)
        {
            return new DaemonReply(DaemonReply.Refused, $"Not a daemon request: {e.Message}");
        }
        return request is null ? new DaemonReply(DaemonReply.Refused, "An empty request.") : await HandleAsync(request, handle, log, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Runs one control request; an unexpected error is a Failed reply; refusals and failures are logged.</summary>
    internal static async Task<DaemonReply> HandleAsync(DaemonRequest request, Func<DaemonRequest, CancellationToken, Task<DaemonReply>> handle, ILogger log, CancellationToken cancellationToken)
    {
        DaemonReply reply;
        try
        {
            reply = await handle(request, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not (OperationCanceledException or ObjectDisposedException))
        {
            reply = new DaemonReply(DaemonReply.Failed, $"The daemon failed on this request ({e.GetType().Name}: {e.Message}); see its log.");
        }
        if (reply.Code != DaemonReply.Ok)
            log.RequestNotDone(request.GetType().Name.Replace("Request", "", StringComparison.Ordinal), reply.Code == DaemonReply.Refused ? "refused" : "failed", reply.Message);
        return reply;
    }

    public void Dispose()
    {
        if (_server is null)
            return;
        _server.Dispose();
        _server = null;
        File.Delete(path);
    }
}
