namespace Storage.Raid;

/// <summary>What a write of <c>length</c> bytes at <c>start</c> in a stripe covers, in segment coordinates.</summary>
internal readonly struct StripeRange
{
    private readonly int _start, _length, _chunk;

    public StripeRange(int start, int length, int chunk)
    {
        _start = start;
        _length = length;
        _chunk = chunk;
        First = start / chunk;
        Last = (start + length - 1) / chunk;
        Lo = First == Last ? start % chunk : 0;
        Width = First == Last ? length : chunk;
    }

    /// <summary>First and last data rows touched.</summary>
    public int First { get; }

    public int Last { get; }

    /// <summary>Where the segment starts in each chunk, and its width.</summary>
    public int Lo { get; }

    public int Width { get; }

    public bool Touches(int row) => row >= First && row <= Last;

    /// <summary>Bytes of data row <paramref name="row"/> that this write replaces, in segment coordinates.</summary>
    public (int From, int To) Covered(int row)
    {
        if (row < First || row > Last)
            return (0, 0);
        int chunkStart = row * _chunk;
        return (Math.Max(_start, chunkStart) - chunkStart - Lo, Math.Min(_start + _length, chunkStart + _chunk) - chunkStart - Lo);
    }

    /// <summary>True when data row <paramref name="row"/> (of <paramref name="dataCount"/>) is replaced entirely.</summary>
    public bool FullyCovers(int row, int dataCount) => row < dataCount && Covered(row) == (0, Width);

    /// <summary>Copies the write's bytes for <paramref name="row"/> into the segment.</summary>
    public void Overlay(int row, ReadOnlySpan<byte> data, StripeBuffer segment)
    {
        var (from, to) = Covered(row);
        int source = row * _chunk + Lo + from - _start;
        data.Slice(source, to - from).CopyTo(segment.Row(row).Span[from..to]);
    }
}
