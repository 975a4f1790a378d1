using System.Net;
using Storage.Nbd.Buffers;
using Storage.Nbd.Connection;

namespace Storage.Nbd;

/// <summary>
/// An NBD server (fixed-newstyle protocol) exporting <see cref="Storage.Devices.IBlockDevice"/>s by name to clients
/// such as qemu, nbdinfo/nbdcopy (libnbd), fio's nbd engine and the kernel's nbd-client.
/// </summary>
/// <remarks>
/// <para>Listeners: Unix domain sockets (owner-only, 0600) and TCP on loopback addresses; TCP on any other address only
/// with <see cref="NbdTlsOptions"/> (TLS required, client allow-list) — see <c>NbdServer.Listeners.cs</c>.</para>
/// <para>Each connection has a thread that receives and parses requests and starts them on the device; requests run
/// concurrently and are answered as they complete, matched by cookie, by whichever thread completes them (a second
/// thread per connection sends when the client reads slowly). Reads and writes need not be sector-aligned: partial
/// sectors are read-modify-written, serialised per export. Multi-connection clients are
/// welcome (NBD_FLAG_CAN_MULTI_CONN): a flush on any connection covers writes completed on all of them, as
/// <see cref="Storage.Devices.IBlockDevice.FlushAsync"/> promises.</para>
/// <para>All members are thread-safe.</para>
/// </remarks>
public sealed partial class NbdServer : IAsyncDisposable
{
    private static readonly byte[] s_zeros = new byte[1 << 20];

    private readonly Lock _lock = new();
    private readonly Dictionary<string, NbdExport> _exports = new(StringComparer.Ordinal);
    private readonly HashSet<NbdConnection> _connections = [];
    private readonly CancellationTokenSource _stopping = new();
    private long _unexpectedErrors;
    private long _sendThreadTakeovers;
    private bool _stopped;

    /// <summary>Creates a server with no exports and no listeners.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of its documented range.</exception>
    public NbdServer(NbdServerOptions? options = null)
    {
        Options = options ?? new NbdServerOptions();
        Options.Validate();
        Pool = new NativeBufferPool(Math.Max(Options.MaxPayloadSize, NbdConnection.LargestBuffer));
    }

    /// <summary>The options the server was created with.</summary>
    public NbdServerOptions Options { get; }

    /// <summary>Clients connected now (in the handshake or transmitting).</summary>
    public int ConnectionCount
    {
        get
        {
            lock (_lock)
                return _connections.Count;
        }
    }

    /// <summary>The exports, ordered by name.</summary>
    public IReadOnlyList<NbdExport> Exports => ExportsByName();

    internal NativeBufferPool Pool { get; }

    /// <summary>Zeros for NBD_CMD_WRITE_ZEROES; never written.</summary>
    internal static ReadOnlyMemory<byte> ZeroBuffer => s_zeros;

    /// <summary>Failures that are bugs rather than client or device behaviour (tests assert there are none).</summary>
    internal long UnexpectedErrorCount => Interlocked.Read(ref _unexpectedErrors);

    /// <summary>Times a connection's send thread took over replies from a client too slow to read them (for tests).</summary>
    internal long SendThreadTakeovers => Interlocked.Read(ref _sendThreadTakeovers);

    internal void CountSendThreadTakeover() => Interlocked.Increment(ref _sendThreadTakeovers);

