using System.Net;
using System.Net.Sockets;
using Storage.Nbd.Connection;
using Storage.Native;

namespace Storage.Nbd;

/// <summary>
/// Listening sockets. The policy: a Unix socket is created owner-only (mode 0600, set before it listens) and its peers
/// must run as the same user (or root); TCP listens on loopback addresses freely, and on any other address only with
/// TLS required and a client allow-list.
/// </summary>
public sealed partial class NbdServer
{
    /// <summary>The port NBD uses when an address names none (IANA).</summary>
    public const int DefaultPort = 10809;

    private readonly List<NbdListener> _listeners = [];

    /// <summary>Where the server listens now.</summary>
    public IReadOnlyList<EndPoint> Endpoints
    {
        get
        {
            lock (_lock)
                return [.. _listeners.Select(l => l.EndPoint)];
        }
    }

    /// <summary>
    /// Listens on the Unix domain socket <paramref name="path"/> (clients: <c>nbd+unix:///export?socket=path</c>),
    /// created with mode 0600. A stale socket file left by a dead server is replaced.
    /// </summary>
    /// <exception cref="NbdConfigurationException">The path exists and is not a socket, or another server listens on it.</exception>
    /// <exception cref="SocketException">The socket could not be created (directory missing, path too long, …).</exception>
    public UnixDomainSocketEndPoint ListenUnix(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        path = Path.GetFullPath(path);
        RemoveStaleSocket(path);
        var endpoint = new UnixDomainSocketEndPoint(path);
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            if (OperatingSystem.IsWindows())
                throw new PlatformNotSupportedException("Unix domain socket permissions need a Unix system.");
            socket.Bind(endpoint);
            // Before listen(): until then a connect is refused, so no one can slip in before the mode is set.
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            socket.Listen(128);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        Start(new NbdListener(socket, endpoint, tls: null, unixPath: path));
        return endpoint;
    }

