using System.Runtime.CompilerServices;
using CommunityToolkit.HighPerformance;

namespace Storage.Parity;

/// <summary>Shape checks and row addressing for stripes: one row per chunk, data rows first, then parity rows.</summary>
internal static unsafe class Stripe
{
    /// <summary>Chunk lengths must be a multiple of this (one 512-bit vector).</summary>
    public const int ChunkAlignment = 64;

    public static void CheckChunkLength(int length, string paramName)
    {
        if (length % ChunkAlignment != 0)
            throw new ArgumentException(
                $"Chunk length {length} is not a multiple of {ChunkAlignment} bytes. Every parity kernel works in " +
                $"{ChunkAlignment}-byte steps; use a chunk size that is a multiple of {ChunkAlignment} (RAID chunks are powers of two ≥ 4 KiB).",
                paramName);
    }

    /// <summary>Throws unless a k+m stripe has k+m rows; the message is only built on failure.</summary>
    public static void CheckRows(int actual, int dataCount, int parityCount, string paramName)
    {
        if (actual != dataCount + parityCount)
            throw new ArgumentException($"The stripe has {actual} rows; a {dataCount}+{parityCount} code needs {dataCount + parityCount}.", paramName);
    }

    /// <summary>Writes the address of each row in <paramref name="rows"/>, given the pinned address of row 0.</summary>
    public static void RowAddresses(ReadOnlySpan2D<byte> stripe, byte* row0, Span<nint> rows)
    {
        ref byte first = ref Unsafe.AsRef(in stripe.DangerousGetReference());
        for (int i = 0; i < rows.Length; i++)
            rows[i] = (nint)(row0 + Unsafe.ByteOffset(ref first, ref Unsafe.AsRef(in stripe.DangerousGetReferenceAt(i, 0))));
    }

    public static void CheckSameLength(int expected, int actual, string paramName)
    {
        if (actual != expected)
            throw new ArgumentException($"The buffer holds {actual} bytes; it must match the chunk length {expected}.", paramName);
    }
}
