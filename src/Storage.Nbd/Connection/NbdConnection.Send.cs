using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text;
using Storage.Nbd.Protocol;
using static Storage.Native.LibC;
using Storage.Native;

namespace Storage.Nbd.Connection;

/// <summary>
/// The reply sender. Completed requests queue under <see cref="_sendLock"/>; the thread that finds no sender active
/// becomes the sender and writes every queued reply in one gathering sendmsg: a read's reply header sits in its
/// buffer's headroom right before the data, other headers are packed into the send buffer, and one vector per run of
/// bytes points at them. A send never waits for the client to make room: what the socket does not take at once goes
/// to the connection's send thread, which waits as long as it takes — so neither the receive thread nor a
/// thread-pool thread is held by a slow client. While the receive thread parses a batch of
/// requests it "corks" the sender: replies that complete meanwhile wait, and leave together when the batch is done.
/// </summary>
/// <remarks>
/// On a plain socket a read reply of at least <see cref="SeparatePayloadMin"/> bytes is sent in two calls, as nbdkit
/// does: what comes before its payload (its header, and earlier replies) with MSG_MORE, then the payload by itself.
/// Over TCP one call for header and payload together was measured to cost the client three times the wake-ups and a
/// third of the rate of 1 MiB reads (2.9k against 4.3–4.6k per second at queue depth 1, loopback, same server
/// otherwise); header and payload in two vectors of one call, or in two calls without MSG_MORE, were as slow as one
/// vector. The socket has TCP_NODELAY, so bytes held by MSG_MORE leave at the next push at the latest; they cannot
/// wait for TCP's 200 ms cork timer. TLS gets no split: each vector would become a TLS record of its own.
/// </remarks>
internal sealed partial class NbdConnection
{
    private const int MaxBatchVectors = 256;

    /// <summary>Read payloads from this size on are sent by a call of their own (see the remarks).</summary>
    private const int SeparatePayloadMin = 64 << 10;

    // Per vector in _vectors: whether a send call ends after it, and whether that call passes MSG_MORE.
    private const byte NoCallEnd = 0, CallEnd = 1, CallEndMore = 2;

    private const int MaxErrorMessageBytes = 1024;
    private const int MaxHeaderBytes = NbdProtocol.StructuredReplyHeaderLength + 6 + MaxErrorMessageBytes;

    private readonly Lock _sendLock = new();
    private List<NbdRequest> _pending = new(64);
    private List<NbdRequest> _batch = new(64);
    private readonly IoVec[] _vectors = new IoVec[MaxBatchVectors];
    private readonly byte[] _callEnds = new byte[MaxBatchVectors];
    private bool _sending;
    private bool _corked;
    private bool _sendFailed;

    // The send thread, started when a send first would block.
    private Thread? _sendThread;
    private readonly SemaphoreSlim _sendThreadSignal = new(0);
    private bool _sendThreadStop;
    private int _stalledStart;
    private int _stalledCount;

    /// <summary>Queues the reply to <paramref name="request"/>; may send it (and others) on this thread.</summary>
    internal void EnqueueReply(NbdRequest request)
    {
        lock (_sendLock)
        {
            _pending.Add(request);
            if (_sending || _corked)
                return;
            _sending = true;
        }
        SendQueued(blocking: false);
    }

    /// <summary>
    /// Holds replies back while the receive thread works through requests it has already received. No lock: a sender
    /// that misses the flag just sends early; only <see cref="Uncork"/> must see the queue and the sender together.
    /// </summary>
    private void Cork() => Volatile.Write(ref _corked, true);

    /// <summary>Lets held replies go; the receive thread calls it before it waits for anything.</summary>
    private void Uncork()
    {
        lock (_sendLock)
        {
            _corked = false;
            if (_sending || _pending.Count == 0)
                return;
            _sending = true;
        }
        SendQueued(blocking: false);
    }

    /// <summary>
    /// Sends queued replies until the queue is empty, then gives up the sender role. Called with the role held. When
    /// not <paramref name="blocking"/> and the socket is full, hands the role and the unsent rest to the send thread.
    /// </summary>
    private void SendQueued(bool blocking)
    {
        while (true)
        {
            lock (_sendLock)
            {
                if (_pending.Count == 0)
                {
                    _sending = false;
                    return;
                }
                (_batch, _pending) = (_pending, _batch);
            }
            int vectors = BuildVectors(_batch, out int taken);
            if (taken < _batch.Count)
            {
                // The rest did not fit this round; it goes first next round.
                lock (_sendLock)
                    _pending.InsertRange(0, _batch.GetRange(taken, _batch.Count - taken));
                _batch.RemoveRange(taken, _batch.Count - taken);
            }
            if (!_sendFailed)
            {
                try
                {
                    int unsent = SendVectors(0, vectors, blocking);
                    if (unsent < vectors)
                    {
                        HandToSendThread(unsent, vectors - unsent);
                        return;
                    }
                }
                catch (Exception e)
                {
                    OnSendFailed(e);
                }
            }
            ReleaseBatch();
        }
    }

