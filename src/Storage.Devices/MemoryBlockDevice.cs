namespace Storage.Devices;

/// <summary>A disk held in memory: writes are durable at once; trim zeroes. For tests and benchmarks. Never waits.</summary>
public sealed class MemoryBlockDevice : BlockDevice, INoWaitBlockDevice
{
    private readonly byte[] _bytes;

    /// <summary>Creates a zeroed disk of <paramref name="capacity"/> bytes.</summary>
    public MemoryBlockDevice(long capacity, int sectorSize = 512, string name = "memory")
        : base(name, capacity, sectorSize)
    {
        if (capacity > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, $"A memory disk holds at most {Array.MaxLength} bytes.");
        _bytes = new byte[capacity];
    }

    /// <summary>The disk's bytes, for tests that inspect or damage them directly.</summary>
    public Span<byte> Bytes => _bytes;

    /// <inheritdoc />
    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        _bytes.AsSpan((int)offset, buffer.Length).CopyTo(buffer.Span);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        buffer.Span.CopyTo(_bytes.AsSpan((int)offset));
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public int ReadWithoutWaiting(long offset, Span<byte> buffer)
    {
        CheckRange(offset, buffer.Length);
        _bytes.AsSpan((int)offset, buffer.Length).CopyTo(buffer);
        return buffer.Length;
    }

    /// <inheritdoc />
    public int WriteWithoutWaiting(long offset, ReadOnlySpan<byte> buffer)
    {
        CheckRange(offset, buffer.Length);
        buffer.CopyTo(_bytes.AsSpan((int)offset));
        return buffer.Length;
    }

    /// <inheritdoc />
    protected override ValueTask FlushCoreAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <inheritdoc />
    protected override ValueTask TrimCoreAsync(long offset, long length, CancellationToken cancellationToken)
    {
        _bytes.AsSpan((int)offset, (int)length).Clear();
        return ValueTask.CompletedTask;
    }
}
