using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Text;
using System.Text.Json;
using Storage.Consensus;
using Storage.Volumes;

namespace Storage.Daemon;

/// <summary>Sends <see cref="PeerRequest"/>s to another node's peer port.</summary>
internal sealed class PeerClient(string from, ClusterNode node, SslClientAuthenticationOptions? tls)
{
    /// <summary>TLS for connections to that node (its peer and segment ports), or null: plain TCP.</summary>
    public SslClientAuthenticationOptions? Tls => tls;

    /// <summary>How long a connection attempt may take before the node counts as unreachable.</summary>
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(2);

    /// <summary>How long a reply may take (a prepare that snapshots many segments included) before the node counts as unreachable.</summary>
    public static readonly TimeSpan ReplyTimeout = TimeSpan.FromSeconds(60);

    public ClusterNode Node => node;

    /// <summary>Sends <paramref name="request"/> and returns the reply.</summary>
    /// <exception cref="ParticipantUnavailableException">The node does not answer, or the connection broke before its reply.</exception>
    public async Task<PeerReply> SendAsync(PeerRequest request, CancellationToken cancellationToken = default)
    {
        using var socket = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp) { DualMode = true, NoDelay = true };
        try
        {
            using (var connecting = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            {
                connecting.CancelAfter(ConnectTimeout);
                await socket.ConnectAsync(new IPEndPoint(node.Address.AddressFamily == AddressFamily.InterNetwork ? node.Address.MapToIPv6() : node.Address, node.Peer.Port), connecting.Token)
                    .ConfigureAwait(false);
            }
            Stream stream;
            try
            {
                stream = await TransportTls.ClientAsync(new NetworkStream(socket, ownsSocket: false), tls, cancellationToken).ConfigureAwait(false);
            }
            catch (AuthenticationException e)
            {
                throw new ParticipantUnavailableException($"Node '{node.Name}' ({node.Peer}) refused this node's TLS handshake or showed another certificate ({e.Message}): do both use the same --cluster-key?", e);
            }
            await using var _ = stream;
            using var writer = new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true };
            using var reader = new StreamReader(stream, Encoding.UTF8);
            await writer.WriteLineAsync(JsonSerializer.Serialize(request with { From = from }, PeerJson.Default.PeerRequest)).ConfigureAwait(false);
            using var replying = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            replying.CancelAfter(ReplyTimeout);
            string line = await reader.ReadLineAsync(replying.Token).ConfigureAwait(false)
                ?? throw new ParticipantUnavailableException($"Node '{node.Name}' closed the connection without answering (it may be stopping).");
            return JsonSerializer.Deserialize(line, PeerJson.Default.PeerReply) ?? throw new ParticipantUnavailableException($"Node '{node.Name}' sent an empty reply.");
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
        {
            if (e is ParticipantUnavailableException)
                throw;
            throw new ParticipantUnavailableException($"Node '{node.Name}' ({node.Peer}) does not answer: {e.Message}", e);
        }
        catch (JsonException e)
        {
            throw new ParticipantUnavailableException($"Node '{node.Name}' sent a reply this node cannot read ({e.Message}); are both the same version?", e);
        }
    }
}
