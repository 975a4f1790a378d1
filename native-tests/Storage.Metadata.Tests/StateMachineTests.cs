using System.Text;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Storage.Metadata;

namespace Storage.Metadata.Tests;

public class StateMachineTests
{
    private long _seq;

    private (CommandResult Result, List<WatchEvent> Events) Run(MetadataStateMachine m, MetadataCommand c, long session = 1)
    {
        var events = new List<WatchEvent>();
        var (result, _, _, _) = m.Apply(MetadataCodec.Encode(new Envelope(session, ++_seq, c)), events);
        return (result, events);
    }

    private static byte[] B(string s) => Encoding.UTF8.GetBytes(s);

    [Fact]
    public void Compare_and_set_succeeds_only_at_the_expected_version()
    {
        var m = new MetadataStateMachine();
        var (created, events) = Run(m, new PutCommand("a", B("1"), ExpectedVersion: 0));
        Assert.True(created.IsOk);
        Assert.Single(events);
        Assert.Equal(ResultCode.VersionMismatch, Run(m, new PutCommand("a", B("x"), ExpectedVersion: 0)).Result.Code);
        Assert.Equal(ResultCode.VersionMismatch, Run(m, new PutCommand("a", B("x"), ExpectedVersion: created.Version + 5)).Result.Code);
        var updated = Run(m, new PutCommand("a", B("2"), ExpectedVersion: created.Version)).Result;
        Assert.True(updated.IsOk);
        Assert.True(updated.Version > created.Version);
        Assert.Equal("2", Encoding.UTF8.GetString(m.Read("a").Value.Span));
        Assert.Equal(ResultCode.VersionMismatch, Run(m, new DeleteCommand("a", created.Version)).Result.Code);
        Assert.True(Run(m, new DeleteCommand("a", updated.Version)).Result.IsOk);
        Assert.Equal(ResultCode.NotFound, m.Read("a").Code);
    }

    [Fact]
    public void A_retried_command_is_applied_once_and_returns_the_first_result()
    {
        var m = new MetadataStateMachine();
        byte[] put = MetadataCodec.Encode(new Envelope(7, 1, new PutCommand("k", B("v"))));
        var events = new List<WatchEvent>();
        var first = m.Apply(put, events);
        var again = m.Apply(put, events);
        Assert.True(first.Fresh);
        Assert.False(again.Fresh);
        Assert.Equal(first.Result, again.Result);
        Assert.Equal(1, m.Revision);
        Assert.Single(events);
    }

    [Fact]
    public void Concurrent_requests_of_one_session_apply_in_any_order_and_old_results_are_forgotten_once_acknowledged()
    {
        var m = new MetadataStateMachine();
        var events = new List<WatchEvent>();
        byte[] Cmd(long seq, long acked) => MetadataCodec.Encode(new Envelope(9, seq, new PutCommand($"k{seq}", B("v")), acked));
        Assert.True(m.Apply(Cmd(3, 0), events).Fresh);
        Assert.True(m.Apply(Cmd(1, 0), events).Fresh);
        Assert.True(m.Apply(Cmd(2, 0), events).Fresh);
        Assert.False(m.Apply(Cmd(1, 0), events).Fresh);
        Assert.True(m.Apply(Cmd(5, 3), events).Fresh);
        var stale = m.Apply(Cmd(2, 0), events);
        Assert.False(stale.Fresh);
        Assert.Equal(ResultCode.Invalid, stale.Result.Code);
        Assert.Equal(4, m.Revision);
    }

