using Storage.Parity.Interop;

namespace Storage.Parity.Tests;

/// <summary>
/// Tests that need a system component skip with the reason when it is absent — except in CI
/// (CI=true), where .ci/run installs everything and a missing piece is a failure.
/// </summary>
internal static class Requires
{
    public static bool InCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    public static IsaL IsaL()
    {
        if (Parity.Interop.IsaL.Instance is { } library)
            return library;
        Missing(Parity.Interop.IsaL.UnavailableReason);
        return null!;
    }

    public static void Missing(string reason)
    {
        if (InCi)
            Assert.Fail($"CI must install this: {reason}");
        Assert.Skip(reason);
    }
}

/// <summary>A native buffer aligned to a page; ISA-L needs 32-byte alignment.</summary>
internal sealed unsafe class AlignedRows : IDisposable
{
    public AlignedRows(int rows, int width, int seed, int extraPitch = 64)
    {
        Rows = rows;
        Width = width;
        Pitch = width + extraPitch;
        Base = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(rows * Pitch + 64), 4096);
        new Random(seed).NextBytes(new Span<byte>(Base, rows * Pitch));
    }

    public int Rows { get; }

    public int Width { get; }

    public int Pitch { get; }

    public byte* Base { get; }

    public byte* this[int row] => Base + row * Pitch;

    public CommunityToolkit.HighPerformance.Span2D<byte> Span => new(Base, Rows, Width, Pitch - Width);

    public byte[] RowCopy(int row) => new Span<byte>(this[row], Width).ToArray();

    public void Dispose() => System.Runtime.InteropServices.NativeMemory.AlignedFree(Base);
}
