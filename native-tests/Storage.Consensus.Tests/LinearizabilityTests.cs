using Storage.Consensus.Tests.Simulation;

namespace Storage.Consensus.Tests;

public class LinearizabilityTests
{
    private static HistoryOp Put(int c, long v, long from, long to) => new(c, 0, KvOp.Put, v, 0, from, to, 0);

    private static HistoryOp Get(int c, long v, long from, long to) => new(c, 0, KvOp.Get, 0, 0, from, to, v);

    private static HistoryOp Cas(int c, long a, long b, bool ok, long from, long to) => new(c, 0, KvOp.Cas, a, b, from, to, ok ? 1 : 0);

    [Fact]
    public void Concurrent_operations_may_take_effect_in_either_order()
    {
        Assert.True(Linearizability.Check([Put(1, 1, 0, 10), Put(2, 2, 1, 9), Get(3, 1, 11, 12)], out _));
        Assert.True(Linearizability.Check([Put(1, 1, 0, 10), Put(2, 2, 1, 9), Get(3, 2, 11, 12)], out _));
        Assert.True(Linearizability.Check([Put(1, 5, 0, 10), Get(2, 0, 1, 2), Get(3, 5, 3, 4)], out _));
    }

    [Fact]
    public void Stale_read_after_a_completed_write_is_rejected()
    {
        Assert.False(Linearizability.Check([Put(1, 1, 0, 1), Put(1, 2, 2, 3), Get(2, 1, 4, 5)], out string? why));
        Assert.Contains("key 0", why);
    }

    [Fact]
    public void Lost_acknowledged_write_is_rejected_and_an_unacknowledged_one_may_vanish()
    {
        Assert.False(Linearizability.Check([Put(1, 7, 0, 1), Get(2, 0, 2, 3)], out _));
        Assert.True(Linearizability.Check([Put(1, 7, 0, long.MaxValue), Get(2, 0, 2, 3)], out _));
        Assert.True(Linearizability.Check([Put(1, 7, 0, long.MaxValue), Get(2, 0, 2, 3), Get(2, 7, 4, 5)], out _));
        Assert.False(Linearizability.Check([Put(1, 7, 0, long.MaxValue), Get(2, 7, 2, 3), Get(2, 0, 4, 5)], out _));
    }

    [Fact]
    public void Compare_and_set_results_must_agree_with_the_order()
    {
        Assert.True(Linearizability.Check([Put(1, 1, 0, 1), Cas(2, 1, 2, true, 2, 5), Cas(3, 1, 3, false, 3, 6), Get(1, 2, 7, 8)], out _));
        Assert.False(Linearizability.Check([Put(1, 1, 0, 1), Cas(2, 1, 2, true, 2, 3), Cas(3, 1, 3, true, 4, 5)], out _));
    }

    [Fact]
    public void Keys_are_checked_independently()
    {
        var ok = new HistoryOp(1, 1, KvOp.Put, 4, 0, 0, 1, 0);
        var bad = new HistoryOp(2, 2, KvOp.Get, 0, 0, 0, 1, 9);
        Assert.False(Linearizability.Check([ok, bad], out string? why));
        Assert.Contains("key 2", why);
    }
}
