namespace Storage.Devices;

/// <summary>
/// A device that can do, on the caller's thread and at once, as much of a read or write as needs no waiting for a
/// disk — a file on a memory file system, or what the page cache holds. For callers that would rather copy in place
/// than hand every transfer to the thread pool and be woken when it is done: they call these first and the
/// asynchronous methods for the rest. The rules of <see cref="IBlockDevice"/> hold for these calls too.
/// </summary>
public interface INoWaitBlockDevice : IBlockDevice
{
    /// <summary>
    /// Reads the start of the range, as far as it can without waiting; returns the bytes read (0 to
    /// <c>buffer.Length</c>, a multiple of nothing in particular). The rest is for <see cref="IBlockDevice.ReadAsync"/>.
    /// </summary>
    int ReadWithoutWaiting(long offset, Span<byte> buffer);

    /// <summary>
    /// Writes the start of the range, as far as it can without waiting; returns the bytes written. Durable only after
    /// the next flush. The rest is for <see cref="IBlockDevice.WriteAsync"/>.
    /// </summary>
    int WriteWithoutWaiting(long offset, ReadOnlySpan<byte> buffer);
}