    [Fact]
    public void Pools_volumes_extents_and_snapshots_keep_their_rules()
    {
        var m = new MetadataStateMachine();
        ArrayRecord[] arrays = [new(1, "raid6", ["d0", "d1", "d2", "d3"]), new(2, "raid1", ["d4", "d5"])];
        Assert.True(Run(m, new CreatePoolCommand("p", arrays)).Result.IsOk);
        Assert.Equal(ResultCode.AlreadyExists, Run(m, new CreatePoolCommand("p", arrays)).Result.Code);
        Assert.Equal(ResultCode.Invalid, Run(m, new CreatePoolCommand("q", [new(1, "raid1", ["x", "x"])])).Result.Code);
        Assert.Equal(ResultCode.Conflict, Run(m, new AddArrayMemberCommand("p", 2, "d0")).Result.Code);
        Assert.True(Run(m, new AddArrayMemberCommand("p", 2, "d6")).Result.IsOk);
        Assert.Equal(["d4", "d5", "d6"], m.GetPool("p")!.Arrays[1].Members);
        Assert.True(Run(m, new RemoveArrayMemberCommand("p", 2, "d4")).Result.IsOk);

        Assert.Equal(ResultCode.NotFound, Run(m, new CreateVolumeCommand("v", "nope", 100)).Result.Code);
        Assert.True(Run(m, new CreateVolumeCommand("v", "p", 1 << 20)).Result.IsOk);
        Assert.True(Run(m, new MapExtentCommand("v", new ExtentRecord(0, 4096, 1, 0))).Result.IsOk);
        Assert.Equal(ResultCode.Conflict, Run(m, new MapExtentCommand("v", new ExtentRecord(2048, 4096, 2, 0))).Result.Code);
        Assert.Equal(ResultCode.Invalid, Run(m, new MapExtentCommand("v", new ExtentRecord((1 << 20) - 100, 4096, 1, 0))).Result.Code);
        Assert.Equal(ResultCode.NotFound, Run(m, new MapExtentCommand("v", new ExtentRecord(8192, 4096, 9, 0))).Result.Code);
        Assert.True(Run(m, new MapExtentCommand("v", new ExtentRecord(8192, 4096, 2, 0))).Result.IsOk);
        Assert.Equal(ResultCode.Conflict, Run(m, new ResizeVolumeCommand("v", 10_000)).Result.Code);

        Assert.True(Run(m, new CreateSnapshotCommand("v", "s1")).Result.IsOk);
        Assert.True(Run(m, new UnmapExtentCommand("v", 0)).Result.IsOk);
        Assert.Single(m.GetVolume("v")!.Extents);
        Assert.Equal(2, m.GetSnapshot("v", "s1")!.Extents.Count);
        Assert.Equal(ResultCode.Conflict, Run(m, new DeleteVolumeCommand("v")).Result.Code);
        Assert.Equal(ResultCode.Conflict, Run(m, new DeletePoolCommand("p")).Result.Code);
        Assert.True(Run(m, new DeleteSnapshotCommand("v", "s1")).Result.IsOk);
        Assert.True(Run(m, new DeleteVolumeCommand("v")).Result.IsOk);
        Assert.True(Run(m, new DeletePoolCommand("p")).Result.IsOk);
        Assert.Equal(0, m.Count);
    }

    [Fact]
    public void A_transaction_decision_is_final()
    {
        var m = new MetadataStateMachine();
        Assert.True(Run(m, new BeginTransactionCommand("t1", ["array-1", "array-2"])).Result.IsOk);
        Assert.Equal(ResultCode.Conflict, Run(m, new ForgetTransactionCommand("t1")).Result.Code);
        Assert.True(Run(m, new DecideTransactionCommand("t1", Commit: true)).Result.IsOk);
        Assert.True(Run(m, new DecideTransactionCommand("t1", Commit: true)).Result.IsOk);
        Assert.Equal(ResultCode.Conflict, Run(m, new DecideTransactionCommand("t1", Commit: false)).Result.Code);
        Assert.Equal(TransactionState.Committed, m.GetTransaction("t1")!.State);
        Assert.True(Run(m, new ForgetTransactionCommand("t1")).Result.IsOk);
        Assert.Null(m.GetTransaction("t1"));
    }

    [Fact]
    public void A_device_belongs_to_one_pool_only()
    {
        var m = new MetadataStateMachine();
        Assert.True(Run(m, new CreatePoolCommand("p", [new ArrayRecord(1, "raid6", ["n1:/d0", "n1:/d1"])])).Result.IsOk);
        var clash = Run(m, new CreatePoolCommand("q", [new ArrayRecord(1, "device", ["n1:/d1"])])).Result;
        Assert.Equal(ResultCode.Conflict, clash.Code);
        Assert.Contains("n1:/d1 already belongs to pool p", clash.Message, StringComparison.Ordinal);
        Assert.Null(m.GetPool("q"));
        Assert.True(Run(m, new CreatePoolCommand("q", [new ArrayRecord(1, "device", ["n1:/d2"])])).Result.IsOk);
        Assert.Equal(ResultCode.Conflict, Run(m, new AddArrayMemberCommand("q", 1, "n1:/d0")).Result.Code);
        Assert.True(Run(m, new DeletePoolCommand("p")).Result.IsOk);
        Assert.True(Run(m, new AddArrayMemberCommand("q", 1, "n1:/d0")).Result.IsOk);   // free again once its pool is gone
    }

