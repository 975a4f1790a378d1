using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace Storage.Nbd;

/// <summary>
/// TLS for a TCP listener: the server's certificate and the client addresses allowed to connect. A listener with TLS
/// requires it (NBD "FORCEDTLS"): every option before NBD_OPT_STARTTLS is refused with NBD_REP_ERR_TLS_REQD.
/// </summary>
public sealed class NbdTlsOptions
{
    /// <summary>Creates TLS settings.</summary>
    /// <param name="certificate">The server certificate, with its private key.</param>
    /// <param name="allowedClients">Networks clients may connect from; others are disconnected on accept. At least one.</param>
    /// <exception cref="ArgumentException">The certificate has no private key, or the allow-list is empty.</exception>
    public NbdTlsOptions(X509Certificate2 certificate, IEnumerable<IPNetwork> allowedClients)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        ArgumentNullException.ThrowIfNull(allowedClients);
        if (!certificate.HasPrivateKey)
            throw new ArgumentException("The TLS certificate has no private key.", nameof(certificate));
        AllowedClients = [.. allowedClients];
        if (AllowedClients.Count == 0)
            throw new ArgumentException("A TLS listener needs a client allow-list with at least one network (e.g. 192.168.1.0/24).", nameof(allowedClients));
        Certificate = certificate;
    }

    /// <summary>The server certificate.</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>Networks clients may connect from.</summary>
    public IReadOnlyList<IPNetwork> AllowedClients { get; }

    /// <summary>
    /// When set, every client must present a certificate during the TLS handshake and this callback decides whether
    /// it is accepted (mutual TLS, e.g. nodes of one cluster pinning their shared certificate); a refused client's
    /// handshake fails and the connection closes before any option is read.
    /// </summary>
    public RemoteCertificateValidationCallback? ClientCertificateValidation { get; init; }

    /// <summary>
    /// How a client certificate's chain is built before <see cref="ClientCertificateValidation"/> sees it. Null: the
    /// system's trust, never downloading issuers (a client could otherwise make the server fetch URLs of its choosing).
    /// </summary>
    public X509ChainPolicy? ClientCertificateChainPolicy { get; init; }

    /// <summary>The TLS versions offered (default 1.2 and 1.3).</summary>
    public SslProtocols Protocols { get; init; } = SslProtocols.Tls12 | SslProtocols.Tls13;

    /// <summary>
    /// Loads a PEM certificate and key (as written by openssl or certtool) and parses the allow-list: addresses
    /// (<c>10.0.0.7</c>) or networks in CIDR form (<c>10.0.0.0/24</c>, <c>fd00::/64</c>).
    /// </summary>
    /// <exception cref="FormatException">An allow-list entry is neither an address nor a network.</exception>
    /// <exception cref="System.Security.Cryptography.CryptographicException">The files are not a PEM certificate and key.</exception>
    public static NbdTlsOptions FromPemFiles(string certificatePath, string keyPath, IEnumerable<string> allowedClients)
    {
        ArgumentException.ThrowIfNullOrEmpty(certificatePath);
        ArgumentException.ThrowIfNullOrEmpty(keyPath);
        ArgumentNullException.ThrowIfNull(allowedClients);
        var networks = new List<IPNetwork>();
        foreach (var entry in allowedClients)
        {
            if (IPNetwork.TryParse(entry, out var network))
                networks.Add(network);
            else if (IPAddress.TryParse(entry, out var address))
                networks.Add(new IPNetwork(address, address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128));
            else
                throw new FormatException($"'{entry}' is neither an IP address nor a network in CIDR form (10.0.0.0/24).");
        }
        using var pem = X509Certificate2.CreateFromPemFile(certificatePath, keyPath);
        // An ephemeral PEM key cannot be used by SslStream on every platform; round-trip through PKCS#12 to persist it.
        var certificate = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
        return new NbdTlsOptions(certificate, networks);
    }

    internal bool Allows(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
            address = address.MapToIPv4();
        foreach (var network in AllowedClients)
        {
            if (network.Contains(address))
                return true;
        }
        return false;
    }
}
