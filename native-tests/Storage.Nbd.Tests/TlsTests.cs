using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Storage.Devices;
using static Storage.Nbd.Tests.NbdTestClient;

namespace Storage.Nbd.Tests;

/// <summary>TLS listeners: NBD_OPT_STARTTLS, "FORCEDTLS" refusals before it, and the client allow-list.</summary>
public class TlsTests
{
    /// <summary>A self-signed certificate for localhost / 127.0.0.1, written as PEM files (certificate and key).</summary>
    private static (string Certificate, string Key) WritePem(TempDirectory directory)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        string certificatePath = directory.File("ca-cert.pem"), keyPath = directory.File("server-key.pem");
        File.WriteAllText(certificatePath, certificate.ExportCertificatePem());
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
        return (certificatePath, keyPath);
    }

    [Fact]
    public async Task A_tls_listener_may_bind_any_address_and_requires_starttls_first()
    {
        using var directory = new TempDirectory();
        var (certificatePath, keyPath) = WritePem(directory);
        var tls = NbdTlsOptions.FromPemFiles(certificatePath, keyPath, ["127.0.0.1", "10.0.0.0/8"]);
        using var device = new MemoryBlockDevice(1 << 20);
        new Random(4).NextBytes(device.Bytes);
        await using var server = new NbdServer();
        server.AddExport(new NbdExport("disk", device));
        var endpoint = server.ListenTcp(new IPEndPoint(IPAddress.Any, 0), tls);
        var local = new IPEndPoint(IPAddress.Loopback, endpoint.Port);

        await using (var client = await ConnectAsync(local))
        {
            await client.StartAsync();
            var (final, _, error) = await client.InfoAsync(OptGo, "disk");
            Assert.Equal(ErrTlsReqd, final);
            Assert.Contains("TLS", error);
            await client.SendOptionAsync(OptList, []);
            Assert.Equal(ErrTlsReqd, (await client.ReadOptionReplyAsync()).Type);

            await client.SendOptionAsync(OptStartTls, []);
            Assert.Equal(RepAck, (await client.ReadOptionReplyAsync()).Type);
            await client.UpgradeToTlsAsync(tls.Certificate);
            await client.SendOptionAsync(OptStartTls, []);
            Assert.Equal(ErrInvalid, (await client.ReadOptionReplyAsync()).Type);
            var info = await client.GoAsync("disk");
            Assert.Equal(1 << 20, info.Size);
            Assert.Equal(device.Bytes[..4096].ToArray(), await client.ReadAsync(0, 4096));
            await client.WriteAsync(8192, [9, 8, 7]);
            Assert.Equal([9, 8, 7], device.Bytes.Slice(8192, 3).ToArray());
            // Pipelined: over TLS every reply goes out from the connection's send thread.
            for (ulong cookie = 1; cookie <= 20; cookie++)
                await client.SendRequestAsync(CmdRead, 0, cookie, cookie * 20000, 20000);
            for (int i = 0; i < 20; i++)
            {
                var reply = await client.ReadReplyAsync();
                Assert.Equal(device.Bytes.Slice((int)reply.Cookie * 20000, 20000).ToArray(), reply.Data);
            }
        }

        // EXPORT_NAME cannot be refused with an error, so before TLS it ends the connection.
        await using (var client = await ConnectAsync(local))
        {
            await client.StartAsync();
            await client.SendOptionAsync(OptExportName, "disk"u8);
            Assert.True(await client.IsClosedByServerAsync());
        }
    }

    [Fact]
    public async Task Clients_outside_the_allow_list_are_closed_on_accept()
    {
        using var directory = new TempDirectory();
        var (certificatePath, keyPath) = WritePem(directory);
        await using var server = new NbdServer();
        var endpoint = server.ListenTcp(new IPEndPoint(IPAddress.Loopback, 0), NbdTlsOptions.FromPemFiles(certificatePath, keyPath, ["192.0.2.0/24"]));
        await using var client = await ConnectAsync(endpoint);
        Assert.True(await client.IsClosedByServerAsync());
    }

    private static X509Certificate2 SelfSigned(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var certificate = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        return X509CertificateLoader.LoadPkcs12(certificate.Export(X509ContentType.Pkcs12), null);
    }

    private static SslClientAuthenticationOptions ClientTls(X509Certificate2 mine, X509Certificate2 server) => new()
    {
        TargetHost = "cluster",
        ClientCertificateContext = SslStreamCertificateContext.Create(mine, null, offline: true),
        RemoteCertificateValidationCallback = (_, c, _, _) => c is not null && c.GetRawCertData().AsSpan().SequenceEqual(server.RawData),
    };

    /// <summary>
    /// Mutual TLS: the server asks every client for a certificate and accepts only the one it pins; NbdClientDevice
    /// speaks NBD_OPT_STARTTLS with a client certificate. A client with another certificate, one that pins another
    /// server, or one without TLS gets nothing.
    /// </summary>
    [Fact]
    public async Task The_nbd_client_device_speaks_starttls_and_the_server_can_pin_client_certificates()
    {
        var Ct = TestContext.Current.CancellationToken;
        using var shared = SelfSigned("cluster");
        using var stranger = SelfSigned("stranger");
        using var device = new MemoryBlockDevice(1 << 20);
        await using var server = new NbdServer();
        server.AddExport(new NbdExport("disk", device));
        var tls = new NbdTlsOptions(shared, [IPNetwork.Parse("127.0.0.0/8")])
        {
            ClientCertificateValidation = (_, c, _, _) => c is not null && c.GetRawCertData().AsSpan().SequenceEqual(shared.RawData),
        };
        var endpoint = server.ListenTcp(new IPEndPoint(IPAddress.Loopback, 0), tls);
        NbdClientOptions Options(SslClientAuthenticationOptions? clientTls) =>
            new() { Host = "127.0.0.1", Port = endpoint.Port, ExportName = "disk", Tls = clientTls, ReconnectAttempts = 0, ConnectTimeout = TimeSpan.FromSeconds(5) };

        await using (var client = await NbdClientDevice.ConnectAsync(Options(ClientTls(shared, shared)), Ct))
        {
            var written = new byte[8192];
            new Random(3).NextBytes(written);
            await client.WriteAsync(4096, written, cancellationToken: Ct);
            await client.FlushAsync(Ct);
            var read = new byte[8192];
            await client.ReadAsync(4096, read, Ct);
            Assert.Equal(written, read);
            Assert.Equal(written, device.Bytes.Slice(4096, 8192).ToArray());
        }
        await Assert.ThrowsAnyAsync<Exception>(async () => await (await NbdClientDevice.ConnectAsync(Options(ClientTls(stranger, shared)), Ct)).DisposeAsync());
        await Assert.ThrowsAsync<NbdConfigurationException>(async () => await (await NbdClientDevice.ConnectAsync(Options(ClientTls(shared, stranger)), Ct)).DisposeAsync());
        var plain = await Assert.ThrowsAsync<NbdConfigurationException>(async () => await (await NbdClientDevice.ConnectAsync(Options(null), Ct)).DisposeAsync());
        Assert.Contains("TLS", plain.Message);

        // A client that asks for TLS and then sends garbage instead of a handshake is closed; the server lives on.
        await using (var garbage = await ConnectAsync(new IPEndPoint(IPAddress.Loopback, endpoint.Port)))
        {
            await garbage.StartAsync();
            await garbage.SendOptionAsync(OptStartTls, []);
            Assert.Equal(RepAck, (await garbage.ReadOptionReplyAsync()).Type);
            await garbage.SendAsync(new byte[64]);
            Assert.True(await garbage.IsClosedByServerAsync());
        }
        await using (var again = await NbdClientDevice.ConnectAsync(Options(ClientTls(shared, shared)), Ct))
            Assert.Equal(1 << 20, again.Capacity);
        Assert.Equal(0, server.UnexpectedErrorCount);
    }

    [Fact]
    public void Tls_options_need_a_key_and_an_allow_list()
    {
        using var directory = new TempDirectory();
        var (certificatePath, keyPath) = WritePem(directory);
        Assert.Throws<ArgumentException>(() => NbdTlsOptions.FromPemFiles(certificatePath, keyPath, []));
        Assert.Throws<FormatException>(() => NbdTlsOptions.FromPemFiles(certificatePath, keyPath, ["not-an-address"]));
        using var publicOnly = X509Certificate2.CreateFromPem(File.ReadAllText(certificatePath));
        Assert.Throws<ArgumentException>(() => new NbdTlsOptions(publicOnly, [IPNetwork.Parse("127.0.0.0/8")]));
    }

    [Fact]
    public async Task Nbdinfo_connects_over_tls()
    {
        string nbdinfo = Requires.Tool("nbdinfo", "libnbd-bin");
        using var directory = new TempDirectory();
        var (certificatePath, keyPath) = WritePem(directory);
        using var device = new MemoryBlockDevice(1 << 20);
        await using var server = new NbdServer();
        server.AddExport(new NbdExport("disk", device));
        var endpoint = server.ListenTcp(new IPEndPoint(IPAddress.Loopback, 0), NbdTlsOptions.FromPemFiles(certificatePath, keyPath, ["127.0.0.1"]));
        string uri = $"nbds://localhost:{endpoint.Port}/disk?tls-certificates={directory.Path}";
        string output = await Shell.CheckAsync(nbdinfo, uri);
        Assert.Contains("with TLS", output);
        Assert.Contains("export-size: 1048576", output);
        Assert.Equal(0, server.UnexpectedErrorCount);
    }
}
