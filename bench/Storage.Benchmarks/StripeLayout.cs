using System.Runtime.InteropServices;
using CommunityToolkit.HighPerformance;

namespace Storage.Benchmarks;

/// <summary>Where the chunks of a stripe sit relative to 4 KiB pages.</summary>
public enum StripeLayout
{
    /// <summary>Every chunk at a different page offset (multiples of 64 B): no 4K aliasing between chunks.</summary>
    Spread,

    /// <summary>Every chunk page-aligned, as O_DIRECT buffers are: all at page offset 0.</summary>
    PageAligned,

    /// <summary>Every chunk at page offset 64: page-aligned buffers behind a 64-byte header.</summary>
    Page64,
}

/// <summary>One stripe of native memory laid out by a <see cref="StripeLayout"/>; rows are 64-byte aligned.</summary>
public sealed unsafe class StripeBuffers : IDisposable
{
    private const int Page = 4096;
    private const int SpreadStep = 320;   // 5·64: i·320 mod 4096 differs for the first 64 rows
    private readonly byte* _allocation;

    public StripeBuffers(int rows, int chunk, StripeLayout layout, int seed = 1)
    {
        Rows = rows;
        Chunk = chunk;
        int rounded = (chunk + Page - 1) / Page * Page;
        Stride = layout == StripeLayout.Spread ? rounded + SpreadStep : rounded;
        int start = layout == StripeLayout.Page64 ? 64 : 0;
        nuint bytes = (nuint)((long)rows * Stride + start + Page);
        _allocation = (byte*)NativeMemory.AlignedAlloc(bytes, Page);
        Base = _allocation + start;
        new Random(seed).NextBytes(new Span<byte>(_allocation, (int)bytes));
        Pointers = (byte**)NativeMemory.Alloc((nuint)(rows * sizeof(byte*)));
        for (int i = 0; i < rows; i++)
            Pointers[i] = this[i];
    }

    public int Rows { get; }

    public int Chunk { get; }

    public int Stride { get; }

    public byte* Base { get; }

    /// <summary>Row addresses, for ISA-L's pointer arrays.</summary>
    public byte** Pointers { get; }

    public byte* this[int row] => Base + (long)row * Stride;

    public Span2D<byte> Stripe => new(Base, Rows, Chunk, Stride - Chunk);

    public Span2D<byte> Slice(int firstRow, int rows) => new(this[firstRow], rows, Chunk, Stride - Chunk);

    public void Dispose()
    {
        NativeMemory.AlignedFree(_allocation);
        NativeMemory.Free(Pointers);
    }
}
