using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text;
using Storage.Nbd.Protocol;
using static Storage.Nbd.Interop.LibC;

namespace Storage.Nbd.Connection;

/// <summary>
/// The reply sender. Completed requests queue under <see cref="_sendLock"/>; the thread that finds no sender active
/// becomes the sender and writes every queued reply in one gathering sendmsg: a read's reply header sits in its
/// buffer's headroom right before the data, other headers are packed into the send buffer, and one vector per run of
/// bytes points at them. A send waits at most <see cref="Transport.Plain.InlineSendWait"/> for the client to make
/// room; then the rest goes to the connection's send thread, which waits as long as it takes — so neither the
/// receive thread nor a thread-pool thread is held by a slow client. While the receive thread parses a batch of
/// requests it "corks" the sender: replies that complete meanwhile wait, and leave together when the batch is done.
/// </summary>
internal sealed partial class NbdConnection
{
    private const int MaxBatchVectors = 256;
    private const int MaxErrorMessageBytes = 1024;
    private const int MaxHeaderBytes = NbdProtocol.StructuredReplyHeaderLength + 6 + MaxErrorMessageBytes;

    private readonly Lock _sendLock = new();
    private List<NbdRequest> _pending = new(64);
    private List<NbdRequest> _batch = new(64);
    private readonly IoVector[] _vectors = new IoVector[MaxBatchVectors];
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
                    if (blocking)
                    {
                        _transport.Send(_vectors.AsSpan(0, vectors));
                    }
                    else
                    {
                        var rest = Transport.Advance(_vectors.AsSpan(0, vectors), _transport.TrySend(_vectors.AsSpan(0, vectors)));
                        if (!rest.IsEmpty)
                        {
                            HandToSendThread(vectors - rest.Length, rest.Length);
                            return;
                        }
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
                    _transport.Send(_vectors.AsSpan(_stalledStart, _stalledCount));
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
            if (vectors + 1 > MaxBatchVectors || used + MaxHeaderBytes > _sendBuffer.Length)
                break;
            int dataLength = request.Error == 0 && request.Type == NbdProtocol.CmdRead ? (int)request.Length : 0;
            int headerLength = ReplyHeaderLength(request, dataLength);
            if (dataLength > 0)
            {
                // Header in the headroom, right before the data: one vector for both.
                var buffer = request.Buffer!;
                WriteHeader(request, buffer.HeaderSpan(headerLength), dataLength);
                byte* frame = buffer.FramePointer(headerLength);
                _vectors[vectors++] = new IoVector { Base = frame, Length = (nuint)(headerLength + dataLength) };
            }
            else
            {
                WriteHeader(request, _sendBuffer.Data.Slice(used, headerLength), 0);
                // Headers packed back to back share a vector.
                if (vectors > 0 && _vectors[vectors - 1].Base + (long)_vectors[vectors - 1].Length == packed + used)
                    _vectors[vectors - 1].Length += (nuint)headerLength;
                else
                    _vectors[vectors++] = new IoVector { Base = packed + used, Length = (nuint)headerLength };
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
            return NbdProtocol.StructuredReplyHeaderLength + 8;
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
