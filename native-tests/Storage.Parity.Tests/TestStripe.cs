using CommunityToolkit.HighPerformance;

namespace Storage.Parity.Tests;

/// <summary>
/// A stripe in one managed array, rows placed at an arbitrary start offset and pitch so kernels
/// see misaligned and aliasing-prone addresses, filled from a seeded RNG.
/// </summary>
internal sealed class TestStripe
{
    private readonly byte[] _buffer;
    private readonly int _offset;
    private readonly int _pitch;

    public TestStripe(int rows, int width, int seed, int misalign = 0, int pitch = 0)
    {
        Rows = rows;
        Width = width;
        _offset = misalign;
        _pitch = pitch;
        _buffer = new byte[misalign + rows * (width + pitch) + 64];
        new Random(seed).NextBytes(_buffer);
    }

    public int Rows { get; }

    public int Width { get; }

    public Span2D<byte> Span => new(_buffer, _offset, Rows, Width, _pitch);

    public Span<byte> Row(int i) => Span.GetRowSpan(i);

    public byte[] RowCopy(int i) => Row(i).ToArray();

    public byte[][] Snapshot() => Enumerable.Range(0, Rows).Select(RowCopy).ToArray();

    public TestStripe Clone()
    {
        var copy = new TestStripe(Rows, Width, 0, _offset, _pitch);
        _buffer.CopyTo(copy._buffer, 0);
        return copy;
    }
}

/// <summary>A generated test shape; its ToString is what a failing property prints for replay.</summary>
internal sealed record StripeCase(int DataCount, int ParityCount, int Length, int Seed, int Misalign, int Pitch)
{
    public TestStripe NewStripe() => new(DataCount + ParityCount, Length, Seed, Misalign, Pitch);
}
