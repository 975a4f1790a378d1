using Storage.Nbd.Client;

namespace Storage.Nbd.Tests;

/// <summary>The copies an <see cref="NbdClientDevice"/> keeps to replay after a reconnection.</summary>
public sealed class UnflushedWritesTests
{
    /// <summary>
    /// A replay may still be sending a copy when a flush lets go of it; a later write must not reuse that memory
    /// (pooled buffers did: the replay then sent the new write's bytes at the old offset).
    /// </summary>
    [Fact]
    public void A_copy_being_replayed_keeps_its_bytes_after_a_flush_lets_go_of_it()
    {
        var writes = new UnflushedWrites();
        var first = Enumerable.Repeat((byte)0xA1, 4096).ToArray();
        UnflushedWrites.Acknowledged(writes.Write(0, first));
        var replaying = writes.Snapshot();
        writes.Flushed(writes.Covered());
        Assert.Equal(0, writes.Bytes);
        UnflushedWrites.Acknowledged(writes.Write(8192, Enumerable.Repeat((byte)0xB2, 4096).ToArray()));
        Assert.True(replaying[0].Data!.AsSpan(0, replaying[0].Length).SequenceEqual(first), "the replayed copy was overwritten by a later write");
    }

    [Fact]
    public void A_flush_covers_what_was_acknowledged_before_it_was_sent_and_nothing_after()
    {
        var writes = new UnflushedWrites();
        UnflushedWrites.Acknowledged(writes.Write(0, new byte[512]));
        var inFlight = writes.Write(512, new byte[512]);
        var covered = writes.Covered();
        UnflushedWrites.Acknowledged(inFlight);
        writes.Flushed(covered);
        Assert.Equal([(512L, 512)], writes.Snapshot().Select(w => (w.Offset, w.Length)));
        writes.Failed(inFlight);
        Assert.Empty(writes.Snapshot());
    }
}
