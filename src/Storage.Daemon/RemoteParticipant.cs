using Storage.Versioning;
using Storage.Volumes;

namespace Storage.Daemon;

/// <summary>
/// A pool on another node as a transaction participant: each call goes to that node's peer port, which runs it on its
/// <see cref="PoolParticipant"/>. A refusal there (a name taken, the pool full) is a no vote here; a node that does
/// not answer is <see cref="ParticipantUnavailableException"/>.
/// </summary>
internal sealed class RemoteParticipant(string pool, PeerClient peer) : ITransactionParticipant
{
    public string Name => pool;

    public async Task<long> FreeBytesAsync(CancellationToken cancellationToken = default)
        => (await AskAsync(new PeerFreeRequest(pool), cancellationToken).ConfigureAwait(false)).Free ?? 0;

    public async Task PrepareAsync(string transaction, SegmentWork work, Action? cut = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(work);
        var wire = new PeerWork([.. work.Create.Select(c => new PeerSegment(c.Name, c.Size))], work.Delete,
            [.. work.Snapshot.Select(s => new PeerSnapshot(s.Volume, s.Name))], [.. work.Grow.Select(g => new PeerSegment(g.Name, g.Size))]);
        await AskAsync(new PeerPrepareRequest(pool, transaction, wire), cancellationToken, refusalIsVote: true).ConfigureAwait(false);
        cut?.Invoke();   // the snapshots there are taken (and durable): the writes the coordinator holds are not in them
    }

    public Task CommitAsync(string transaction, CancellationToken cancellationToken = default)
        => AskAsync(new PeerResolveRequest(pool, transaction, Commit: true), cancellationToken);

    public Task AbortAsync(string transaction, CancellationToken cancellationToken = default)
        => AskAsync(new PeerResolveRequest(pool, transaction, Commit: false), cancellationToken);

    public async Task<IReadOnlyList<string>> PreparedAsync(CancellationToken cancellationToken = default)
        => (await AskAsync(new PeerPreparedRequest(pool), cancellationToken).ConfigureAwait(false)).Transactions ?? [];

    public Task ReconcileAsync(SpannedVolume volume, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(volume);
        return AskAsync(new PeerReconcileRequest(pool, volume.Name), cancellationToken);
    }

    /// <summary>Sends <paramref name="request"/>; only a prepare's refusal is a no vote, any other failure means the pool cannot be reached now.</summary>
    private async Task<PeerReply> AskAsync(PeerRequest request, CancellationToken cancellationToken, bool refusalIsVote = false)
    {
        var reply = await peer.SendAsync(request, cancellationToken).ConfigureAwait(false);
        if (reply.Code == DaemonReply.Ok)
            return reply;
        if (refusalIsVote && reply.Code == DaemonReply.Refused)
            throw new PoolConfigurationException(reply.Message);
        throw new ParticipantUnavailableException($"Node '{peer.Node.Name}' could not do its part for pool '{pool}': {reply.Message}");
    }
}
