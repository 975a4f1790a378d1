using System.Buffers;
using System.Diagnostics;
using CommunityToolkit.HighPerformance;

namespace Storage.Raid;

/// <summary>
/// A pooled segment of a stripe: <c>rows</c> rows of <c>width</c> bytes, the same byte range of every chunk.
/// <see cref="Dispose"/> gives the bytes back; <see cref="Open"/> takes new ones, so one instance can serve many
/// requests (see <see cref="StripeRequest"/>).
/// </summary>
internal sealed class StripeBuffer : IDisposable
{
    private byte[]? _array;

    /// <summary>An empty buffer: <see cref="Open"/> it before use.</summary>
    public StripeBuffer()
    {
    }

    public StripeBuffer(int rows, int width) => Open(rows, width);

    /// <summary>Takes <paramref name="rows"/> × <paramref name="width"/> bytes from the shared pool (contents undefined).</summary>
    public void Open(int rows, int width)
    {
        Debug.Assert(_array is null, "open twice");
        Rows = rows;
        Width = width;
        _array = ArrayPool<byte>.Shared.Rent(rows * width);
    }

    public int Rows { get; private set; }

    public int Width { get; private set; }

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