    /// <summary>
    /// Sends vectors [start, end) of <see cref="_vectors"/>, one call per run up to a call end. When not
    /// <paramref name="blocking"/>, stops at the first call the socket did not take whole at once and returns the
    /// index of the first vector not sent in full (the vectors are advanced past what was sent); else returns
    /// <paramref name="end"/>.
    /// </summary>
    private int SendVectors(int start, int end, bool blocking)
    {
        while (start < end)
        {
            int last = start;
            while (last < end - 1 && _callEnds[last] == NoCallEnd)
                last++;
            var call = _vectors.AsSpan(start, last + 1 - start);
            bool more = _callEnds[last] == CallEndMore;
            if (blocking)
            {
                _transport.Send(call, more);
            }
            else
            {
                var rest = Transport.Advance(call, _transport.TrySend(call, more));
                if (!rest.IsEmpty)
                    return last + 1 - rest.Length;
            }
            start = last + 1;
        }
        return end;
    }

    private void ReleaseBatch()
    {
        foreach (var request in _batch)
            Release(request);
        _batch.Clear();
    }

    private void OnSendFailed(Exception e)
    {
        // The client is gone or the connection was cut: stop reading, drop the remaining replies.
        _sendFailed = true;
        if (!IsDisconnect(e))
            _server.ReportUnexpected(this, e);
        Stop();
    }

