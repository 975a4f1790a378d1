using System.Numerics;

namespace Storage.Parity;

/// <summary>A set of stripe row indices 0..255, as a 256-bit mask: the cache key of a decode plan.</summary>
internal readonly struct ErasureSet : IEquatable<ErasureSet>
{
    private readonly ulong _w0, _w1, _w2, _w3;

    private ErasureSet(ulong w0, ulong w1, ulong w2, ulong w3) => (_w0, _w1, _w2, _w3) = (w0, w1, w2, w3);

    public int Count => BitOperations.PopCount(_w0) + BitOperations.PopCount(_w1) + BitOperations.PopCount(_w2) + BitOperations.PopCount(_w3);

    public bool Contains(int row) => ((row >> 6) switch { 0 => _w0, 1 => _w1, 2 => _w2, _ => _w3 } & (1UL << (row & 63))) != 0;

    public ErasureSet With(int row)
    {
        ulong bit = 1UL << (row & 63);
        return (row >> 6) switch
        {
            0 => new(_w0 | bit, _w1, _w2, _w3),
            1 => new(_w0, _w1 | bit, _w2, _w3),
            2 => new(_w0, _w1, _w2 | bit, _w3),
            _ => new(_w0, _w1, _w2, _w3 | bit),
        };
    }

    /// <summary>Builds the set, rejecting indices outside 0..rowCount-1 and repeats.</summary>
    public static ErasureSet From(ReadOnlySpan<int> rows, int rowCount, string paramName)
    {
        var set = default(ErasureSet);
        foreach (int row in rows)
        {
            if ((uint)row >= (uint)rowCount)
                throw new ArgumentOutOfRangeException(paramName, row, $"Lost chunk index {row} is outside the stripe's rows 0..{rowCount - 1}.");
            if (set.Contains(row))
                throw new ArgumentException($"Lost chunk index {row} is listed twice.", paramName);
            set = set.With(row);
        }
        return set;
    }

    public bool Equals(ErasureSet other) => _w0 == other._w0 && _w1 == other._w1 && _w2 == other._w2 && _w3 == other._w3;

    public override bool Equals(object? obj) => obj is ErasureSet other && Equals(other);

    public override int GetHashCode() => HashCode.Combine(_w0, _w1, _w2, _w3);
}
