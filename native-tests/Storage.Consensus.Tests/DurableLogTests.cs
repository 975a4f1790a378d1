using Storage.Native;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Storage.Consensus;

namespace Storage.Consensus.Tests;

public class DurableLogTests
{
    private static Value V(string s) => Value.FromCommands([System.Text.Encoding.UTF8.GetBytes(s)]);

    private static Ready R(IReadOnlyList<LogRecord> records, HardState? hard = null, Snapshot? snap = null) => new()
    {
        Records = records,
        HardState = hard,
        Snapshot = snap,
        Messages = [],
        Committed = [],
        MustSync = true,
    };

    [Fact]
    public void Crc32C_matches_the_standard_check_value()
    {
        Assert.Equal(0xE3069283u, Crc32C.Compute("123456789"u8));
        Assert.Equal(0u, Crc32C.Compute([]));
        var data = Enumerable.Range(0, 1000).Select(i => (byte)(i * 7)).ToArray();
        Assert.Equal(Crc32C.Compute(data), ~Crc32C.Append(Crc32C.Append(~0u, data.AsSpan(0, 333)), data.AsSpan(333)));
    }

    [Fact]
    public void Reopened_log_returns_the_latest_hard_state_and_record_per_slot()
    {
        var dir = new MemoryLogDirectory();
        using (var log = DurableLog.Open(dir, 2, bootstrap: true, freshIncarnation: 5))
        {
            Assert.Equal(RecoveryOutcome.New, log.Outcome);
            Assert.Equal(0, log.Incarnation);
            log.Persist(R([new(1, new Ballot(1, 1), V("a")), new(2, new Ballot(1, 1), V("b"))], new HardState(new Ballot(1, 1), 0)));
            log.Persist(R([new(2, new Ballot(2, 3), V("c"))], new HardState(new Ballot(2, 3), 1)));
        }
        using var again = DurableLog.Open(dir, 2, bootstrap: true, freshIncarnation: 5);
        Assert.Equal(RecoveryOutcome.Recovered, again.Outcome);
        var state = again.State;
        Assert.Equal(new HardState(new Ballot(2, 3), 1), state.HardState);
        Assert.Equal(V("a"), state.Records.Single(r => r.Slot == 1).Value);
        Assert.Equal(new LogRecord(2, new Ballot(2, 3), V("c")), state.Records.Single(r => r.Slot == 2));
    }

    [Fact]
    public void Torn_tail_is_cut_and_synced_records_survive()
    {
        var dir = new MemoryLogDirectory();
        var log = DurableLog.Open(dir, 1, true, 9);
        log.Persist(R([new(1, new Ballot(1, 1), V("synced"))], new HardState(new Ballot(1, 1), 0)));
        log.Append(R([new(2, new Ballot(1, 1), V("volatile-" + new string('x', 100)))]));
        dir.Crash(new Random(3)); // keeps a strict prefix of the unsynced frame with this seed
        var again = DurableLog.Open(dir, 1, true, 9);
        Assert.Equal(RecoveryOutcome.Recovered, again.Outcome);
        Assert.True(again.TornBytesCut > 0);
        Assert.Equal([1L], again.State.Records.Select(r => r.Slot));
        // The cut is durable: a second open sees a clean log.
        Assert.Equal(0, DurableLog.Open(dir, 1, true, 9).TornBytesCut);
    }

    [Fact]
    public void Corrupt_record_with_valid_ones_after_it_resets_to_a_new_incarnation()
    {
        var dir = new MemoryLogDirectory();
        var log = DurableLog.Open(dir, 1, true, 9);
        for (int i = 1; i <= 5; i++)
            log.Persist(R([new(i, new Ballot(1, 1), V($"v{i}"))]));
        var bytes = dir.ReadAll(DurableLog.LogFileName)!;
        var frames = DurableLog.Scan(bytes).Frames;
        var victim = frames[2];
        Assert.True(dir.FlipBit(DurableLog.LogFileName, victim.Offset + 8, victim.Offset + 8 + victim.Length, new Random(1)));
        var again = DurableLog.Open(dir, 1, true, 1234);
        Assert.Equal(RecoveryOutcome.Reset, again.Outcome);
        Assert.Contains("corrupt record", again.ResetReason);
        Assert.Equal(1234, again.Incarnation);
        Assert.Empty(again.State.Records);
        Assert.Equal(default, again.State.HardState);
    }

    [Fact]
    public void Wiped_directory_comes_back_with_the_fresh_incarnation_unless_bootstrapping()
    {
        var dir = new MemoryLogDirectory();
        DurableLog.Open(dir, 1, true, 9).Persist(R([new(1, new Ballot(1, 1), V("a"))]));
        dir.Wipe();
        var log = DurableLog.Open(dir, 1, bootstrap: false, freshIncarnation: 77);
        Assert.Equal(RecoveryOutcome.New, log.Outcome);
        Assert.Equal(77, log.Incarnation);
        Assert.Equal(77, DurableLog.Open(dir, 1, bootstrap: true, freshIncarnation: 99).Incarnation);
    }

