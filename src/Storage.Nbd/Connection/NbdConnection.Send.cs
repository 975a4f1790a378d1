using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text;
using Storage.Nbd.Protocol;

namespace Storage.Nbd.Connection;

/// <summary>
/// The reply sender. Completed requests are queued under <see cref="_sendLock"/>; one long-lived loop writes them.
/// When the loop is idle it waits on an inline <see cref="AsyncSignal"/>, so the thread that completes a request
/// writes the reply itself (no thread hop), and replies that complete while a write is under way go out together in
/// the next write. While the receive loop parses a batch of requests it "corks" the sender, so replies to requests
/// that complete synchronously leave in one write when the batch is done.
/// </summary>
internal sealed partial class NbdConnection
{
    // A reply whose header plus data is at most this is copied into the send buffer, to share a write with others.
    private const int CoalesceLimit = 16 << 10;

    private readonly Lock _sendLock = new();
    private readonly AsyncSignal _senderSignal;
    private List<NbdRequest> _pending = new(64);
    private List<NbdRequest> _sending = new(64);
    private bool _senderWaiting;
    private bool _corked;
    private bool _senderStopping;
    private bool _sendFailed;

    /// <summary>Queues the reply to <paramref name="request"/>; may write it (and others) on this thread.</summary>
    internal void EnqueueReply(NbdRequest request)
    {
        bool wake;
        lock (_sendLock)
        {
            _pending.Add(request);
            wake = _senderWaiting && !_corked;
            if (wake)
                _senderWaiting = false;
        }
        if (wake)
            _senderSignal.Set();
    }

    /// <summary>
    /// Holds replies back while the receive loop works through requests it has already received. No lock: a sender
    /// that misses the flag just sends early; only <see cref="Uncork"/> must see the queue and the waiter together.
    /// </summary>
    private void Cork() => Volatile.Write(ref _corked, true);

    /// <summary>Lets held replies go; called before the receive loop waits for anything.</summary>
    private void Uncork()
    {
        bool wake;
        lock (_sendLock)
        {
            if (!_corked)
                return;
            _corked = false;
            wake = _senderWaiting && _pending.Count > 0;
            if (wake)
                _senderWaiting = false;
        }
        if (wake)
            _senderSignal.Set();
    }

    /// <summary>Ends the send loop once the queue is empty.</summary>
    private void StopSender()
    {
        bool wake;
        lock (_sendLock)
        {
            _senderStopping = true;
            _corked = false;
            wake = _senderWaiting;
            _senderWaiting = false;
        }
        if (wake)
            _senderSignal.Set();
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SendLoopAsync()
    {
        while (true)
        {
            List<NbdRequest> batch;
            lock (_sendLock)
            {
                if (_pending.Count == 0 || _corked)
                {
                    if (_senderStopping && _pending.Count == 0)
                        return;
                    _senderSignal.Arm();
                    _senderWaiting = true;
                    batch = null!;
                }
                else
                {
                    batch = _pending;
                    _pending = _sending;
                    _sending = batch;
                }
            }
            if (batch is null)
            {
                await _senderSignal.WaitAsync().ConfigureAwait(false);
                continue;
            }
            if (!_sendFailed)
            {
                try
                {
                    await WriteRepliesAsync(batch).ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    // The client is gone or the socket was aborted: stop reading, drop the remaining replies.
                    _sendFailed = true;
                    if (!IsDisconnect(e))
                        _server.ReportUnexpected(this, e);
                    Stop();
                }
            }
            foreach (var request in batch)
                Release(request);
            batch.Clear();
        }
    }

    private async ValueTask WriteRepliesAsync(List<NbdRequest> batch)
    {
        var sendBuffer = _sendBuffer ??= _server.Pool.Rent(SendBufferSize);
        int used = 0;
        foreach (var request in batch)
        {
            int dataLength = request.Error == 0 && request.Type == NbdProtocol.CmdRead ? (int)request.Length : 0;
            int headerLength = ReplyHeaderLength(request, dataLength);
            if (dataLength > 0 && (batch.Count == 1 || headerLength + dataLength > CoalesceLimit))
            {
                // Header and data leave in one write straight from the request's buffer (the header goes in its headroom).
                if (used > 0)
                {
                    await _stream.WriteAsync(sendBuffer.DataMemory(used)).ConfigureAwait(false);
                    used = 0;
                }
                WriteHeader(request, request.Buffer!.HeaderSpan(headerLength), dataLength);
                await _stream.WriteAsync(request.Buffer.FrameMemory(headerLength, dataLength)).ConfigureAwait(false);
                continue;
            }
            if (used + headerLength + dataLength > sendBuffer.Length)
            {
                await _stream.WriteAsync(sendBuffer.DataMemory(used)).ConfigureAwait(false);
                used = 0;
            }
            WriteHeader(request, sendBuffer.Data.Slice(used, headerLength), dataLength);
            used += headerLength;
            if (dataLength > 0)
            {
                request.Buffer!.Data[..dataLength].CopyTo(sendBuffer.Data[used..]);
                used += dataLength;
            }
        }
        if (used > 0)
            await _stream.WriteAsync(sendBuffer.DataMemory(used)).ConfigureAwait(false);
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

    private const int MaxErrorMessageBytes = 1024;

    private void WriteHeader(NbdRequest request, Span<byte> header, int dataLength)
    {
        if (!_structuredReplies)
        {
            // Simple reply: magic, error, cookie.
            BinaryPrimitives.WriteUInt32BigEndian(header, NbdProtocol.SimpleReplyMagic);
            BinaryPrimitives.WriteUInt32BigEndian(header[4..], (uint)request.Error);
            BinaryPrimitives.WriteUInt64BigEndian(header[8..], request.Cookie);
            return;
        }
        if (request.Error == 0 && dataLength == 0 && request.Type != NbdProtocol.CmdRead)
        {
            // Structured replies allow a simple reply for anything without a payload except a read.
            BinaryPrimitives.WriteUInt32BigEndian(header, NbdProtocol.SimpleReplyMagic);
            BinaryPrimitives.WriteUInt32BigEndian(header[4..], 0);
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
