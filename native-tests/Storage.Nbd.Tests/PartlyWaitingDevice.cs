using Storage.Devices;

namespace Storage.Nbd.Tests;

/// <summary>
/// A memory disk that copies only the first <c>inPlaceBytes</c> of a transfer without waiting (deliberately not a
/// whole number of sectors) and leaves the rest to its asynchronous calls, which complete later on the thread pool:
/// the shape of a file whose page cache holds only part of a range. Counts the calls of each kind.
/// </summary>
internal sealed class PartlyWaitingDevice(long capacity, int inPlaceBytes = 1000)
    : BlockDevice("partly-waiting", capacity, 512), INoWaitBlockDevice
{
    private int _inPlaceCalls;
    private int _forcedWrites;

    public MemoryBlockDevice Inner { get; } = new(capacity);

    public int InPlaceCalls => Volatile.Read(ref _inPlaceCalls);

    /// <summary>Writes that reached the device with force unit access.</summary>
    public int ForcedWrites => Volatile.Read(ref _forcedWrites);

    /// <summary>Thrown by the next copies without waiting, while set.</summary>
    public Exception? InPlaceFailure { get; set; }

    public int ReadWithoutWaiting(long offset, Span<byte> buffer)
    {
        int n = StartInPlace(offset, buffer.Length);
        Inner.Bytes.Slice((int)offset, n).CopyTo(buffer);
        return n;
    }

    public int WriteWithoutWaiting(long offset, ReadOnlySpan<byte> buffer)
    {
        int n = StartInPlace(offset, buffer.Length);
        buffer[..n].CopyTo(Inner.Bytes[(int)offset..]);
        return n;
    }

    private int StartInPlace(long offset, int length)
    {
        CheckRange(offset, length);
        Interlocked.Increment(ref _inPlaceCalls);
        if (InPlaceFailure is { } failure)
            throw failure;
        return Math.Min(length, inPlaceBytes);
    }

    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        await Task.Yield();
        await Inner.ReadAsync(offset, buffer, cancellationToken);
    }

    protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        await Task.Yield();
        if (forceUnitAccess)
            Interlocked.Increment(ref _forcedWrites);
        await Inner.WriteAsync(offset, buffer, forceUnitAccess, cancellationToken);
    }

    protected override ValueTask FlushCoreAsync(CancellationToken cancellationToken) => Inner.FlushAsync(cancellationToken);

    protected override void Dispose(bool disposing)
    {
        Inner.Dispose();
        base.Dispose(disposing);
    }
}