    [Fact]
    public void Snapshot_truncates_the_log_and_a_lost_snapshot_resets()
    {
        var dir = new MemoryLogDirectory();
        var log = DurableLog.Open(dir, 1, true, 9);
        for (int i = 1; i <= 50; i++)
            log.Persist(R([new(i, new Ballot(1, 1), V($"value-{i}"))], new HardState(new Ballot(1, 1), i)));
        int before = dir.ReadAll(DurableLog.LogFileName)!.Length;
        log.Persist(R([], snap: new Snapshot(45, Configuration.Initial(3), new byte[] { 1, 2, 3 })));
        Assert.True(dir.ReadAll(DurableLog.LogFileName)!.Length < before / 5);
        var again = DurableLog.Open(dir, 1, true, 9);
        Assert.Equal(45, again.State.Snapshot!.Index);
        Assert.Equal([46L, 47, 48, 49, 50], again.State.Records.Select(r => r.Slot).Order());
        Assert.Equal(new byte[] { 1, 2, 3 }, again.State.Snapshot.Data.ToArray());

        dir.Delete(DurableLog.SnapshotFileName);
        var lost = DurableLog.Open(dir, 1, true, 10);
        Assert.Equal(RecoveryOutcome.Reset, lost.Outcome);
        Assert.Contains("snapshot 45 is missing", lost.ResetReason);
    }

    [Fact]
    public void Directory_of_another_replica_is_refused()
    {
        var dir = new MemoryLogDirectory();
        DurableLog.Open(dir, 1, true, 9).Dispose();
        Assert.Throws<InvalidDataException>(() => DurableLog.Open(dir, 2, true, 9));
    }

    [Fact]
    public void File_directory_round_trips_and_cuts_garbage_after_the_last_record()
    {
        string path = Path.Combine(Path.GetTempPath(), "paxos-log-" + Guid.NewGuid().ToString("N"));
        try
        {
            var dir = new FileLogDirectory(path);
            using (var log = DurableLog.Open(dir, 3, true, 9))
            {
                log.Persist(R([new(1, new Ballot(4, 2), V("on-disk"))], new HardState(new Ballot(4, 2), 1)));
                log.Persist(R([], snap: new Snapshot(1, Configuration.Initial(3), new byte[] { 7 })));
                log.Persist(R([new(2, new Ballot(4, 2), V("after"))]));
            }
            File.AppendAllText(Path.Combine(path, DurableLog.LogFileName), "partial-frame");
            using var again = DurableLog.Open(new FileLogDirectory(path), 3, true, 9);
            Assert.Equal(13, again.TornBytesCut);
            Assert.Equal(new HardState(new Ballot(4, 2), 1), again.State.HardState);
            Assert.Equal(V("after"), again.State.Records.Single().Value);
            Assert.Equal(1, again.State.Snapshot!.Index);
        }
        finally
        {
            Directory.Delete(path, recursive: true);
        }
    }

    [Property(MaxTest = 200)]
    public Property After_a_crash_the_log_holds_every_synced_record_and_a_prefix_of_the_rest(int seed) =>
        Prop.ToProperty(CrashPrefix(seed));

    private static bool CrashPrefix(int seed)
    {
        var rng = new Random(seed);
        var dir = new MemoryLogDirectory();
        var log = DurableLog.Open(dir, 1, true, 9);
        var appended = new List<LogRecord>();
        int synced = 0;
        int n = rng.Next(1, 30);
        for (int i = 1; i <= n; i++)
        {
            var rec = new LogRecord(i, new Ballot(1, 1), V(new string('v', rng.Next(1, 60))));
            log.Append(R([rec]));
            appended.Add(rec);
            if (rng.Next(3) == 0)
            {
                log.Sync();
                synced = i;
            }
        }
        dir.Crash(rng);
        var slots = DurableLog.Open(dir, 1, true, 9).State.Records.Select(r => r.Slot).Order().ToList();
        return slots.Count >= synced && slots.SequenceEqual(Enumerable.Range(1, slots.Count).Select(i => (long)i));
    }

    [Property(MaxTest = 100)]
    public Property Messages_survive_the_wire_codec(NonNegativeInt round, PositiveInt slot, byte[][] commands, bool snapshot) =>
        Prop.ToProperty(RoundTrip(round.Get, slot.Get, commands, snapshot));

    private static bool RoundTrip(int round, int slot, byte[][] commands, bool snapshot)
    {
        var value = commands.Length == 0 ? Value.NoOp : Value.FromCommands([.. commands.Select(c => new ReadOnlyMemory<byte>(c ?? []))]);
        var m = new Message
        {
            Type = MessageType.Promise,
            From = 2,
            FromIncarnation = 77,
            To = 3,
            Ballot = new Ballot(round, 2),
            Slot = slot,
            Commit = slot - 1,
            SnapshotIndex = 4,
            LeaseTick = 99,
            Entries = [new LogRecord(slot, new Ballot(round, 1), value), new LogRecord(slot + 1, Ballot.Zero, Value.FromConfig(Configuration.Initial(5)))],
            Slots = [1, 2, 3],
            Snapshot = snapshot ? new Snapshot(4, Configuration.Initial(3), new byte[] { 9, 8 }) : null,
        };
        var w = new ByteWriter();
        Codec.Write(w, m);
        var r = new ByteReader(w.Written);
        var back = Codec.ReadMessage(ref r);
        return r.End && back.Type == m.Type && back.From == 2 && back.FromIncarnation == 77 && back.To == 3
            && back.Ballot == m.Ballot && back.Slot == slot && back.Commit == m.Commit && back.SnapshotIndex == 4
            && back.LeaseTick == 99 && back.Entries.SequenceEqual(m.Entries) && back.Slots.SequenceEqual(m.Slots)
            && (snapshot ? back.Snapshot!.Index == 4 && back.Snapshot.Data.Span.SequenceEqual(new byte[] { 9, 8 }) && back.Snapshot.Config.Equals(Configuration.Initial(3)) : back.Snapshot is null);
    }
}