    [Fact]
    public void Two_volumes_cannot_claim_the_same_physical_bytes_and_a_snapshot_keeps_its_own()
    {
        var m = new MetadataStateMachine();
        Assert.True(Run(m, new CreatePoolCommand("p", [new ArrayRecord(1, "raid6", ["d0", "d1", "d2", "d3"])])).Result.IsOk);
        Assert.True(Run(m, new CreateVolumeCommand("a", "p", 1 << 20)).Result.IsOk);
        Assert.True(Run(m, new CreateVolumeCommand("b", "p", 1 << 20)).Result.IsOk);
        Assert.True(Run(m, new MapExtentCommand("a", new ExtentRecord(0, 8192, 1, 65536))).Result.IsOk);

        var clash = Run(m, new MapExtentCommand("b", new ExtentRecord(0, 4096, 1, 69632))).Result;   // inside a's bytes
        Assert.Equal(ResultCode.Conflict, clash.Code);
        Assert.Contains("volume a", clash.Message, StringComparison.Ordinal);
        Assert.Equal(ResultCode.Conflict, Run(m, new MapExtentCommand("a", new ExtentRecord(65536, 8192, 1, 61440))).Result.Code);   // a again, overlapping its own
        Assert.True(Run(m, new MapExtentCommand("b", new ExtentRecord(0, 4096, 1, 73728))).Result.IsOk);   // just after

        Assert.True(Run(m, new CreateSnapshotCommand("a", "s")).Result.IsOk);
        Assert.True(Run(m, new UnmapExtentCommand("a", 0)).Result.IsOk);
        var held = Run(m, new MapExtentCommand("b", new ExtentRecord(8192, 4096, 1, 65536))).Result;   // the snapshot still holds them
        Assert.Equal(ResultCode.Conflict, held.Code);
        Assert.Contains("snapshot a@s", held.Message, StringComparison.Ordinal);
        Assert.True(Run(m, new DeleteSnapshotCommand("a", "s")).Result.IsOk);
        Assert.True(Run(m, new MapExtentCommand("b", new ExtentRecord(8192, 4096, 1, 65536))).Result.IsOk);
    }

    [Fact]
    public void A_commit_applies_the_transactions_changes_in_the_same_log_entry_all_or_none()
    {
        var m = new MetadataStateMachine();
        Assert.True(Run(m, new CreatePoolCommand("p", [new ArrayRecord(1, "raid6", ["d0", "d1", "d2", "d3"])])).Result.IsOk);
        MetadataCommand[] changes = [new CreateVolumeCommand("v", "p", 1 << 20), new MapExtentCommand("v", new ExtentRecord(0, 4096, 1, 0)), new PutCommand("note", B("x"))];
        Assert.True(Run(m, new BeginTransactionCommand("t1", ["p"]) { Changes = changes }).Result.IsOk);
        Assert.Null(m.GetVolume("v"));   // nothing happens before the decision
        Assert.Equal(3, m.GetTransaction("t1")!.Changes.Count);   // but a recovering participant can read what is intended

        var (committed, events) = Run(m, new DecideTransactionCommand("t1", Commit: true));
        Assert.True(committed.IsOk);
        Assert.Single(m.GetVolume("v")!.Extents);
        Assert.Equal(TransactionState.Committed, m.GetTransaction("t1")!.State);
        Assert.Equal(["volumes/v", "volumes/v", "note", "tx/t1"], events.Select(e => e.Key));
        Assert.Equal(committed.Revision, m.Revision);

        // A change that fails (the extent is taken now) undoes the ones before it; the transaction stays pending.
        long revision = m.Revision;
        MetadataCommand[] clashing = [new CreateVolumeCommand("w", "p", 1 << 20), new PutCommand("note", B("y")), new MapExtentCommand("w", new ExtentRecord(0, 4096, 1, 0))];
        Assert.True(Run(m, new BeginTransactionCommand("t2", ["p"]) { Changes = clashing }).Result.IsOk);
        var (refused, none) = Run(m, new DecideTransactionCommand("t2", Commit: true));
        Assert.Equal(ResultCode.Conflict, refused.Code);
        Assert.Contains("change 2 (MapExtentCommand)", refused.Message, StringComparison.Ordinal);
        Assert.Empty(none);
        Assert.Null(m.GetVolume("w"));
        Assert.Equal("x", Encoding.UTF8.GetString(m.Read("note").Value.Span));
        Assert.Equal(revision + 1, m.Revision);   // only the begin
        Assert.Equal(TransactionState.Pending, m.GetTransaction("t2")!.State);
        Assert.True(Run(m, new DecideTransactionCommand("t2", Commit: false)).Result.IsOk);   // abort applies nothing
        Assert.Null(m.GetVolume("w"));
        Assert.True(Run(m, new ForgetTransactionCommand("t2")).Result.IsOk);

        var nested = Run(m, new BeginTransactionCommand("t3", ["p"]) { Changes = [new DecideTransactionCommand("t1", true)] }).Result;
        Assert.Equal(ResultCode.Invalid, nested.Code);
    }

