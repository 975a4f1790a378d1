using System.Buffers;
using System.Runtime.InteropServices;

namespace Storage.Devices.Tests;

internal static class Bytes
{
    public static byte[] Random(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>Reads the whole device.</summary>
    public static async Task<byte[]> ReadAllAsync(IBlockDevice device)
    {
        var bytes = new byte[device.Capacity];
        await device.ReadAsync(0, bytes, TestContext.Current.CancellationToken);
        return bytes;
    }

    /// <summary>Index of the first differing byte, for messages; -1 when equal.</summary>
    public static long FirstDifference(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        int common = expected.CommonPrefixLength(actual);
        return common == expected.Length ? -1 : common;
    }

    public static void Equal(byte[] expected, byte[] actual, string what) => Equal(expected.AsSpan(), actual, what);

    public static void Equal(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual, string what)
    {
        long at = FirstDifference(expected, actual);
        Assert.True(at < 0, $"{what}: first difference at byte {at}");
    }
}

/// <summary>Native memory with a chosen alignment, as an O_DIRECT caller would pass it.</summary>
internal sealed unsafe class NativeBuffer : MemoryManager<byte>
{
    private readonly byte* _base;
    private readonly int _length;

    public NativeBuffer(int length, int alignment, int misalign = 0)
    {
        _base = (byte*)NativeMemory.AlignedAlloc((nuint)(length + misalign), (nuint)alignment);
        Pointer = _base + misalign;
        _length = length;
    }

    public byte* Pointer { get; }

    public override Span<byte> GetSpan() => new(Pointer, _length);

    public override MemoryHandle Pin(int elementIndex = 0) => new(Pointer + elementIndex);

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing) => NativeMemory.AlignedFree(_base);
}
