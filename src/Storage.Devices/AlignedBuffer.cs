using System.Buffers;
using System.Runtime.InteropServices;

namespace Storage.Devices;

/// <summary>
/// Native memory aligned to <see cref="Alignment"/>, usable as <see cref="Memory{T}"/> with O_DIRECT.
/// Taken from and given back to <see cref="AlignedBufferPool"/>; one instance is reused for many I/Os. No finalizer
/// (a span may outlive the last reference, CA2015): the pool disposes what it does not keep.
/// </summary>
internal sealed unsafe class AlignedBuffer : MemoryManager<byte>
{
    /// <summary>Memory alignment that satisfies O_DIRECT on every Linux device (the page size).</summary>
    public const int Alignment = 4096;

    private byte* _pointer;

    public AlignedBuffer(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        _pointer = (byte*)NativeMemory.AlignedAlloc((nuint)length, Alignment);
        Length = length;
    }

    public int Length { get; }

    public override Span<byte> GetSpan()
    {
        ObjectDisposedException.ThrowIf(_pointer == null, this);
        return new Span<byte>(_pointer, Length);
    }

    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ObjectDisposedException.ThrowIf(_pointer == null, this);
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)elementIndex, (uint)Length, nameof(elementIndex));
        return new MemoryHandle(_pointer + elementIndex);
    }

    public override void Unpin()
    {
    }

    /// <summary>True when <paramref name="pointer"/> may be passed to an O_DIRECT read or write as it is.</summary>
    public static bool IsAligned(void* pointer) => ((nuint)pointer & (Alignment - 1)) == 0;

    protected override void Dispose(bool disposing)
    {
        byte* pointer = _pointer;
        _pointer = null;
        if (pointer != null)
            NativeMemory.AlignedFree(pointer);
    }
}
