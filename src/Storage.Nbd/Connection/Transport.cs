using System.Net.Security;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using static Storage.Nbd.Interop.LibC;

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
    /// Sends as much of <paramref name="vectors"/> as the socket takes within a short wait, in one system call; returns
    /// the bytes sent (0 when nothing could be sent, or when this transport cannot send without blocking).
    /// </summary>
    /// <exception cref="IOException">The connection is broken.</exception>
    public abstract long TrySend(ReadOnlySpan<IoVector> vectors);

    /// <summary>Sends all of <paramref name="vectors"/>, blocking; the span's entries are used up on the way.</summary>
    public abstract void Send(Span<IoVector> vectors);

    public abstract void Dispose();

    /// <summary>
    /// Plain TCP or Unix socket: gathering sends with sendmsg. The socket's send timeout (SO_SNDTIMEO) is
    /// <see cref="InlineSendWait"/>: a send waits that long at most for a client to make room, so a thread that sends
    /// on its way (a thread-pool thread that completed a request) is never held longer; the send thread then takes over.
    /// </summary>
    public sealed class Plain : Transport
    {
        /// <summary>How long a send may wait for the client to read before the send thread takes over.</summary>
        public static readonly TimeSpan InlineSendWait = TimeSpan.FromMilliseconds(20);

        private const int SoSndTimeo = 21;
        private readonly Socket _socket;

        public Plain(Socket socket)
        {
            _socket = socket;
            // struct timeval { long tv_sec; long tv_usec; } (64-bit Linux).
            Span<long> timeval = [0, (long)InlineSendWait.TotalMicroseconds];
            socket.SetRawSocketOption(SolSocket, SoSndTimeo, MemoryMarshal.AsBytes(timeval));
        }

        public override int Receive(Span<byte> buffer) => _socket.Receive(buffer);

        public override unsafe void Send(ReadOnlySpan<byte> bytes)
        {
            fixed (byte* pointer = bytes)
            {
                Span<IoVector> vector = [new IoVector { Base = pointer, Length = (nuint)bytes.Length }];
                Send(vector);
            }
        }

        public override long TrySend(ReadOnlySpan<IoVector> vectors) => SendMessage(vectors);

        public override void Send(Span<IoVector> vectors)
        {
            while (!vectors.IsEmpty)
                vectors = Advance(vectors, SendMessage(vectors));
        }

        public override void Dispose() => _socket.Dispose();

        /// <summary>One sendmsg: the bytes sent, 0 when the send timeout passed with nothing sent.</summary>
        private unsafe long SendMessage(ReadOnlySpan<IoVector> vectors)
        {
            var handle = _socket.SafeHandle;
            bool added = false;
            try
            {
                // The reference keeps the descriptor from being closed and reused while the call runs.
                handle.DangerousAddRef(ref added);
                int fd = (int)handle.DangerousGetHandle();
                fixed (IoVector* iov = vectors)
                {
                    var message = new MessageHeader { Vectors = iov, VectorCount = (nuint)Math.Min(vectors.Length, MaxVectors) };
                    while (true)
                    {
                        nint sent = Interop.LibC.SendMessage(fd, &message, MsgNoSignal);
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

        public override long TrySend(ReadOnlySpan<IoVector> vectors) => 0;

        public override unsafe void Send(Span<IoVector> vectors)
        {
            foreach (var vector in vectors)
                Stream.Write(new ReadOnlySpan<byte>(vector.Base, (int)vector.Length));
        }

        public override void Dispose() => Stream.Dispose();
    }

    /// <summary>Drops the first <paramref name="bytes"/> bytes from <paramref name="vectors"/> (in place).</summary>
    public static unsafe Span<IoVector> Advance(Span<IoVector> vectors, long bytes)
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