    [Fact]
    public void Transaction_changes_survive_the_codec_and_records_written_before_them_still_decode()
    {
        var begin = new BeginTransactionCommand("t", ["p", "q"]) { Changes = [new CreateVolumeCommand("v", "p", 5), new DeleteCommand("k", 3)] };
        var back = (BeginTransactionCommand)MetadataCodec.DecodeCommand(MetadataCodec.EncodeCommand(begin));
        Assert.Equal(begin.Changes, back.Changes);
        var record = new TransactionRecord("t", ["p"], TransactionState.Pending) { Changes = begin.Changes };
        Assert.Equal(record.Changes, MetadataCodec.DecodeTransaction(MetadataCodec.EncodeTransaction(record)).Changes);

        // The format before changes: id, participants, state, and nothing after.
        byte[] old = MetadataCodec.EncodeTransaction(new TransactionRecord("t", ["p"], TransactionState.Committed));
        old = old[..^4];   // drop the change count this build writes
        var decoded = MetadataCodec.DecodeTransaction(old);
        Assert.Equal(TransactionState.Committed, decoded.State);
        Assert.Empty(decoded.Changes);
    }

    [Property(MaxTest = 100)]
    public Property Replicas_applying_the_same_commands_hold_the_same_bytes_and_snapshots_restore_them(int seed) =>
        Prop.ToProperty(SameBytes(seed));

    private bool SameBytes(int seed)
    {
        var rng = new Random(seed);
        var commands = new List<byte[]>();
        for (int i = 0; i < 60; i++)
        {
            string key = $"k{rng.Next(5)}";
            MetadataCommand c = rng.Next(5) switch
            {
                0 => new DeleteCommand(key),
                1 => new PutCommand(key, B(i.ToString(System.Globalization.CultureInfo.InvariantCulture)), rng.Next(3) - 1),
                2 => new CreateVolumeCommand($"v{rng.Next(3)}", "p", 1 << 20),
                3 => new CreatePoolCommand("p", [new ArrayRecord(1, "raid1", ["a", "b"])]),
                _ => new MapExtentCommand($"v{rng.Next(3)}", new ExtentRecord(rng.Next(8) * 4096L, 4096, 1, 0)),
            };
            commands.Add(MetadataCodec.Encode(new Envelope(1 + rng.Next(3), i + 1, c)));
        }
        var a = new MetadataStateMachine();
        var b = new MetadataStateMachine();
        MetadataStateMachine? restored = null;
        var events = new List<WatchEvent>();
        for (int i = 0; i < commands.Count; i++)
        {
            a.Apply(commands[i], events);
            b.Apply(commands[i], events);
            if (i == 30)
                restored = MetadataStateMachine.Restore(a.Serialize());
            else if (i > 30)
                restored!.Apply(commands[i], events);
        }
        return a.Serialize().AsSpan().SequenceEqual(b.Serialize()) && a.Checksum() == restored!.Checksum();
    }

    [Fact]
    public void Every_command_survives_the_codec()
    {
        MetadataCommand[] all =
        [
            new PutCommand("k", B("v"), 3), new DeleteCommand("k", 2), new ReadCommand("k"),
            new CreatePoolCommand("p", [new ArrayRecord(1, "raid6", ["a", "b"])]), new AddArrayMemberCommand("p", 1, "c"),
            new RemoveArrayMemberCommand("p", 1, "c"), new DeletePoolCommand("p"), new CreateVolumeCommand("v", "p", 5),
            new ResizeVolumeCommand("v", 6), new DeleteVolumeCommand("v"), new MapExtentCommand("v", new ExtentRecord(1, 2, 3, 4)),
            new UnmapExtentCommand("v", 1), new CreateSnapshotCommand("v", "s"), new DeleteSnapshotCommand("v", "s"),
            new BeginTransactionCommand("t", ["x", "y"]), new DecideTransactionCommand("t", true), new ForgetTransactionCommand("t"),
        ];
        foreach (var c in all)
        {
            var back = MetadataCodec.Decode(MetadataCodec.Encode(new Envelope(5, 6, c)));
            Assert.Equal(5, back.Session);
            Assert.Equal(6, back.Seq);
            Assert.Equal(c.GetType(), back.Command.GetType());
            Assert.Equal(MetadataCodec.Encode(new Envelope(5, 6, c)), MetadataCodec.Encode(back));
        }
    }
}
