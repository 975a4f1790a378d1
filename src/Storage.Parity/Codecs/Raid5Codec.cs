using CommunityToolkit.HighPerformance;

namespace Storage.Parity;

/// <summary>
/// RAID-5 parity: P = D0 ^ … ^ D(k-1), as Linux md and ISA-L <c>xor_gen</c> compute it.
/// A stripe is a <see cref="Span2D{T}"/> with k + 1 rows (data, then P), width a multiple of 64.
/// Thread-safe and allocation-free.
/// </summary>
public sealed unsafe class Raid5Codec
{
    /// <summary>Creates the codec; <see cref="KernelSets.Default"/> when <paramref name="kernels"/> is null.</summary>
    public Raid5Codec(KernelSet? kernels = null) => Kernels = kernels ?? KernelSets.Default;

    /// <summary>The kernel set in use.</summary>
    public KernelSet Kernels { get; }

    /// <summary>Writes the last row of <paramref name="stripe"/> (P) from the rows before it (k ≥ 1 data rows).</summary>
    public void ComputeParity(Span2D<byte> stripe) => Rebuild(stripe, stripe.Height - 1);

    /// <summary>Rebuilds the one lost row <paramref name="lost"/> (data or P) as the XOR of all the others.</summary>
    public void Recover(Span2D<byte> stripe, int lost) => Rebuild(stripe, lost);

    /// <summary>Folds the change of one data chunk into P: P ^= old ^ new, in one pass.</summary>
    public void UpdateParity(ReadOnlySpan<byte> oldData, ReadOnlySpan<byte> newData, Span<byte> parity)
    {
        Stripe.CheckChunkLength(parity.Length, nameof(parity));
        Stripe.CheckSameLength(parity.Length, oldData.Length, nameof(oldData));
        Stripe.CheckSameLength(parity.Length, newData.Length, nameof(newData));
        fixed (byte* o = oldData)
        fixed (byte* n = newData)
        fixed (byte* p = parity)
        {
            byte** sources = stackalloc byte*[3] { p, o, n };
            Kernels.Xor(sources, 3, p, parity.Length);
        }
    }

    /// <summary>True when P equals the XOR of the data rows.</summary>
    public bool Verify(ReadOnlySpan2D<byte> stripe)
    {
        CheckShape(stripe);
        int k = stripe.Height - 1;
        nint* rows = stackalloc nint[stripe.Height];
        const int Step = 4096;
        byte* parity = stackalloc byte[Step];
        byte** sources = stackalloc byte*[k];
        fixed (byte* row0 = &stripe.DangerousGetReference())
        {
            Stripe.RowAddresses(stripe, row0, new Span<nint>(rows, stripe.Height));
            for (nint offset = 0; offset < stripe.Width; offset += Step)
            {
                nint length = Math.Min(Step, stripe.Width - offset);
                for (int i = 0; i < k; i++)
                    sources[i] = (byte*)rows[i] + offset;
                Kernels.Xor(sources, k, parity, length);
                if (!new ReadOnlySpan<byte>(parity, (int)length).SequenceEqual(new ReadOnlySpan<byte>((byte*)rows[k] + offset, (int)length)))
                    return false;
            }
        }
        return true;
    }

    private void Rebuild(Span2D<byte> stripe, int target)
    {
        CheckShape(stripe);
        ArgumentOutOfRangeException.ThrowIfNegative(target);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(target, stripe.Height);
        if (stripe.Width == 0)
            return;
        int count = stripe.Height;
        nint* rows = stackalloc nint[count];
        fixed (byte* row0 = &stripe.DangerousGetReference())
        {
            Stripe.RowAddresses(stripe, row0, new Span<nint>(rows, count));
            byte* destination = (byte*)rows[target];
            rows[target] = rows[count - 1];   // the XOR of every other row, in any order
            Kernels.Xor((byte**)rows, count - 1, destination, stripe.Width);
        }
    }

    private static void CheckShape(ReadOnlySpan2D<byte> stripe)
    {
        if (stripe.Height < 2)
            throw new ArgumentException($"The stripe has {stripe.Height} rows; RAID-5 needs at least one data row and the parity row.", nameof(stripe));
        if (stripe.Height > 256)
            throw new ArgumentException($"The stripe has {stripe.Height} rows; at most 256 are supported.", nameof(stripe));
        Stripe.CheckChunkLength(stripe.Width, nameof(stripe));
    }
}
