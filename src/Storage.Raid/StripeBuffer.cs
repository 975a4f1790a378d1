using System.Buffers;
using CommunityToolkit.HighPerformance;

namespace Storage.Raid;

/// <summary>A pooled segment of a stripe: <c>rows</c> rows of <c>width</c> bytes, the same byte range of every chunk.</summary>
internal sealed class StripeBuffer : IDisposable
{
    private byte[]? _array;

    public StripeBuffer(int rows, int width)
    {
        Rows = rows;
        Width = width;
        _array = ArrayPool<byte>.Shared.Rent(rows * width);
    }

    public int Rows { get; }

    public int Width { get; }

    private byte[] Array => _array ?? throw new ObjectDisposedException(nameof(StripeBuffer));

    public Span2D<byte> Span => new(Array, 0, Rows, Width, 0);

    public Span2D<byte> RowsFrom(int first, int count) => new(Array, first * Width, count, Width, 0);

    public Memory<byte> Row(int row) => Array.AsMemory(row * Width, Width);

    public void Dispose()
    {
        if (_array is { } array)
        {
            _array = null;
            ArrayPool<byte>.Shared.Return(array);
        }
    }
}
