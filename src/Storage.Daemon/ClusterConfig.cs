using System.Globalization;
using System.Net;

namespace Storage.Daemon;

/// <summary>
/// One node of a cluster as <c>--cluster</c> names it: <c>NAME=HOST:PORT</c>. A node uses four ports from PORT on:
/// PORT its metadata replica's consensus traffic, PORT+1 the metadata clients, PORT+2 requests between nodes
/// (two-phase-commit participants, forwarded requests), PORT+3 NBD for the segments other nodes read and write.
/// </summary>
/// <param name="Name">The node's name (its pools are recorded under it).</param>
/// <param name="Id">Its metadata replica's id: its position in the list, from 1.</param>
/// <param name="Address">Where it listens.</param>
/// <param name="Port">Its first port.</param>
public sealed record ClusterNode(string Name, int Id, IPAddress Address, int Port)
{
    /// <summary>Consensus traffic between replicas.</summary>
    public IPEndPoint Consensus => new(Address, Port);

    /// <summary>The metadata client protocol.</summary>
    public IPEndPoint Metadata => new(Address, Port + 1);

    /// <summary>Requests between nodes.</summary>
    public IPEndPoint Peer => new(Address, Port + 2);

    /// <summary>NBD exports of the segments this node's pools hold.</summary>
    public IPEndPoint Segments => new(Address, Port + 3);

    /// <summary>The form <c>--cluster</c> takes.</summary>
    public override string ToString() => $"{Name}={(Address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{Address}]" : Address.ToString())}:{Port}";

    /// <summary>
    /// Parses <c>n1=127.0.0.1:7100,n2=10.0.0.2:7100,…</c>. Without <paramref name="authenticated"/> (a cluster key)
    /// every address must be a loopback address: unauthenticated traffic between nodes must not leave the machine.
    /// </summary>
    /// <exception cref="FormatException">What is wrong with the list, and how to write it.</exception>
    public static IReadOnlyList<ClusterNode> Parse(string value, bool authenticated = false)
    {
        ArgumentNullException.ThrowIfNull(value);
        var nodes = new List<ClusterNode>();
        foreach (string entry in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int equals = entry.IndexOf('=', StringComparison.Ordinal), colon = entry.LastIndexOf(':');
            if (equals <= 0 || colon < equals + 2)
                throw new FormatException($"'{entry}' is not NAME=HOST:PORT (e.g. n1=127.0.0.1:7100).");
            string name = entry[..equals], host = entry[(equals + 1)..colon].Trim('[', ']');
            if (!name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
                throw new FormatException($"'{name}' is not a valid node name: letters, digits, '-' and '_'.");
            if (!int.TryParse(entry[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65532)
                throw new FormatException($"'{entry[(colon + 1)..]}' in '{entry}' is not a port from 1 to 65532 (a node uses four ports from it).");
            var address = host == "localhost" ? IPAddress.Loopback : IPAddress.TryParse(host, out var parsed) ? parsed
                : throw new FormatException($"'{host}' in '{entry}' is not an IP address.");
            if (address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any) || address.Equals(IPAddress.Broadcast) || IsMulticast(address))
                throw new FormatException($"{address} in '{entry}' is not one machine's address: give the address the node listens on and the others reach it at.");
            if (!authenticated && !IPAddress.IsLoopback(address))
            {
                throw new FormatException($"{address} in '{entry}' is not a loopback address. Without a cluster key traffic between nodes is not " +
                    "authenticated, and across machines anyone on the network could vote, propose and write segments. Create a key with " +
                    "'storage cluster key create FILE', copy it to every node and start each with --cluster-key FILE.");
            }
            nodes.Add(new ClusterNode(name, nodes.Count + 1, address, port));
        }
        if (nodes.Count is < 1 or > 7)
            throw new FormatException($"A cluster has 1 to 7 nodes (3 or 5 tolerate one or two lost); '{value}' names {nodes.Count}.");
        if (nodes.GroupBy(n => n.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1) is { } twice)
            throw new FormatException($"Node '{twice.Key}' is named twice in '{value}'.");
        foreach (var node in nodes)
        {
            if (nodes.FirstOrDefault(o => o != node && o.Address.Equals(node.Address) && Math.Abs(o.Port - node.Port) < 4) is { } close)
                throw new FormatException($"Nodes '{node.Name}' and '{close.Name}' overlap: each uses four ports from its own, so leave at least 4 between them.");
        }
        return nodes;
    }

    private static bool IsMulticast(IPAddress address) => address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6
        ? address.IsIPv6Multicast
        : (address.GetAddressBytes()[0] & 0xF0) == 0xE0;
}
