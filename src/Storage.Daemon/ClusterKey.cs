using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Storage.Nbd;

namespace Storage.Daemon;

/// <summary>
/// A cluster's shared credential: one self-signed certificate and its private key (ECDSA P-256, one PEM file), copied
/// to every node. With it, every connection between nodes — consensus, metadata clients, node requests, segment NBD —
/// is TLS 1.3 and mutually authenticated: each side must present exactly this certificate (and so prove it holds its
/// key). A process without the file cannot connect to any of those ports, so it cannot join, vote, propose, or touch a
/// segment.
/// </summary>
public sealed class ClusterKey : IDisposable
{
    private readonly X509Certificate2 _certificate;
    private readonly SslStreamCertificateContext _context;

    private ClusterKey(X509Certificate2 certificate)
    {
        _certificate = certificate;
        _context = SslStreamCertificateContext.Create(certificate, additionalCertificates: null, offline: true);
    }

    /// <summary>The certificate's SHA-256 fingerprint, for logs and <c>storage cluster key show</c>.</summary>
    public string Fingerprint => Convert.ToHexString(_certificate.GetCertHash(HashAlgorithmName.SHA256)).ToLowerInvariant();

    /// <summary>Writes a new key to <paramref name="path"/> (mode 0600) and returns its fingerprint.</summary>
    /// <exception cref="DaemonRequestException">The file exists (a cluster's key is never overwritten by accident).</exception>
    public static string Create(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (File.Exists(path))
            throw new DaemonRequestException($"{path} exists. A cluster key is never overwritten: the nodes that use it would be locked out. Choose another file, or delete this one if no cluster uses it.");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN=storage cluster {Convert.ToHexString(RandomNumberGenerator.GetBytes(8)).ToLowerInvariant()}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], critical: false));
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(30));
        string pem = certificate.ExportCertificatePem() + "\n" + key.ExportPkcs8PrivateKeyPem() + "\n";
        // Created owner-only before the key is written: no moment where another user could read it.
        var create = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
            create.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var file = new FileStream(path, create))
        using (var writer = new StreamWriter(file))
            writer.Write(pem);
        return Convert.ToHexString(certificate.GetCertHash(HashAlgorithmName.SHA256)).ToLowerInvariant();
    }

    /// <summary>Loads the key at <paramref name="path"/>.</summary>
    /// <exception cref="DaemonRequestException">The file is missing, readable by others, or not a key this command wrote.</exception>
    public static ClusterKey Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
            throw new DaemonRequestException($"No cluster key at {path}. Create one with 'storage cluster key create FILE' on one node and copy it (mode 0600) to every node.");
        if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(path) & (UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite)) != 0)
            throw new DaemonRequestException($"{path} is readable or writable by other users; anyone who can read it can join the cluster. Run 'chmod 600 {path}'.");
        try
        {
            using var pem = X509Certificate2.CreateFromPemFile(path);
            if (!pem.HasPrivateKey)
                throw new DaemonRequestException($"{path} holds a certificate but no private key; it is not a cluster key.");
            // A key loaded from PEM is ephemeral, which SslStream cannot use on every platform: round-trip through PKCS#12.
            return new ClusterKey(X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DaemonRequestException($"{path} cannot be read: {e.Message}");
        }
        catch (CryptographicException e)
        {
            throw new DaemonRequestException($"{path} is not a cluster key (a PEM certificate and private key, as 'storage cluster key create' writes): {e.Message}");
        }
    }

    /// <summary>TLS settings for a node's listening side: this certificate, and a client that shows it.</summary>
    public SslServerAuthenticationOptions ServerOptions() => new()
    {
        ServerCertificateContext = _context,
        ClientCertificateRequired = true,
        EnabledSslProtocols = SslProtocols.Tls13,
        RemoteCertificateValidationCallback = IsClusterCertificate,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        CertificateChainPolicy = ChainPolicy(),
        AllowTlsResume = false,
    };

    /// <summary>TLS settings for a node connecting to another: this certificate, and a server that shows it.</summary>
    public SslClientAuthenticationOptions ClientOptions() => new()
    {
        TargetHost = "storage-cluster",
        ClientCertificateContext = _context,
        EnabledSslProtocols = SslProtocols.Tls13,
        RemoteCertificateValidationCallback = IsClusterCertificate,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        CertificateChainPolicy = ChainPolicy(),
        AllowTlsResume = false,
    };

    /// <summary>
    /// The chain a peer's certificate is checked against before the pin: only this certificate is trusted, and
    /// nothing is fetched — a certificate from outside could otherwise make the node download its issuers (AIA) from
    /// wherever it points, blocking a thread before the pin refuses it.
    /// </summary>
    private X509ChainPolicy ChainPolicy()
    {
        var policy = new X509ChainPolicy
        {
            DisableCertificateDownloads = true,
            RevocationMode = X509RevocationMode.NoCheck,
            TrustMode = X509ChainTrustMode.CustomRootTrust,
        };
        policy.CustomTrustStore.Add(_certificate);
        return policy;
    }

    /// <summary>TLS for the segment NBD listener: required, clients only from <paramref name="nodes"/>, and they must show this certificate.</summary>
    public NbdTlsOptions NbdOptions(IEnumerable<IPAddress> nodes) =>
        new(_certificate, nodes.SelectMany(Networks).Distinct())
        {
            ClientCertificateValidation = IsClusterCertificate,
            ClientCertificateChainPolicy = ChainPolicy(),
            Protocols = SslProtocols.Tls13,
        };

    /// <summary>Where a node's connections come from: its address, or either loopback for a node on loopback.</summary>
    private static IEnumerable<IPNetwork> Networks(IPAddress node) => IPAddress.IsLoopback(node)
        ? [IPNetwork.Parse("127.0.0.0/8"), IPNetwork.Parse("::1/128")]
        : [new IPNetwork(node, node.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128)];

    /// <summary>
    /// Accepts exactly this certificate, whatever the chain and name checks say (it is self-signed and names no host):
    /// the TLS handshake proved the peer holds its private key.
    /// </summary>
    private bool IsClusterCertificate(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors) =>
        certificate is not null && (errors & SslPolicyErrors.RemoteCertificateNotAvailable) == 0
        && certificate.GetRawCertData().AsSpan().SequenceEqual(_certificate.RawData);

    /// <inheritdoc />
    public void Dispose() => _certificate.Dispose();
}
