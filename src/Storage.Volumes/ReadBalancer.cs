namespace Storage.Volumes;

/// <summary>Which copy of a mirrored segment serves a read.</summary>
public enum ReadPolicy
{
    /// <summary>Copies in turn.</summary>
    RoundRobin,

    /// <summary>A copy at random.</summary>
    Random,

    /// <summary>The copy with the fewest reads in flight (ties in turn).</summary>
    LeastQueueDepth,
}

/// <summary>
/// Picks the copy for each read of a mirrored segment and counts reads in flight per copy (for
/// <see cref="ReadPolicy.LeastQueueDepth"/> and for reporting the split). Thread-safe; <see cref="Begin"/> and
/// <see cref="End"/> allocate nothing.
/// </summary>
public sealed class ReadBalancer
{
    private readonly ReadPolicy _policy;
    private readonly int[] _inFlight;
    private readonly long[] _served;
    private readonly Random _random;
    private int _next = -1;

    /// <param name="policy">How a copy is chosen.</param>
    /// <param name="copies">Copies of the segment (2 for a mirror).</param>
    /// <param name="seed">Seeds <see cref="ReadPolicy.Random"/>.</param>
    public ReadBalancer(ReadPolicy policy, int copies, int seed = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(copies, 1);
        _policy = policy;
        _inFlight = new int[copies];
        _served = new long[copies];
        _random = new Random(seed);
    }

    /// <summary>Reads each copy has served.</summary>
    public IReadOnlyList<long> Served => [.. Enumerable.Range(0, _served.Length).Select(i => Interlocked.Read(ref _served[i]))];

    /// <summary>Chooses a copy for a read and counts it in flight until <see cref="End"/>.</summary>
    public int Begin()
    {
        int copies = _inFlight.Length;
        int turn = (int)((uint)Interlocked.Increment(ref _next) % (uint)copies);
        int chosen = _policy switch
        {
            ReadPolicy.RoundRobin => turn,
            ReadPolicy.Random => RandomCopy(copies),
            _ => LeastLoaded(turn),
        };
        Interlocked.Increment(ref _inFlight[chosen]);
        Interlocked.Increment(ref _served[chosen]);
        return chosen;
    }

    /// <summary>The read on <paramref name="copy"/> finished.</summary>
    public void End(int copy) => Interlocked.Decrement(ref _inFlight[copy]);

    private int RandomCopy(int copies)
    {
        lock (_random)
            return _random.Next(copies);
    }

    private int LeastLoaded(int turn)
    {
        int best = turn;
        for (int step = 1; step < _inFlight.Length; step++)
        {
            int copy = (turn + step) % _inFlight.Length;
            if (Volatile.Read(ref _inFlight[copy]) < Volatile.Read(ref _inFlight[best]))
                best = copy;
        }
        return best;
    }
}
