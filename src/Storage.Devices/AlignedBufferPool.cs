namespace Storage.Devices;

/// <summary>
/// A bounded stack of <see cref="AlignedBuffer"/>s of one size. Renting and returning take a lock for a
/// few instructions and allocate nothing while the pool holds a buffer; buffers beyond the bound are freed
/// on return, so a burst of concurrent I/O does not pin its peak memory for ever.
/// </summary>
internal sealed class AlignedBufferPool
{
    /// <summary>Bounce-buffer size: I/Os larger than this through unaligned memory go in several steps.</summary>
    public const int DefaultBufferSize = 256 * 1024;

    private readonly AlignedBuffer?[] _free;
    private readonly Lock _lock = new();
    private int _count;

    public AlignedBufferPool(int bufferSize, int maxRetained)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bufferSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxRetained);
        BufferSize = bufferSize;
        _free = new AlignedBuffer?[maxRetained];
    }

    /// <summary>The pool the file and raw devices bounce unaligned O_DIRECT I/O through.</summary>
    public static AlignedBufferPool Shared { get; } = new(DefaultBufferSize, Math.Max(16, 4 * Environment.ProcessorCount));

    public int BufferSize { get; }

    public AlignedBuffer Rent()
    {
        lock (_lock)
        {
            if (_count > 0)
            {
                var buffer = _free[--_count]!;
                _free[_count] = null;
                return buffer;
            }
        }
        return new AlignedBuffer(BufferSize);
    }

    public void Return(AlignedBuffer buffer)
    {
        lock (_lock)
        {
            if (_count < _free.Length)
            {
                _free[_count++] = buffer;
                return;
            }
        }
        ((IDisposable)buffer).Dispose();
    }
}
