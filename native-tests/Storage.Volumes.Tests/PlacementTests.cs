namespace Storage.Volumes.Tests;

/// <summary>Imbalance of each placement policy over 10 000 segments and 7 pools, and the read balancer's split.</summary>
public class PlacementTests
{
    private const long Segment = 1L << 30;

    private static PoolCandidate[] Pools(params long[] freeSegments)
        => [.. freeSegments.Select((f, i) => new PoolCandidate($"pool{i}", f * Segment))];

    private static int[] Counts(IReadOnlyList<string[]> placed, int pools, int copy = 0)
    {
        var counts = new int[pools];
        foreach (var segment in placed)
            counts[int.Parse(segment[copy].AsSpan(4), System.Globalization.CultureInfo.InvariantCulture)]++;
        return counts;
    }

    [Theory]
    [InlineData(0)]
    [InlineData(12345)]
    public void Round_robin_spreads_10000_segments_over_7_pools_within_one(int seed)
    {
        var placed = new Placement(PlacementPolicy.RoundRobin, seed).Place(Pools(20_000, 20_000, 20_000, 20_000, 20_000, 20_000, 20_000), 0, 10_000, 1, Segment);
        var counts = Counts(placed, 7);
        Assert.True(counts.Max() - counts.Min() <= 1, string.Join(", ", counts));
        // n = (i + c) mod N: consecutive segments on consecutive pools.
        var first = int.Parse(placed[0][0].AsSpan(4), System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal($"pool{(first + 1) % 7}", placed[1][0]);
    }

    [Fact]
    public void Random_placement_passes_a_chi_square_test_at_p_above_0_01_for_nearly_every_seed()
    {
        // 6 degrees of freedom: chi-square above 16.81 has probability 0.01 for a fair spread.
        const double critical = 16.812;
        int rejected = 0;
        const int seeds = 200;
        for (int seed = 1; seed <= seeds; seed++)
        {
            var counts = Counts(new Placement(PlacementPolicy.Random, seed).Place(Pools(20_000, 20_000, 20_000, 20_000, 20_000, 20_000, 20_000), 0, 10_000, 1, Segment), 7);
            double expected = 10_000 / 7.0;
            double chi = counts.Sum(c => (c - expected) * (c - expected) / expected);
            rejected += chi > critical ? 1 : 0;
        }
        // About 1 % of fair seeds exceed it by chance; a biased generator fails far more often.
        Assert.True(rejected <= seeds * 4 / 100, $"{rejected} of {seeds} seeds rejected at p = 0.01");
    }

    [Fact]
    public void Weighted_placement_follows_free_space_within_5_percent()
    {
        long[] free = [1000, 2000, 3000, 4000, 5000, 6000, 7000];
        var counts = Counts(new Placement(PlacementPolicy.WeightedByFreeSpace).Place(Pools(free), 0, 10_000, 1, Segment), 7);
        double total = free.Sum();
        for (int pool = 0; pool < 7; pool++)
        {
            double want = 10_000 * free[pool] / total;
            Assert.True(Math.Abs(counts[pool] - want) <= 0.05 * want, $"pool{pool}: {counts[pool]} segments, {want:F0} by weight");
        }
    }

    [Fact]
    public void Least_loaded_fills_the_idle_pools_first_and_then_keeps_them_level()
    {
        var pools = new[] { new PoolCandidate("pool0", 100 * Segment, Load: 10), new PoolCandidate("pool1", 100 * Segment, Load: 0), new PoolCandidate("pool2", 100 * Segment, Load: 4) };
        var placed = new Placement(PlacementPolicy.LeastLoaded).Place(pools, 0, 20, 1, Segment);
        Assert.Equal(Enumerable.Repeat("pool1", 4), placed.Take(4).Select(p => p[0]));   // 0 → 4 before pool2 gets one
        var counts = Counts(placed, 3);
        int[] loads = [10 + counts[0], 0 + counts[1], 4 + counts[2]];   // 34 in all: 12, 11, 11
        Assert.True(loads.Max() - loads.Min() <= 1, string.Join(", ", loads));
    }

    [Theory]
    [InlineData(PlacementPolicy.RoundRobin)]
    [InlineData(PlacementPolicy.Random)]
    [InlineData(PlacementPolicy.WeightedByFreeSpace)]
    [InlineData(PlacementPolicy.LeastLoaded)]
    public void Mirror_copies_land_on_distinct_pools_and_full_pools_are_skipped(PlacementPolicy policy)
    {
        var placed = new Placement(policy, 7).Place(Pools(1000, 0, 1000, 1000), 0, 500, 2, Segment);   // pool1 is full
        Assert.All(placed, s => Assert.NotEqual(s[0], s[1]));
        Assert.DoesNotContain(placed, s => s.Contains("pool1"));
    }

    [Fact]
    public void Impossible_requests_say_what_is_missing()
    {
        var placement = new Placement(PlacementPolicy.RoundRobin);
        var tooFew = Assert.Throws<PlacementException>(() => placement.Place(Pools(10), 0, 1, 2, Segment));
        Assert.Contains("2 copies of each segment need 2 pools", tooFew.Message, StringComparison.Ordinal);
        var full = Assert.Throws<PlacementException>(() => placement.Place(Pools(1, 1), 0, 3, 1, Segment));
        Assert.Contains("No pool has", full.Message, StringComparison.Ordinal);
        Assert.Throws<PlacementException>(() => placement.Place([new PoolCandidate("a", Segment), new PoolCandidate("a", Segment)], 0, 1, 1, Segment));
    }

    [Theory]
    [InlineData(ReadPolicy.RoundRobin)]
    [InlineData(ReadPolicy.Random)]
    [InlineData(ReadPolicy.LeastQueueDepth)]
    public void Reads_of_a_mirror_split_evenly_when_both_copies_answer_alike(ReadPolicy policy)
    {
        var balancer = new ReadBalancer(policy, 2, seed: 3);
        for (int i = 0; i < 10_000; i++)
            balancer.End(balancer.Begin());
        var served = balancer.Served;
        Assert.InRange(served[0], 4_700, 5_300);
        Assert.Equal(10_000, served.Sum());
    }

    [Fact]
    public void Least_queue_depth_sends_reads_away_from_a_slow_copy()
    {
        var balancer = new ReadBalancer(ReadPolicy.LeastQueueDepth, 2);
        // Copy 0 is slow: its reads stay in flight; copy 1 answers at once.
        int slow = 0;
        for (int i = 0; i < 1000; i++)
        {
            int copy = balancer.Begin();
            if (copy == 0 && slow < 8)
                slow++;
            else
                balancer.End(copy);
        }
        Assert.True(balancer.Served[1] > 990, $"copy 1 served {balancer.Served[1]} of 1000");
    }
}
