using System.Net.Security;

namespace Storage.Nbd;

/// <summary>Where an <see cref="NbdClientDevice"/> connects and how it behaves when a connection breaks.</summary>
public sealed record NbdClientOptions
{
    /// <summary>A Unix socket path; either this or <see cref="Host"/>.</summary>
    public string? UnixSocket { get; init; }

    /// <summary>A TCP host name or address; either this or <see cref="UnixSocket"/>.</summary>
    public string? Host { get; init; }

    /// <summary>The TCP port (NBD's is 10809).</summary>
    public int Port { get; init; } = 10809;

    /// <summary>The export to open; the empty name is the server's default export.</summary>
    public string ExportName { get; init; } = "";

    /// <summary>
    /// Connections to open, requests spread over them round-robin. More than one is used only when the server
    /// advertises NBD_FLAG_CAN_MULTI_CONN (a flush on one connection then covers writes done on all).
    /// </summary>
    public int Connections { get; init; } = 1;

    /// <summary>How long one connection attempt (connect and handshake) may take.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How often a request is retried on a new connection after its connection broke (the server restarted, a cable,
    /// a proxy). Reads, writes, flushes and trims are idempotent, so a request whose answer was lost is sent again.
    /// </summary>
    public int ReconnectAttempts { get; init; } = 5;

    /// <summary>The wait before the first reconnection; it doubles with each further attempt.</summary>
    public TimeSpan ReconnectDelay { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// Keep a copy of every write and trim until a flush covers it, and send them again on a new connection: a server
    /// that restarts (kill -9, a crash) loses the writes it acknowledged but had not made durable, and without this a
    /// flush on the new connection would report them durable. Costs a copy of each write; implies one connection.
    /// </summary>
    public bool ReplayUnflushed { get; init; }

    /// <summary>With <see cref="ReplayUnflushed"/>: past this many unflushed bytes a write first flushes.</summary>
    public long ReplayLimitBytes { get; init; } = 64L << 20;

    /// <summary>
    /// TLS: when set, the client asks for NBD_OPT_STARTTLS before anything else and negotiates the export only over
    /// TLS with these settings (target host, certificate validation, a client certificate for mutual TLS). A server
    /// that does not offer TLS fails the connection.
    /// </summary>
    public SslClientAuthenticationOptions? Tls { get; init; }

    /// <summary>Checks the options; throws <see cref="ArgumentException"/> naming the first that is wrong.</summary>
    public void Validate()
    {
        if ((UnixSocket is null) == (Host is null))
            throw new ArgumentException("Give exactly one of UnixSocket and Host.");
        ArgumentOutOfRangeException.ThrowIfLessThan(Connections, 1, nameof(Connections));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(Connections, 64, nameof(Connections));
        ArgumentOutOfRangeException.ThrowIfNegative(ReconnectAttempts, nameof(ReconnectAttempts));
        ArgumentOutOfRangeException.ThrowIfLessThan(Port, 1, nameof(Port));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(Port, 65535, nameof(Port));
        ArgumentNullException.ThrowIfNull(ExportName);
        ArgumentOutOfRangeException.ThrowIfLessThan(ReplayLimitBytes, 1, nameof(ReplayLimitBytes));
        if (Tls is not null && UnixSocket is not null)
            throw new ArgumentException("TLS is for TCP connections; a Unix socket is protected by its file mode.");
    }

    /// <summary>The export as an NBD URI, for messages.</summary>
    public override string ToString() => UnixSocket is not null
        ? $"nbd+unix:///{ExportName}?socket={UnixSocket}"
        : $"nbd://{Host}:{Port}/{ExportName}";
}
