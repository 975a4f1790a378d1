using System.Net.Security;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using static Storage.Native.LibC;
using Storage.Native;

namespace Storage.Nbd.Connection;

/// <summary>
/// A connection's byte stream, used with blocking calls only: .NET switches a socket to non-blocking mode for good at
/// its first asynchronous operation, and then every synchronous call goes through the epoll thread and the thread
/// pool — the hops this server exists to avoid. One thread receives; one thread at a time sends.
/// </summary>
internal abstract class Transport : IDisposable
{
    /// <summary>Receives at least one byte, blocking; 0 when the peer has finished sending.</summary>
    public abstract int Receive(Span<byte> buffer);

    /// <summary>Sends all of <paramref name="bytes"/>, blocking.</summary>
    public abstract void Send(ReadOnlySpan<byte> bytes);

    /// <summary>
    /// Sends as much of <paramref name="vectors"/> as the socket takes without waiting, in one system call; returns
    /// the bytes sent (0 when the socket is full, or when this transport cannot send without blocking). With
    /// <paramref name="more"/> the bytes may wait in the kernel for the next send (MSG_MORE), to leave with it.
    /// </summary>
    /// <exception cref="IOException">The connection is broken.</exception>
    public abstract long TrySend(ReadOnlySpan<IoVec> vectors, bool more);

    /// <summary>Sends all of <paramref name="vectors"/>, blocking; the span's entries are used up on the way.</summary>
    public abstract void Send(Span<IoVec> vectors, bool more);

    public abstract void Dispose();

    /// <summary>
    /// Plain TCP or Unix socket: gathering sends with sendmsg. <see cref="TrySend"/> never waits (MSG_DONTWAIT), so a
    /// thread that sends on its way (the receive thread, or a thread-pool thread that completed a request) is never
    /// held by a client that reads slowly; the connection's send thread takes what is left and waits for room.
    /// </summary>
    public sealed class Plain(Socket socket) : Transport
    {
        private readonly Socket _socket = socket;

        public override int Receive(Span<byte> buffer) => _socket.Receive(buffer);

        public override unsafe void Send(ReadOnlySpan<byte> bytes)
        {
            fixed (byte* pointer = bytes)
            {
                Span<IoVec> vector = [new IoVec { Base = pointer, Length = (nuint)bytes.Length }];
                Send(vector, more: false);
            }
        }

        public override long TrySend(ReadOnlySpan<IoVec> vectors, bool more) => SendMessage(vectors, more, wait: false);

        public override void Send(Span<IoVec> vectors, bool more)
        {
            while (!vectors.IsEmpty)
                vectors = Advance(vectors, SendMessage(vectors, more, wait: true));
        }

        public override void Dispose() => _socket.Dispose();

        /// <summary>One sendmsg: the bytes sent; 0 when the socket is full and <paramref name="wait"/> is false.</summary>
        private unsafe long SendMessage(ReadOnlySpan<IoVec> vectors, bool more, bool wait)
        {
            var handle = _socket.SafeHandle;
            bool added = false;
            try
            {
                // The reference keeps the descriptor from being closed and reused while the call runs.
                handle.DangerousAddRef(ref added);
                int fd = (int)handle.DangerousGetHandle();
                fixed (IoVec* iov = vectors)
                {
                    var message = new MessageHeader { Vectors = iov, VectorCount = (nuint)Math.Min(vectors.Length, MaxVectors) };
                    int flags = MsgNoSignal | (more ? MsgMore : 0) | (wait ? 0 : MsgDontWait);
                    while (true)
                    {
                        nint sent = LibC.SendMessage(fd, &message, flags);
                        if (sent >= 0)
                            return sent;
                        int errno = Marshal.GetLastPInvokeError();
                        if (errno == EIntr)
                            continue;
                        if (errno == EAgain)
                            return 0;
                        throw new IOException($"send failed: {Marshal.GetPInvokeErrorMessage(errno)}", errno);
                    }
                }
            }
            finally
            {
                if (added)
                    handle.DangerousRelease();
            }
        }
    }

    /// <summary>TLS over the socket. Never sends without blocking, so replies go out from the connection's send thread.</summary>
    public sealed class Tls(SslStream stream) : Transport
    {
        public SslStream Stream { get; } = stream;

        public override int Receive(Span<byte> buffer) => Stream.Read(buffer);

        public override void Send(ReadOnlySpan<byte> bytes) => Stream.Write(bytes);

        public override long TrySend(ReadOnlySpan<IoVec> vectors, bool more) => 0;

        public override unsafe void Send(Span<IoVec> vectors, bool more)
        {
            foreach (var vector in vectors)
                Stream.Write(new ReadOnlySpan<byte>(vector.Base, (int)vector.Length));
        }

        public override void Dispose() => Stream.Dispose();
    }

    /// <summary>Drops the first <paramref name="bytes"/> bytes from <paramref name="vectors"/> (in place).</summary>
    public static unsafe Span<IoVec> Advance(Span<IoVec> vectors, long bytes)
    {
        while (bytes > 0)
        {
            ref var first = ref vectors[0];
            if (bytes < (long)first.Length)
            {
                first.Base += bytes;
                first.Length -= (nuint)bytes;
                return vectors;
            }
            bytes -= (long)first.Length;
            vectors = vectors[1..];
        }
        return vectors;
    }
}