    /// <summary>Offers <paramref name="export"/> to clients that connect from now on.</summary>
    /// <exception cref="NbdConfigurationException">An export with that name exists.</exception>
    /// <exception cref="ObjectDisposedException">The server was stopped.</exception>
    public void AddExport(NbdExport export)
    {
        ArgumentNullException.ThrowIfNull(export);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_stopped, this);
            if (!_exports.TryAdd(export.Name, export))
                throw new NbdConfigurationException($"An export named '{export.Name}' exists already.");
        }
    }

    /// <summary>
    /// Withdraws the export named <paramref name="name"/> and closes the connections using it, after answering their
    /// requests in flight (or after <see cref="NbdServerOptions.StopTimeout"/>). When this returns, the server no
    /// longer touches the device.
    /// </summary>
    /// <returns>False when there was no such export.</returns>
    public async Task<bool> RemoveExportAsync(string name, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        NbdConnection[] users;
        lock (_lock)
        {
            if (!_exports.Remove(name, out var export))
                return false;
            users = [.. _connections.Where(c => ReferenceEquals(c.Export, export))];
        }
        await StopConnectionsAsync(users, cancellationToken).ConfigureAwait(false);
        return true;
    }

    /// <summary>Connections that chose the export named <paramref name="name"/>.</summary>
    public int GetConnectionCount(string name)
    {
        lock (_lock)
            return _connections.Count(c => c.Export?.Name == name);
    }

    /// <summary>
    /// Stops accepting, answers the requests in flight, then closes every connection; connections that have not
    /// finished after <see cref="NbdServerOptions.StopTimeout"/> are cut. Unix socket files are removed. Idempotent.
    /// </summary>
    /// <param name="cancellationToken">Stops waiting (connections are cut at once); the server is stopped regardless.</param>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        NbdListener[] listeners;
        NbdConnection[] connections;
        lock (_lock)
        {
            _stopped = true;
            listeners = [.. _listeners];
            _listeners.Clear();
            connections = [.. _connections];
        }
        await _stopping.CancelAsync().ConfigureAwait(false);
        foreach (var listener in listeners)
            await listener.CloseAsync().ConfigureAwait(false);
        await StopConnectionsAsync(connections, cancellationToken).ConfigureAwait(false);
        Pool.Dispose();
    }

    /// <summary>Same as <see cref="StopAsync"/>.</summary>
    public async ValueTask DisposeAsync() => await StopAsync().ConfigureAwait(false);

    private async Task StopConnectionsAsync(NbdConnection[] connections, CancellationToken cancellationToken)
    {
        foreach (var connection in connections)
            connection.Stop();
        var all = Task.WhenAll(connections.Select(c => c.Completion));
        try
        {
            await all.WaitAsync(Options.StopTimeout, cancellationToken).ConfigureAwait(false);
            return;
        }
        catch (TimeoutException)
        {
            Log($"{connections.Count(c => !c.Completion.IsCompleted)} connection(s) still busy after {Options.StopTimeout.TotalSeconds:0.#} s; cutting them");
        }
        catch (OperationCanceledException)
        {
        }
        foreach (var connection in connections)
            connection.Abort();
        await all.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The export a client asking for <paramref name="name"/> gets; null for none.</summary>
    internal NbdExport? FindExport(string name)
    {
        if (name.Length != 0 && Options.OfferOnDemand is { } offer)
        {
            lock (_lock)
            {
                if (_exports.TryGetValue(name, out var known))
                    return known;
            }
            if (!offer(name))
                return null;
        }
        lock (_lock)
        {
            if (_exports.TryGetValue(name, out var export))
                return export;
            if (name.Length != 0)
                return null;
            if (Options.DefaultExport is { } fallback)
                return _exports.GetValueOrDefault(fallback);
            return _exports.Count == 1 ? _exports.Values.First() : null;
        }
    }

    internal NbdExport[] ExportsByName()
    {
        lock (_lock)
            return [.. _exports.Values.OrderBy(e => e.Name, StringComparer.Ordinal)];
    }

    internal void OnConnectionClosed(NbdConnection connection)
    {
        lock (_lock)
            _connections.Remove(connection);
        Log($"{connection.Peer}: closed");
    }

    internal void ReportUnexpected(NbdConnection? connection, Exception e)
    {
        Interlocked.Increment(ref _unexpectedErrors);
        Log($"{connection?.Peer ?? "server"}: unexpected error: {e}");
    }

    internal void Log(string message)
    {
        var log = Options.Log;
        if (log is null)
            return;
        try
        {
            log(message);
        }
#pragma warning disable CA1031 // A logger that throws must not take a connection down with it.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    /// <summary>
    /// The URI clients use for <paramref name="exportName"/> on <paramref name="endpoint"/>:
    /// <c>nbd://127.0.0.1:10809/name</c> (<c>nbds://</c> with TLS) or <c>nbd+unix:///name?socket=/path</c>.
    /// </summary>
    public static string FormatUri(EndPoint endpoint, string exportName, bool tls = false)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentNullException.ThrowIfNull(exportName);
        string name = Uri.EscapeDataString(exportName);
        return endpoint switch
        {
            IPEndPoint ip => $"{(tls ? "nbds" : "nbd")}://{(ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{ip.Address}]" : ip.Address.ToString())}:{ip.Port}/{name}",
            System.Net.Sockets.UnixDomainSocketEndPoint unix => $"{(tls ? "nbds" : "nbd")}+unix:///{name}?socket={unix}",
            _ => throw new ArgumentException($"Cannot form an NBD URI for a {endpoint.GetType().Name}.", nameof(endpoint)),
        };
    }
}
