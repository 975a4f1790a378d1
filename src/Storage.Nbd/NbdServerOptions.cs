namespace Storage.Nbd;

/// <summary>Limits and defaults of an <see cref="NbdServer"/>. Immutable once the server is created.</summary>
public sealed class NbdServerOptions
{
    /// <summary>
    /// Largest READ or WRITE payload in bytes (NBD_INFO_BLOCK_SIZE "maximum"); a power of two from 64 KiB to 128 MiB.
    /// Larger requests get EOVERFLOW. Default 32 MiB, what clients assume when they are told nothing.
    /// </summary>
    public int MaxPayloadSize { get; init; } = 32 << 20;

    /// <summary>
    /// The I/O size clients should prefer when the export does not name one (raised to the sector size when smaller);
    /// a power of two. Default 4096.
    /// </summary>
    public int PreferredBlockSize { get; init; } = 4096;

    /// <summary>
    /// Requests one connection may have in flight; the server stops reading from a connection at the limit until a
    /// reply is sent. Default 128.
    /// </summary>
    public int MaxRequestsInFlight { get; init; } = 128;

    /// <summary>
    /// Payload bytes one connection may hold in flight (reads being served, writes being written); one request is
    /// always admitted when nothing else is in flight. Default 64 MiB.
    /// </summary>
    public long MaxBytesInFlight { get; init; } = 64 << 20;

    /// <summary>Connections served at once; further ones are closed on accept. Default 64.</summary>
    public int MaxConnections { get; init; } = 64;

    /// <summary>Time a client has from connecting to choosing an export; then it is disconnected. Default 30 s.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Time <see cref="NbdServer.StopAsync"/> waits for requests in flight to be answered before it closes
    /// connections regardless. Default 10 s.
    /// </summary>
    public TimeSpan StopTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The export served to clients that ask for the empty name (<c>nbd://host</c> with no path). Null: the only export
    /// when there is exactly one, otherwise none.
    /// </summary>
    public string? DefaultExport { get; init; }

    /// <summary>
    /// Called when a client asks for a name that is not exported: it may add an export of that name
    /// (<see cref="NbdServer.AddExport"/>) and return true, and the client gets it. Null: unknown names are refused.
    /// Lets exports appear when first asked for, e.g. after a restart, for a client that reconnects.
    /// </summary>
    public Func<string, bool>? OfferOnDemand { get; init; }

    /// <summary>Receives one line per notable event (connections refused or dropped, protocol violations); may be called
    /// from any thread, concurrently. Null: nothing is logged.</summary>
    public Action<string>? Log { get; init; }

    internal void Validate()
    {
        if (MaxPayloadSize is < 64 << 10 or > 128 << 20 || !int.IsPow2(MaxPayloadSize))
            throw new ArgumentOutOfRangeException(nameof(MaxPayloadSize), MaxPayloadSize, "The maximum payload must be a power of two from 64 KiB to 128 MiB.");
        if (PreferredBlockSize < 512 || PreferredBlockSize > MaxPayloadSize || !int.IsPow2(PreferredBlockSize))
            throw new ArgumentOutOfRangeException(nameof(PreferredBlockSize), PreferredBlockSize, "The preferred block size must be a power of two from 512 bytes to the maximum payload.");
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRequestsInFlight, 1, nameof(MaxRequestsInFlight));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxRequestsInFlight, 4096, nameof(MaxRequestsInFlight));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxBytesInFlight, 1, nameof(MaxBytesInFlight));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxConnections, 1, nameof(MaxConnections));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(HandshakeTimeout, TimeSpan.Zero, nameof(HandshakeTimeout));
        ArgumentOutOfRangeException.ThrowIfLessThan(StopTimeout, TimeSpan.Zero, nameof(StopTimeout));
    }
}
