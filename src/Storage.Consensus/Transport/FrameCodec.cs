using Storage.Native;
using System.Buffers.Binary;

namespace Storage.Consensus;

/// <summary>Thrown when a network frame fails its checksum or size check; the connection is dropped.</summary>
public sealed class FrameCorruptException(string message) : IOException(message);

/// <summary>
/// Length-prefixed, checksummed frames for TCP: <c>u32 length | u32 crc32c(payload) | payload</c>, little-endian.
/// </summary>
public static class FrameCodec
{
    /// <summary>The largest payload accepted (a snapshot travels in one frame).</summary>
    public const int MaxPayload = 256 << 20;

    /// <summary>Writes one frame. Not thread-safe per stream.</summary>
    public static async ValueTask WriteAsync(Stream stream, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var header = new byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(header, (uint)payload.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(4), Crc32C.Compute(payload.Span));
        await stream.WriteAsync(header, cancellationToken).ConfigureAwait(false);
        await stream.WriteAsync(payload, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reads one frame's payload, or null at a clean end of stream.</summary>
    /// <exception cref="FrameCorruptException">Bad length or checksum.</exception>
    /// <exception cref="EndOfStreamException">The stream ended inside a frame.</exception>
    public static async ValueTask<byte[]?> ReadAsync(Stream stream, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var header = new byte[8];
        int got = await stream.ReadAtLeastAsync(header, 8, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
        if (got == 0)
            return null;
        if (got < 8)
            throw new EndOfStreamException("Connection closed inside a frame header.");
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(header);
        if (length > MaxPayload)
            throw new FrameCorruptException($"Frame of {length} bytes exceeds the limit.");
        var payload = new byte[length];
        await stream.ReadExactlyAsync(payload, cancellationToken).ConfigureAwait(false);
        if (Crc32C.Compute(payload) != BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4)))
            throw new FrameCorruptException("Frame checksum mismatch.");
        return payload;
    }

    /// <summary>Encodes a consensus message as a frame payload.</summary>
    public static byte[] EncodeMessage(Message message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var w = new ByteWriter(256);
        Codec.Write(w, message);
        return w.Written.ToArray();
    }

    /// <summary>Decodes a consensus message from a frame payload.</summary>
    /// <exception cref="FormatException">The payload is not a message.</exception>
    public static Message DecodeMessage(ReadOnlySpan<byte> payload)
    {
        var r = new ByteReader(payload);
        var m = Codec.ReadMessage(ref r);
        if (!r.End)
            throw new FormatException("Trailing bytes after a message.");
        return m;
    }
}
