using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Storage.Cli.Tests;

/// <summary>
/// A process that tries the ports of a cluster's nodes from outside: plain TCP, or TLS with a certificate of its
/// choosing (it trusts the certificate the node shows — the cluster's, which is no secret — so a refusal is the node's).
/// </summary>
internal static class Outsider
{
    /// <summary>The certificate and key in a PEM file (a cluster key), usable as a TLS client certificate.</summary>
    public static X509Certificate2 Certificate(string pemFile)
    {
        using var pem = X509Certificate2.CreateFromPemFile(pemFile);
        return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>
    /// Connects (TLS with <paramref name="certificate"/> as the client certificate, or plain TCP without one), sends
    /// <paramref name="request"/> and returns the first line of the answer, or null when the node closes the
    /// connection, fails the handshake, or says nothing within <paramref name="wait"/>.
    /// </summary>
    public static string? Ask(IPEndPoint endpoint, X509Certificate2? certificate, X509Certificate2 node, string request, TimeSpan wait)
    {
        using var client = new TcpClient();
        client.Connect(endpoint);
        Stream stream = client.GetStream();
        try
        {
            if (certificate is not null)
            {
                var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
                ssl.AuthenticateAsClient(Tls(certificate, node));
                stream = ssl;
            }
            stream.ReadTimeout = (int)wait.TotalMilliseconds;
            stream.Write(Encoding.UTF8.GetBytes(request + "\n"));
            using var reader = new StreamReader(stream, Encoding.UTF8);
            return reader.ReadLine();
        }
        catch (Exception e) when (e is IOException or AuthenticationException or SocketException or ObjectDisposedException)
        {
            return null;   // refused, closed, or silent
        }
        finally
        {
            stream.Dispose();
        }
    }

    /// <summary>
    /// Whether a TLS connection with <paramref name="certificate"/> stays open for <paramref name="wait"/> (the node
    /// accepted it) rather than being failed or closed (the node refused it). For ports that never answer on their own.
    /// </summary>
    public static bool StaysOpen(IPEndPoint endpoint, X509Certificate2 certificate, X509Certificate2 node, TimeSpan wait)
    {
        using var client = new TcpClient();
        client.Connect(endpoint);
        using var ssl = new SslStream(client.GetStream(), leaveInnerStreamOpen: false);
        try
        {
            ssl.AuthenticateAsClient(Tls(certificate, node));
            ssl.ReadTimeout = (int)wait.TotalMilliseconds;
            // TLS 1.3 sends a refused client certificate's alert after the client's side of the handshake is done.
            return ssl.Read(new byte[1]) > 0;
        }
        catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.TimedOut })
        {
            return true;   // nothing to read, connection open: accepted
        }
        catch (Exception e) when (e is IOException or AuthenticationException or SocketException)
        {
            return false;
        }
    }

    /// <summary>TLS client settings: <paramref name="certificate"/> as the client certificate, <paramref name="node"/> the server's expected one.</summary>
    public static SslClientAuthenticationOptions Tls(X509Certificate2 certificate, X509Certificate2 node) => new()
    {
        TargetHost = "storage-cluster",
        ClientCertificateContext = SslStreamCertificateContext.Create(certificate, null, offline: true),
        RemoteCertificateValidationCallback = (_, shown, _, _) => shown is not null && shown.GetRawCertData().AsSpan().SequenceEqual(node.RawData),
    };
}
