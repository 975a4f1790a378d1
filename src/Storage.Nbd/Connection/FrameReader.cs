using Storage.Nbd.Buffers;

namespace Storage.Nbd.Connection;

/// <summary>
/// A receive buffer over a connection's transport: each receive takes as much as the buffer has room for, so the
/// requests a client pipelines arrive in one system call and are parsed from memory. Payloads larger than half the
/// buffer are received straight into their destination. Used by the connection's receive thread only; every call
/// blocks until it has what it needs.
/// </summary>
internal sealed class FrameReader(NativeBuffer buffer, Transport transport)
{
    private readonly NativeBuffer _buffer = buffer;
    private int _start;
    private int _end;

    /// <summary>The transport received from; replaced when the connection upgrades to TLS.</summary>
    public Transport Transport { get; set; } = transport;

    /// <summary>Bytes received and not yet consumed.</summary>
    public int Buffered => _end - _start;

    /// <summary>Largest <see cref="Fill"/> request.</summary>
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
    public bool Fill(int count)
    {
        if (Buffered >= count)
            return true;
        // Move the partial frame to the front when the free tail is short, so that each receive can take many frames
        // (the bytes moved are less than one frame).
        if (_start > 0 && (_start + count > _buffer.Length || _buffer.Length - _end < _buffer.Length / 2))
        {
            _buffer.Data[_start.._end].CopyTo(_buffer.Data);
            _end -= _start;
            _start = 0;
        }
        while (_end - _start < count)
        {
            int received = Transport.Receive(_buffer.Data[_end..]);
            if (received == 0)
                return false;
            _end += received;
        }
        return true;
    }

    /// <summary>Fills <paramref name="destination"/> from the buffer, then from the transport; false when the stream ends first.</summary>
    public bool ReadExactly(Span<byte> destination)
    {
        int copied = Math.Min(Buffered, destination.Length);
        Span[..copied].CopyTo(destination);
        Consume(copied);
        destination = destination[copied..];
        if (destination.IsEmpty)
            return true;
        if (destination.Length <= Capacity / 2)
        {
            // Small remainder: fill the buffer, which may bring the next requests along.
            if (!Fill(destination.Length))
                return false;
            Span[..destination.Length].CopyTo(destination);
            Consume(destination.Length);
            return true;
        }
        while (!destination.IsEmpty)
        {
            int received = Transport.Receive(destination);
            if (received == 0)
                return false;
            destination = destination[received..];
        }
        return true;
    }

    /// <summary>Discards <paramref name="count"/> bytes; false when the stream ends first.</summary>
    public bool Skip(long count)
    {
        while (count > 0)
        {
            if (Buffered == 0 && !Fill(1))
                return false;
            int n = (int)Math.Min(count, Buffered);
            Consume(n);
            count -= n;
        }
        return true;
    }
}
