using System.Runtime.CompilerServices;
using Storage.Nbd.Buffers;

namespace Storage.Nbd.Connection;

/// <summary>
/// A receive buffer over a connection's stream: each socket read takes as much as the buffer has room for, so the
/// requests a client pipelines arrive in one system call and are parsed from memory. Payloads larger than half the
/// buffer are read straight into their destination. One reader per connection, used by one task at a time.
/// </summary>
internal sealed class FrameReader(NativeBuffer buffer, Stream stream)
{
    private readonly NativeBuffer _buffer = buffer;
    private int _start;
    private int _end;

    /// <summary>The stream read from; replaced when the connection upgrades to TLS.</summary>
    public Stream Stream { get; set; } = stream;

    /// <summary>Bytes received and not yet consumed.</summary>
    public int Buffered => _end - _start;

    /// <summary>Largest <see cref="FillAsync"/> request.</summary>
    public int Capacity => _buffer.Length;

    /// <summary>The bytes received and not yet consumed.</summary>
    public ReadOnlySpan<byte> Span => _buffer.Data[_start.._end];

    public void Consume(int count)
    {
        _start += count;
        if (_start == _end)
            _start = _end = 0;
    }

    /// <summary>
    /// Makes at least <paramref name="count"/> (at most <see cref="Capacity"/>) bytes available in <see cref="Span"/>;
    /// false when the stream ends first.
    /// </summary>
    public ValueTask<bool> FillAsync(int count, CancellationToken cancellationToken) =>
        Buffered >= count ? ValueTask.FromResult(true) : FillSlowAsync(count, cancellationToken);

    /// <summary>Fills <paramref name="destination"/> from the buffer, then from the stream; false when the stream ends first.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> ReadExactlyAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        int copied = Math.Min(Buffered, destination.Length);
        Span[..copied].CopyTo(destination.Span);
        Consume(copied);
        destination = destination[copied..];
        if (destination.IsEmpty)
            return true;
        if (destination.Length <= Capacity / 2)
        {
            // Small remainder: fill the buffer, which may bring the next requests along.
            if (!await FillSlowAsync(destination.Length, cancellationToken).ConfigureAwait(false))
                return false;
            Span[..destination.Length].CopyTo(destination.Span);
            Consume(destination.Length);
            return true;
        }
        while (!destination.IsEmpty)
        {
            int read = await Stream.ReadAsync(destination, cancellationToken).ConfigureAwait(false);
            if (read == 0)
                return false;
            destination = destination[read..];
        }
        return true;
    }

    /// <summary>Discards <paramref name="count"/> bytes; false when the stream ends first.</summary>
    public async ValueTask<bool> SkipAsync(long count, CancellationToken cancellationToken)
    {
        while (count > 0)
        {
            if (Buffered == 0 && !await FillSlowAsync(1, cancellationToken).ConfigureAwait(false))
                return false;
            int n = (int)Math.Min(count, Buffered);
            Consume(n);
            count -= n;
        }
        return true;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> FillSlowAsync(int count, CancellationToken cancellationToken)
    {
        // Move the partial frame to the front when the free tail is short, so that each read can take many frames
        // (the bytes moved are less than one frame).
        if (_start > 0 && (_start + count > _buffer.Length || _buffer.Length - _end < _buffer.Length / 2))
        {
            _buffer.Data[_start.._end].CopyTo(_buffer.Data);
            _end -= _start;
            _start = 0;
        }
        while (_end - _start < count)
        {
            int read = await Stream.ReadAsync(_buffer.DataMemory(_buffer.Length)[_end..], cancellationToken).ConfigureAwait(false);
            if (read == 0)
                return false;
            _end += read;
        }
        return true;
    }
}