    /// <summary>Gives the sender role, with vectors [start, start + count) still to send, to the send thread.</summary>
    private void HandToSendThread(int start, int count)
    {
        _stalledStart = start;
        _stalledCount = count;
        _server.CountSendThreadTakeover();
        lock (_stateLock)
        {
            if (_sendThread is null && !_closed)
            {
                _sendThread = new Thread(SendThreadLoop, maxStackSize: 256 << 10) { IsBackground = true, Name = "nbd send " + Peer };
                _sendThread.Start();
            }
        }
        _sendThreadSignal.Release();
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void SendThreadLoop()
    {
        while (true)
        {
            _sendThreadSignal.Wait();
            if (Volatile.Read(ref _sendThreadStop))
                return;
            if (!_sendFailed)
            {
                try
                {
                    SendVectors(_stalledStart, _stalledStart + _stalledCount, blocking: true);
                }
                catch (Exception e)
                {
                    OnSendFailed(e);
                }
            }
            ReleaseBatch();
            // Whatever queued meanwhile goes out from here, blocking; then the role is free again.
            SendQueued(blocking: true);
        }
    }

    /// <summary>Ends the send thread; called when every request has been released, so it is idle.</summary>
    private void StopSendThread()
    {
        Thread? thread;
        lock (_stateLock)
            thread = _sendThread;
        if (thread is null)
            return;
        Volatile.Write(ref _sendThreadStop, true);
        _sendThreadSignal.Release();
        thread.Join();
    }

    /// <summary>
    /// Writes the headers of <paramref name="batch"/> and fills <see cref="_vectors"/>; returns the vector count and,
    /// in <paramref name="taken"/>, how many replies fit (the send buffer and the vector array are bounded).
    /// </summary>
    private unsafe int BuildVectors(List<NbdRequest> batch, out int taken)
    {
        byte* packed = _sendBuffer.FramePointer(0);
        int used = 0, vectors = 0;
        taken = 0;
        foreach (var request in batch)
        {
            if (vectors + 2 > MaxBatchVectors || used + MaxHeaderBytes > _sendBuffer.Length)
                break;
            int dataLength = request.Error != 0 ? 0 : request.Type == NbdProtocol.CmdRead ? (int)request.Length : request.ReplyLength;
            int headerLength = ReplyHeaderLength(request, dataLength);
            if (dataLength > 0)
            {
                // Header in the headroom, right before the data: one vector for both, or two for a large payload.
                var buffer = request.Buffer!;
                WriteHeader(request, buffer.HeaderSpan(headerLength), dataLength);
                byte* frame = buffer.FramePointer(headerLength);
                if (dataLength >= SeparatePayloadMin && _transport is Transport.Plain)
                {
                    _callEnds[vectors] = CallEndMore;
                    _vectors[vectors++] = new IoVec { Base = frame, Length = (nuint)headerLength };
                    _callEnds[vectors] = CallEnd;
                    _vectors[vectors++] = new IoVec { Base = frame + headerLength, Length = (nuint)dataLength };
                }
                else
                {
                    _callEnds[vectors] = NoCallEnd;
                    _vectors[vectors++] = new IoVec { Base = frame, Length = (nuint)(headerLength + dataLength) };
                }
            }
            else
            {
                WriteHeader(request, _sendBuffer.Data.Slice(used, headerLength), 0);
                // Headers packed back to back share a vector.
                if (vectors > 0 && _vectors[vectors - 1].Base + (long)_vectors[vectors - 1].Length == packed + used)
                {
                    _vectors[vectors - 1].Length += (nuint)headerLength;
                }
                else
                {
                    _callEnds[vectors] = NoCallEnd;
                    _vectors[vectors++] = new IoVec { Base = packed + used, Length = (nuint)headerLength };
                }
                used += headerLength;
            }
            taken++;
        }
        return vectors;
    }

    /// <summary>Bytes <see cref="WriteHeader"/> writes before the data.</summary>
    private int ReplyHeaderLength(NbdRequest request, int dataLength)
    {
        if (!_structuredReplies)
            return NbdProtocol.SimpleReplyHeaderLength;
        if (request.Error != 0)
            return NbdProtocol.StructuredReplyHeaderLength + 6 + ErrorMessageLength(request);
        if (dataLength > 0)
            return NbdProtocol.StructuredReplyHeaderLength + (request.Type == NbdProtocol.CmdRead ? 8 : 0);
        return request.Type == NbdProtocol.CmdRead ? NbdProtocol.StructuredReplyHeaderLength : NbdProtocol.SimpleReplyHeaderLength;
    }

    private static int ErrorMessageLength(NbdRequest request) =>
        request.ErrorMessage is null ? 0 : Math.Min(Encoding.UTF8.GetByteCount(request.ErrorMessage), MaxErrorMessageBytes);

    private void WriteHeader(NbdRequest request, Span<byte> header, int dataLength)
    {
        if (!_structuredReplies || (request.Error == 0 && dataLength == 0 && request.Type != NbdProtocol.CmdRead))
        {
            // Simple reply: magic, error, cookie. Structured replies allow it for anything without a payload but a read.
            BinaryPrimitives.WriteUInt32BigEndian(header, NbdProtocol.SimpleReplyMagic);
            BinaryPrimitives.WriteUInt32BigEndian(header[4..], (uint)request.Error);
            BinaryPrimitives.WriteUInt64BigEndian(header[8..], request.Cookie);
            return;
        }
        // Structured chunk: magic, flags, type, cookie, payload length.
        BinaryPrimitives.WriteUInt32BigEndian(header, NbdProtocol.StructuredReplyMagic);
        BinaryPrimitives.WriteUInt16BigEndian(header[4..], NbdProtocol.ReplyFlagDone);
        BinaryPrimitives.WriteUInt64BigEndian(header[8..], request.Cookie);
        if (request.Error != 0)
        {
            int messageLength = header.Length - NbdProtocol.StructuredReplyHeaderLength - 6;
            BinaryPrimitives.WriteUInt16BigEndian(header[6..], NbdProtocol.ReplyTypeError);
            BinaryPrimitives.WriteUInt32BigEndian(header[16..], (uint)(6 + messageLength));
            BinaryPrimitives.WriteUInt32BigEndian(header[20..], (uint)request.Error);
            BinaryPrimitives.WriteUInt16BigEndian(header[24..], (ushort)messageLength);
            if (messageLength > 0)
                WriteTruncatedUtf8(request.ErrorMessage!, header.Slice(26, messageLength));
            return;
        }
        if (dataLength == 0)
        {
            // A successful read of nothing (refused earlier with EINVAL, so not reached today): a NONE chunk.
            BinaryPrimitives.WriteUInt16BigEndian(header[6..], NbdProtocol.ReplyTypeNone);
            BinaryPrimitives.WriteUInt32BigEndian(header[16..], 0);
            return;
        }
        if (request.Type == NbdProtocol.CmdBlockStatus)
        {
            // The payload (context id and descriptors) follows in the buffer.
            BinaryPrimitives.WriteUInt16BigEndian(header[6..], NbdProtocol.ReplyTypeBlockStatus);
            BinaryPrimitives.WriteUInt32BigEndian(header[16..], (uint)dataLength);
            return;
        }
        // One OFFSET_DATA chunk covers the whole read, so NBD_CMD_FLAG_DF is always honoured.
        BinaryPrimitives.WriteUInt16BigEndian(header[6..], NbdProtocol.ReplyTypeOffsetData);
        BinaryPrimitives.WriteUInt32BigEndian(header[16..], (uint)(8 + dataLength));
        BinaryPrimitives.WriteUInt64BigEndian(header[20..], request.Offset);
    }

    /// <summary>Writes the longest prefix of <paramref name="text"/> that fits, cut at a character boundary, padded with spaces.</summary>
    private static void WriteTruncatedUtf8(string text, Span<byte> destination)
    {
        Encoding.UTF8.GetEncoder().Convert(text, destination, flush: true, out _, out int written, out _);
        destination[written..].Fill((byte)' ');
    }
}
