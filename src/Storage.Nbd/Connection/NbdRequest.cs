using System.Runtime.CompilerServices;
using Storage.Nbd.Buffers;

namespace Storage.Nbd.Connection;

/// <summary>
/// One request in flight on a connection, from the parsed header to the reply being sent. A connection keeps a
/// free list of these and reuses them, so serving a request allocates nothing: the device operation's
/// <see cref="ValueTask"/> is awaited through a cached continuation instead of an async method.
/// </summary>
internal sealed class NbdRequest
{
    private readonly NbdConnection _connection;
    private readonly Action _onOperationCompleted;
    private ConfiguredValueTaskAwaitable.ConfiguredValueTaskAwaiter _awaiter;

    public NbdRequest(NbdConnection connection)
    {
        _connection = connection;
        _onOperationCompleted = OnOperationCompleted;
    }

    public ushort Type;
    public ushort Flags;
    public ulong Cookie;
    public ulong Offset;
    public uint Length;

    /// <summary>The data read or to be written; null for commands without a payload.</summary>
    public NativeBuffer? Buffer;

    /// <summary>Bytes counted against the connection's in-flight budget; set when the request is taken from the free list.</summary>
    public long Budget;

    /// <summary>Bytes of <see cref="Buffer"/> a block status reply carries; 0 for other commands.</summary>
    public int ReplyLength;

    /// <summary>NBD error value of the reply; 0 for success.</summary>
    public int Error;

    /// <summary>Text sent with the error in a structured reply; null for none.</summary>
    public string? ErrorMessage;

    /// <summary>Sets the fields of a request taken from the free list (all but <see cref="Budget"/>).</summary>
    public void Reset(ushort type, ushort flags, ulong cookie, ulong offset, uint length)
    {
        Type = type;
        Flags = flags;
        Cookie = cookie;
        Offset = offset;
        Length = length;
        Buffer = null;
        ReplyLength = 0;
        Error = 0;
        ErrorMessage = null;
    }

    /// <summary>Replies with <paramref name="error"/> without touching the device.</summary>
    public void Fail(int error, string message)
    {
        Error = error;
        ErrorMessage = message;
        _connection.EnqueueReply(this);
    }

    /// <summary>Waits for <paramref name="operation"/>, then queues the reply (with the error it threw, if any).</summary>
    public void Await(ValueTask operation)
    {
        if (operation.IsCompleted)
        {
            Complete(operation.ConfigureAwait(false).GetAwaiter());
            return;
        }
        _awaiter = operation.ConfigureAwait(false).GetAwaiter();
        _awaiter.UnsafeOnCompleted(_onOperationCompleted);
    }

    private void OnOperationCompleted()
    {
        var awaiter = _awaiter;
        _awaiter = default;
        Complete(awaiter);
    }

    private void Complete(ConfiguredValueTaskAwaitable.ConfiguredValueTaskAwaiter awaiter)
    {
        try
        {
            awaiter.GetResult();
        }
        catch (Exception e)
        {
            Error = NbdErrors.FromException(e, out ErrorMessage);
            _connection.OnDeviceError(this, e);
        }
        _connection.EnqueueReply(this);
    }
}
