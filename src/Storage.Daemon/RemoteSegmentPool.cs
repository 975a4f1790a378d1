using Storage.Devices;
using Storage.Nbd;
using Storage.Volumes;

namespace Storage.Daemon;

/// <summary>
/// A pool on another node as the home of segments: the node offers each segment on its segment NBD port when asked,
/// and this node reads and writes it there with an <see cref="NbdClientDevice"/> (which reconnects after a break).
/// A flush flushes each segment opened; the other node commits its pool for it. Writes not yet flushed are kept here
/// and sent again if the node restarts, so a restart loses nothing a client was told was written.
/// </summary>
internal sealed class RemoteSegmentPool(string pool, PeerClient peer) : ISegmentPool
{
    public string Name => pool;

    public async ValueTask<IBlockDevice> OpenAsync(string segment, string? snapshot, CancellationToken cancellationToken = default)
    {
        var reply = await peer.SendAsync(new PeerExportRequest(pool, segment, snapshot), cancellationToken).ConfigureAwait(false);
        if (reply.Code != DaemonReply.Ok || reply.Export is null)
            throw new VolumeException($"Node '{peer.Node.Name}' does not offer segment '{segment}' of pool '{pool}': {reply.Message}");
        try
        {
            return await NbdClientDevice.ConnectAsync(new NbdClientOptions
            {
                Host = peer.Node.Segments.Address.ToString(),
                Port = peer.Node.Segments.Port,
                ExportName = reply.Export,
                ReconnectAttempts = 8,   // about 25 s of retries: a node restarting is a pause
                ReplayUnflushed = true,  // what that node acknowledged but had not committed when it died is sent again
                Tls = peer.Tls,
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is BlockDeviceException or NbdConfigurationException)
        {
            throw new ParticipantUnavailableException($"Segment '{segment}' of pool '{pool}' on node '{peer.Node.Name}' cannot be opened: {e.Message}", e);
        }
    }

    public Task FlushAsync(IReadOnlyList<IBlockDevice> opened, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(opened);
        return Task.WhenAll(opened.Select(d => d.FlushAsync(cancellationToken).AsTask()));
    }
}
