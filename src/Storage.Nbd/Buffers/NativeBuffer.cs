using System.Buffers;
using System.Runtime.InteropServices;

namespace Storage.Nbd.Buffers;

/// <summary>
/// Native memory lent by <see cref="NativeBufferPool"/>: <see cref="Headroom"/> bytes, then <see cref="Length"/> data
/// bytes starting on a page boundary. The data is page-aligned so that an O_DIRECT device takes it without a bounce
/// copy; the headroom lets a reply header sit right before read data, so header and data go out in one send. The
/// garbage collector never sees the memory. No finalizer (a span may outlive the last reference, CA2015): the pool
/// frees what it does not keep.
/// </summary>
internal sealed unsafe class NativeBuffer : MemoryManager<byte>
{
    public const int Alignment = 4096;

    /// <summary>Bytes before the data, for a reply header.</summary>
    public const int Headroom = Alignment;

    private byte* _pointer;

    public NativeBuffer(int sizeClass, int length)
    {
        SizeClass = sizeClass;
        Length = length;
        _pointer = (byte*)NativeMemory.AlignedAlloc((nuint)(Headroom + length), Alignment);
    }

    /// <summary>Index of the pool bucket this buffer belongs to.</summary>
    public int SizeClass { get; }

    /// <summary>Data bytes (after the headroom).</summary>
    public int Length { get; }

    /// <summary>The whole allocation, headroom included.</summary>
    public override Span<byte> GetSpan()
    {
        ObjectDisposedException.ThrowIf(_pointer == null, this);
        return new Span<byte>(_pointer, Headroom + Length);
    }

    /// <summary>The data bytes.</summary>
    public Span<byte> Data => GetSpan()[Headroom..];

    /// <summary>The first <paramref name="length"/> data bytes as <see cref="Memory{T}"/>; allocates nothing.</summary>
    public Memory<byte> DataMemory(int length) => CreateMemory(Headroom, length);

    /// <summary><paramref name="headerLength"/> bytes of headroom followed by <paramref name="dataLength"/> data bytes.</summary>
    public Memory<byte> FrameMemory(int headerLength, int dataLength) => CreateMemory(Headroom - headerLength, headerLength + dataLength);

    /// <summary>Address of the data minus <paramref name="headerLength"/> (a header in the headroom); the memory never moves.</summary>
    public byte* FramePointer(int headerLength)
    {
        ObjectDisposedException.ThrowIf(_pointer == null, this);
        return _pointer + Headroom - headerLength;
    }

    /// <summary>The <paramref name="headerLength"/> headroom bytes right before the data.</summary>
    public Span<byte> HeaderSpan(int headerLength) => GetSpan().Slice(Headroom - headerLength, headerLength);

    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ObjectDisposedException.ThrowIf(_pointer == null, this);
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)elementIndex, (uint)(Headroom + Length), nameof(elementIndex));
        return new MemoryHandle(_pointer + elementIndex);
    }

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
        byte* pointer = _pointer;
        _pointer = null;
        if (pointer != null)
            NativeMemory.AlignedFree(pointer);
    }
}
