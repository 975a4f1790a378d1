using Storage.Consensus;

namespace Storage.Metadata;

/// <summary>The client protocol of <see cref="MetadataServer"/>: request/response frames with ids, so a
/// connection carries many requests at once.</summary>
/// <remarks>
/// Request: <c>i64 id | u8 kind | body</c> (1 execute: an encoded envelope; 2 read: a key; 3 status; 4 list: a prefix).
/// Response: <c>i64 id | u8 outcome | body</c> (0 ok: a result, a status, or for a list i32 count and (key, i64 version)
/// pairs; 1 not leader: i32 hint; 2 error: text).
/// Each travels in a <see cref="FrameCodec"/> frame.
/// </remarks>
internal static class Protocol
{
    public const byte Execute = 1;
    public const byte Read = 2;
    public const byte StatusRequest = 3;
    public const byte List = 4;

    public const byte Ok = 0;
    public const byte NotLeader = 1;
    public const byte Error = 2;

    public static void WriteStatus(ByteWriter w, ReplicaStatus s)
    {
        var c = s.Consensus;
        w.I32(c.Self.Id);
        w.I64(c.Self.Incarnation);
        w.U8((byte)c.Role);
        w.I32(c.LeaderId);
        w.I64(c.Promised.Round);
        w.I32(c.Promised.ReplicaId);
        w.I64(c.Commit);
        w.I64(c.Applied);
        w.I64(c.SnapshotIndex);
        w.String(c.Config.ToString());
        w.U8(c.HasLease ? (byte)1 : (byte)0);
        w.I64(s.Revision);
        w.I32(s.Keys);
        w.U8((byte)s.Recovery);
        w.I32(c.Peers.Count);
        foreach (var p in c.Peers)
        {
            w.I32(p.Id);
            w.I64(p.Incarnation);
            w.I64(p.Commit);
            w.I64(p.TicksSinceHeard);
        }
    }

    public static RemoteStatus ReadStatus(ref ByteReader r)
    {
        int id = r.I32();
        long inc = r.I64();
        var role = (Role)r.U8();
        int leader = r.I32();
        var ballot = new Ballot(r.I64(), r.I32());
        long commit = r.I64(), applied = r.I64(), snap = r.I64();
        string config = r.String();
        bool lease = r.U8() == 1;
        long revision = r.I64();
        int keys = r.I32();
        var recovery = (RecoveryOutcome)r.U8();
        var peers = new PeerStatus[r.Count(28)];
        for (int i = 0; i < peers.Length; i++)
            peers[i] = new PeerStatus(r.I32(), r.I64(), r.I64(), r.I64());
        return new RemoteStatus(new Member(id, inc), role, leader, ballot, commit, applied, snap, config, lease, revision, keys, recovery, peers);
    }
}

/// <summary>A replica's status as reported over the client protocol (see <c>storage meta status</c>).</summary>
public sealed record RemoteStatus(
    Member Self, Role Role, int LeaderId, Ballot Promised, long Commit, long Applied, long SnapshotIndex,
    string Config, bool HasLease, long Revision, int Keys, RecoveryOutcome Recovery, IReadOnlyList<PeerStatus> Peers);
