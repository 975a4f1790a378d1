using System.Net;
using System.Net.Security;
using Storage.Consensus;
using Storage.Metadata;

namespace Storage.Daemon;

/// <summary>
/// One metadata replica served over TCP: Multi-Paxos with its peers on <c>peers[id]</c>, and the client protocol
/// (<see cref="MetadataClient"/>) on its client endpoint. What <c>storage meta serve</c> runs; one per node is the
/// shape of a cluster across machines.
/// </summary>
public sealed class ReplicaHost : IDisposable
{
    private readonly MetadataServer _server;

    private ReplicaHost(MetadataReplica replica, MetadataServer server)
    {
        Replica = replica;
        _server = server;
    }

    /// <summary>The replica.</summary>
    public MetadataReplica Replica { get; }

    /// <summary>Where clients connect.</summary>
    public IPEndPoint ClientEndpoint => _server.LocalEndpoint;

    /// <summary>The founding configuration of the group <paramref name="peers"/>: every replica at incarnation 0.</summary>
    public static Configuration ConfigurationOf(IReadOnlyDictionary<int, IPEndPoint> peers)
    {
        ArgumentNullException.ThrowIfNull(peers);
        return new Configuration(peers.Keys.Select(k => new Member(k, 0)));
    }

    /// <summary>Starts the replica <paramref name="options"/> describe, one of <paramref name="peers"/>, and serves clients on <paramref name="client"/>.</summary>
    /// <param name="options">The replica (its id must be a key of <paramref name="peers"/>).</param>
    /// <param name="peers">Every replica's consensus endpoint.</param>
    /// <param name="client">The client endpoint.</param>
    /// <param name="serverTls">TLS required of replicas and clients that connect here, or null: plain TCP.</param>
    /// <param name="clientTls">TLS for connections to the other replicas, or null: plain TCP.</param>
    public static ReplicaHost Start(MetadataReplicaOptions options, IReadOnlyDictionary<int, IPEndPoint> peers, IPEndPoint client,
        SslServerAuthenticationOptions? serverTls = null, SslClientAuthenticationOptions? clientTls = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(peers);
        if (!peers.TryGetValue(options.Id, out var self))
            throw new ArgumentException($"The peers have no endpoint for replica {options.Id}.", nameof(peers));
        int id = options.Id;
        var replica = new MetadataReplica(options, new TcpTransport(id, self, peers) { ServerTls = serverTls, ClientTls = clientTls });
        try
        {
            replica.Start();
            var server = new MetadataServer(replica, client) { Tls = serverTls };
            server.Start();
            return new ReplicaHost(replica, server);
        }
        catch
        {
            replica.Dispose();
            throw;
        }
    }

    /// <summary>Stops serving clients, then the replica.</summary>
    public void Dispose()
    {
        _server.Dispose();
        Replica.Dispose();
    }
}