    /// <summary>
    /// Listens on TCP. Loopback addresses (127.0.0.0/8, ::1) need nothing; any other address needs
    /// <paramref name="tls"/>, and then TLS is required of every client and only allow-listed addresses may connect.
    /// With <paramref name="tls"/> on a loopback address TLS is required there too.
    /// </summary>
    /// <returns>The bound endpoint (with the port chosen when <paramref name="endpoint"/> gave 0).</returns>
    /// <exception cref="NbdConfigurationException">A non-loopback address without TLS.</exception>
    /// <exception cref="SocketException">The address is in use or not local.</exception>
    public IPEndPoint ListenTcp(IPEndPoint endpoint, NbdTlsOptions? tls = null)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        if (tls is null && !IsLoopback(endpoint.Address))
        {
            throw new NbdConfigurationException(
                $"Refusing to listen on {endpoint} without TLS: NBD has no authentication of its own, so anyone who can reach " +
                "the address could read and overwrite the export. Listen on 127.0.0.1 or a Unix socket, or give a TLS " +
                "certificate and key and a client allow-list.");
        }
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.Bind(endpoint);
            socket.Listen(128);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        var bound = (IPEndPoint)socket.LocalEndPoint!;
        Start(new NbdListener(socket, bound, tls, unixPath: null));
        return bound;
    }

    /// <summary>
    /// Listens on <paramref name="address"/>: <c>unix:PATH</c> or an absolute path for a Unix socket;
    /// <c>HOST:PORT</c>, <c>[V6]:PORT</c> or a bare address (port <see cref="DefaultPort"/>) for TCP, where HOST is an
    /// IP address or <c>localhost</c>.
    /// </summary>
    /// <exception cref="FormatException">The address is none of these.</exception>
    /// <exception cref="NbdConfigurationException">See <see cref="ListenUnix"/> and <see cref="ListenTcp"/>.</exception>
    public EndPoint Listen(string address, NbdTlsOptions? tls = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(address);
        if (address.StartsWith("unix:", StringComparison.Ordinal))
            return ListenUnix(address["unix:".Length..]);
        if (address.StartsWith('/'))
            return ListenUnix(address);
        return ListenTcp(ParseTcp(address), tls);
    }

    internal static IPEndPoint ParseTcp(string address)
    {
        string host = address;
        int port = DefaultPort;
        int colon = address.LastIndexOf(':');
        // "host:port" and "[v6]:port" carry a port; a bare IPv6 address has colons but no brackets.
        if (colon > 0 && (address.IndexOf(':') == colon || address[colon - 1] == ']'))
        {
            if (!int.TryParse(address.AsSpan(colon + 1), out port) || port is < 0 or > 65535)
                throw new FormatException($"'{address}': the port must be a number from 0 to 65535.");
            host = address[..colon];
        }
        host = host.Trim('[', ']');
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase))
            return new IPEndPoint(IPAddress.Loopback, port);
        if (!IPAddress.TryParse(host, out var ip))
            throw new FormatException($"'{address}' is not an address to listen on: use unix:PATH, IP:PORT, [IPv6]:PORT or localhost:PORT.");
        return new IPEndPoint(ip, port);
    }

    private static bool IsLoopback(IPAddress address) =>
        IPAddress.IsLoopback(address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address);

    private static void RemoveStaleSocket(string path)
    {
        if (!File.Exists(path) && !Directory.Exists(path))
            return;
        if (!LibC.IsSocket(path))
            throw new NbdConfigurationException($"{path} exists and is not a socket; choose another path or remove it.");
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException)
        {
            // Nobody listens: a socket file left by a server that died.
            File.Delete(path);
            return;
        }
        throw new NbdConfigurationException($"Another server is listening on {path}.");
    }

    private void Start(NbdListener listener)
    {
        lock (_lock)
        {
            if (_stopped)
            {
                listener.Socket.Dispose();
                throw new ObjectDisposedException(nameof(NbdServer));
            }
            _listeners.Add(listener);
        }
        listener.AcceptLoop = Task.Run(() => AcceptLoopAsync(listener));
        Log($"listening on {listener.EndPoint}{(listener.Tls is null ? "" : " (TLS required)")}");
    }

    private async Task AcceptLoopAsync(NbdListener listener)
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.Socket.AcceptAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                if (_stopping.IsCancellationRequested)
                    return;
                // Out of descriptors or similar: say so, and do not spin.
                Log($"accept on {listener.EndPoint} failed: {e.Message}");
                await Task.Delay(100).ConfigureAwait(false);
                continue;
            }
            try
            {
                Admit(listener, socket);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // The client went away while being admitted.
                socket.Dispose();
                Log($"a client on {listener.EndPoint} left while being admitted: {e.Message}");
            }
            catch (Exception e)
            {
                // Whatever went wrong with this client, the listener keeps accepting.
                socket.Dispose();
                ReportUnexpected(null, e);
            }
        }
    }

    private void Admit(NbdListener listener, Socket socket)
    {
        string peer;
        string? refusal = null;
        if (listener.UnixPath is not null)
        {
            var (pid, uid) = PeerCredentials(socket);
            peer = $"unix pid {pid} uid {uid}";
            uint self = LibC.GetEffectiveUserId();
            if (uid != self && uid != 0)
                refusal = $"uid {uid} is not the server's user ({self})";
        }
        else
        {
            var remote = (IPEndPoint)socket.RemoteEndPoint!;
            peer = remote.ToString();
            if (listener.Tls is { } tls && !tls.Allows(remote.Address))
                refusal = "address not in the allow-list";
            socket.NoDelay = true;
        }

        NbdConnection? connection = null;
        lock (_lock)
        {
            if (_stopped)
                refusal ??= "server stopping";
            else if (_connections.Count >= Options.MaxConnections)
                refusal ??= $"already {Options.MaxConnections} connections";
            if (refusal is null)
            {
                connection = new NbdConnection(this, socket, listener.Tls, peer);
                _connections.Add(connection);
            }
        }
        if (connection is null)
        {
            Log($"{peer}: refused: {refusal}");
            socket.Dispose();
            return;
        }
        Log($"{peer}: connected to {listener.EndPoint}");
        try
        {
            connection.Start();
        }
        catch
        {
            lock (_lock)
                _connections.Remove(connection);
            throw;
        }
    }

    private static (int Pid, uint Uid) PeerCredentials(Socket socket)
    {
        Span<byte> credentials = stackalloc byte[12];
        try
        {
            if (socket.GetRawSocketOption(LibC.SolSocket, LibC.SoPeerCred, credentials) >= 12)
                return (BitConverter.ToInt32(credentials), BitConverter.ToUInt32(credentials[4..]));
        }
        catch (SocketException)
        {
        }
        return (-1, uint.MaxValue);
    }

    /// <summary>A listening socket and its policy.</summary>
    private sealed class NbdListener(Socket socket, EndPoint endPoint, NbdTlsOptions? tls, string? unixPath)
    {
        public Socket Socket { get; } = socket;

        public EndPoint EndPoint { get; } = endPoint;

        public NbdTlsOptions? Tls { get; } = tls;

        public string? UnixPath { get; } = unixPath;

        public Task AcceptLoop { get; set; } = Task.CompletedTask;

        public async Task CloseAsync()
        {
            Socket.Dispose();
            await AcceptLoop.ConfigureAwait(false);
            if (UnixPath is not null)
            {
                try
                {
                    File.Delete(UnixPath);
                }
                catch (IOException)
                {
                }
            }
        }
    }
}
