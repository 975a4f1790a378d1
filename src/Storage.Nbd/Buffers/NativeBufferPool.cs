using System.Numerics;

namespace Storage.Nbd.Buffers;

/// <summary>
/// Buckets of <see cref="NativeBuffer"/>s by power-of-two size, 4 KiB to the largest payload. Renting and returning
/// take a bucket's lock for a few instructions and allocate nothing while the bucket holds a buffer. Each bucket keeps
/// at most about 16 MiB (at least four buffers: a queue depth of 8 or more at 1 MiB, or two 32 MiB requests, cycles
/// without allocating), so a burst of large requests does not pin its peak memory for ever.
/// Thread-safe.
/// </summary>
internal sealed class NativeBufferPool : IDisposable
{
    private const int MinShift = 12;
    private const long RetainedBytesPerBucket = 16 << 20;

    private readonly Bucket[] _buckets;
    private int _disposed;

    public NativeBufferPool(int maxLength)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        int maxShift = Math.Max(MinShift, ShiftFor(maxLength));
        _buckets = new Bucket[maxShift - MinShift + 1];
        for (int i = 0; i < _buckets.Length; i++)
        {
            int size = 1 << (MinShift + i);
            _buckets[i] = new Bucket(size, (int)Math.Clamp(RetainedBytesPerBucket / size, 4, 256));
        }
        MaxLength = 1 << maxShift;
    }

    /// <summary>The largest length <see cref="Rent"/> accepts.</summary>
    public int MaxLength { get; }

    /// <summary>A buffer of at least <paramref name="length"/> bytes (1 to <see cref="MaxLength"/>).</summary>
    public NativeBuffer Rent(int length)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(length, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, MaxLength);
        int index = Math.Max(0, ShiftFor(length) - MinShift);
        return _buckets[index].Rent(index);
    }

    /// <summary>Gives <paramref name="buffer"/> back; it must not be used afterwards.</summary>
    public void Return(NativeBuffer buffer)
    {
        var bucket = _buckets[buffer.SizeClass];
        if (Volatile.Read(ref _disposed) != 0 || !bucket.TryReturn(buffer))
            ((IDisposable)buffer).Dispose();
        else if (Volatile.Read(ref _disposed) != 0)
            bucket.Clear(); // raced with Dispose: free what this return put back

    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        foreach (var bucket in _buckets)
            bucket.Clear();
    }

    private static int ShiftFor(int length) => BitOperations.Log2((uint)length - 1) + 1;

    private sealed class Bucket(int size, int capacity)
    {
        private readonly NativeBuffer?[] _free = new NativeBuffer?[capacity];
        private readonly Lock _lock = new();
        private int _count;

        public NativeBuffer Rent(int index)
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
            return new NativeBuffer(index, size);
        }

        public bool TryReturn(NativeBuffer buffer)
        {
            lock (_lock)
            {
                if (_count == _free.Length)
                    return false;
                _free[_count++] = buffer;
                return true;
            }
        }

        public void Clear()
        {
            lock (_lock)
            {
                for (int i = 0; i < _count; i++)
                {
                    ((IDisposable)_free[i]!).Dispose();
                    _free[i] = null;
                }
                _count = 0;
            }
        }
    }
}
