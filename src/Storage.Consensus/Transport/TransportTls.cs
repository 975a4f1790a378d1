using System.Net.Security;

namespace Storage.Consensus;

/// <summary>
/// Puts TLS on a connection's stream for the TCP protocols between nodes (consensus, metadata clients, node
/// requests). Both sides give <see cref="SslStream"/> settings; mutual authentication is theirs to ask for (a client
/// certificate and a validation callback on each side).
/// </summary>
public static class TransportTls
{
    /// <summary>How long either side waits for the other to finish the TLS handshake.</summary>
    public static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The client side: returns the TLS stream, or <paramref name="stream"/> itself without settings. A server that
    /// does not finish the handshake within <see cref="HandshakeTimeout"/> fails with <see cref="IOException"/>.
    /// Under TLS 1.3 a server that refuses our certificate says so only after this returns: the next read fails.
    /// </summary>
    /// <exception cref="System.Security.Authentication.AuthenticationException">The server's certificate was not accepted.</exception>
    public static Task<Stream> ClientAsync(Stream stream, SslClientAuthenticationOptions? options, CancellationToken cancellationToken) =>
        options is null ? Task.FromResult(stream) : HandshakeAsync(stream, "server", (ssl, token) => ssl.AuthenticateAsClientAsync(options, token), cancellationToken);

    /// <summary>
    /// The server side: returns the TLS stream, or <paramref name="stream"/> itself without settings. A client that
    /// does not finish its handshake within <see cref="HandshakeTimeout"/> fails with <see cref="IOException"/>.
    /// </summary>
    /// <exception cref="System.Security.Authentication.AuthenticationException">The client was not accepted.</exception>
    public static Task<Stream> ServerAsync(Stream stream, SslServerAuthenticationOptions? options, CancellationToken cancellationToken) =>
        options is null ? Task.FromResult(stream) : HandshakeAsync(stream, "client", (ssl, token) => ssl.AuthenticateAsServerAsync(options, token), cancellationToken);

    private static async Task<Stream> HandshakeAsync(Stream stream, string peer, Func<SslStream, CancellationToken, Task> authenticate, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(HandshakeTimeout);
        try
        {
            await authenticate(ssl, timeout.Token).ConfigureAwait(false);
            return ssl;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw new IOException($"The {peer} did not finish its TLS handshake within {HandshakeTimeout.TotalSeconds:0} s.");
        }
        catch
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }
}
