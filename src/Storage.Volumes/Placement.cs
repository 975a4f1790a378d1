namespace Storage.Volumes;

/// <summary>How new segments of a volume are spread over pools (chosen per volume).</summary>
public enum PlacementPolicy
{
    /// <summary>Segment i goes to pool (i + c) mod N, c fixed per volume: as even as it gets.</summary>
    RoundRobin,

    /// <summary>Segment i goes to pool rand() mod N.</summary>
    Random,

    /// <summary>Pools get segments in proportion to their free space (smooth weighted round-robin over a snapshot of it).</summary>
    WeightedByFreeSpace,

    /// <summary>Each segment goes to the pool with the least load (segments being written, queue depth), counting those just placed.</summary>
    LeastLoaded,
}

/// <summary>A pool as placement sees it: its name, free bytes and current load.</summary>
public sealed record PoolCandidate(string Name, long FreeBytes, int Load = 0);

/// <summary>The request or the pools do not allow a placement (too few pools for the copies, no room).</summary>
public sealed class PlacementException(string message) : Exception(message);

/// <summary>
/// Chooses pools for new segments. A mirrored segment (<c>copies</c> = 2) gets distinct pools, the second chosen by
/// the same policy among the others. Deterministic for a given seed, so a decision can be replayed and tested.
/// </summary>
public sealed class Placement
{
    private readonly PlacementPolicy _policy;
    private readonly Random _random;
    private readonly int _start;

    /// <param name="policy">The policy.</param>
    /// <param name="seed">Seeds the random policy and round-robin's per-volume offset c.</param>
    public Placement(PlacementPolicy policy, int seed = 0)
    {
        _policy = policy;
        _random = new Random(seed);
        _start = (int)((uint)seed % 1_000_003);
    }

    /// <summary>
    /// The pools (by name) of segments <paramref name="first"/> … <paramref name="first"/> + <paramref name="count"/> − 1,
    /// each with <paramref name="copies"/> distinct pools that have <paramref name="segmentBytes"/> free for it.
    /// </summary>
    /// <exception cref="PlacementException">Fewer usable pools than copies, or not enough free space.</exception>
    public IReadOnlyList<string[]> Place(IReadOnlyList<PoolCandidate> pools, long first, int count, int copies, long segmentBytes)
    {
        ArgumentNullException.ThrowIfNull(pools);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfLessThan(copies, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(segmentBytes, 1);
        if (pools.Count < copies)
            throw new PlacementException($"{copies} copies of each segment need {copies} pools; {pools.Count} given.");
        if (pools.Select(p => p.Name).Distinct(StringComparer.Ordinal).Count() != pools.Count)
            throw new PlacementException("A pool is named twice.");
        var free = pools.Select(p => p.FreeBytes).ToArray();
        var load = pools.Select(p => p.Load).ToArray();
        var credit = new long[pools.Count];   // smooth weighted round-robin state
        var weights = pools.Select(p => Math.Max(0, p.FreeBytes / segmentBytes)).ToArray();
        var placed = new List<string[]>(count);
        for (int i = 0; i < count; i++)
        {
            var chosen = new int[copies];
            for (int copy = 0; copy < copies; copy++)
            {
                int pool = Choose(first + i, copy, chosen.AsSpan(0, copy), free, load, credit, weights, segmentBytes);
                if (pool < 0)
                    throw new PlacementException($"No pool has {segmentBytes} bytes free for copy {copy + 1} of segment {first + i} " +
                        $"({string.Join(", ", pools.Select((p, n) => $"{p.Name}: {free[n]} free"))}); add space or pools, or make the volume smaller.");
                chosen[copy] = pool;
                free[pool] -= segmentBytes;
                load[pool]++;
            }
            placed.Add([.. chosen.Select(n => pools[n].Name)]);
        }
        return placed;
    }

    private int Choose(long segment, int copy, ReadOnlySpan<int> taken, long[] free, int[] load, long[] credit, long[] weights, long segmentBytes)
    {
        int n = free.Length;
        bool Usable(int pool, ReadOnlySpan<int> already) => free[pool] >= segmentBytes && already.IndexOf(pool) < 0;
        switch (_policy)
        {
            case PlacementPolicy.RoundRobin:
            {
                // (i + c) mod N, then the next usable pool after it (the mirror copy goes to the next one).
                int home = (int)((segment + _start + copy) % n);
                for (int step = 0; step < n; step++)
                {
                    int pool = (home + step) % n;
                    if (Usable(pool, taken))
                        return pool;
                }
                return -1;
            }
            case PlacementPolicy.Random:
            {
                int usable = 0;
                for (int pool = 0; pool < n; pool++)
                    usable += Usable(pool, taken) ? 1 : 0;
                if (usable == 0)
                    return -1;
                int pick = _random.Next(usable);
                for (int pool = 0; pool < n; pool++)
                {
                    if (Usable(pool, taken) && pick-- == 0)
                        return pool;
                }
                return -1;
            }
            case PlacementPolicy.WeightedByFreeSpace:
            {
                // Smooth weighted round-robin: every usable pool gains its weight, the richest is chosen and pays the total.
                long total = 0;
                int best = -1;
                for (int pool = 0; pool < n; pool++)
                {
                    if (!Usable(pool, taken) || weights[pool] == 0)
                        continue;
                    credit[pool] += weights[pool];
                    total += weights[pool];
                    if (best < 0 || credit[pool] > credit[best])
                        best = pool;
                }
                if (best >= 0)
                    credit[best] -= total;
                return best;
            }
            default:
            {
                int best = -1;
                for (int pool = 0; pool < n; pool++)
                {
                    if (Usable(pool, taken) && (best < 0 || load[pool] < load[best]))
                        best = pool;
                }
                return best;
            }
        }
    }
}
