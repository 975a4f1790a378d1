using System.Buffers;
using CommunityToolkit.HighPerformance;

namespace Storage.Parity;

/// <summary>
/// RAID-6 P+Q parity, byte-identical to Linux md and ISA-L <c>pq_gen</c>: P = Σ D_i, Q = Σ g^i·D_i.
/// A stripe is a <see cref="Span2D{T}"/> with k + 2 rows (data, then P, then Q), width a multiple of 64.
/// Recovers any one or two lost rows; verify localizes a single silently corrupt chunk.
/// Thread-safe; allocation-free once a recovery pattern has been seen.
/// </summary>
public sealed unsafe class Raid6Codec
{
    /// <summary>The largest data chunk count (md's limit of 256 members).</summary>
    public const int MaxDataChunks = 254;

    private readonly LinearCode?[] _codes = new LinearCode?[MaxDataChunks + 1];
    private readonly GfCoefficients?[] _updates = new GfCoefficients?[MaxDataChunks];

    /// <summary>Creates the codec; <see cref="KernelSets.Default"/> when <paramref name="kernels"/> is null.</summary>
    public Raid6Codec(KernelSet? kernels = null) => Kernels = kernels ?? KernelSets.Default;

    /// <summary>The kernel set in use.</summary>
    public KernelSet Kernels { get; }

    /// <summary>Writes rows k (P) and k+1 (Q) from the k data rows before them.</summary>
    public void ComputeParity(Span2D<byte> stripe)
    {
        int k = CheckShape(stripe);
        if (stripe.Width == 0)
            return;
        nint* rows = stackalloc nint[k + 2];
        fixed (byte* row0 = &stripe.DangerousGetReference())
        {
            Stripe.RowAddresses(stripe, row0, new Span<nint>(rows, k + 2));
            Kernels.PqGen((byte**)rows, k, (byte*)rows[k], (byte*)rows[k + 1], stripe.Width);
        }
    }

    /// <summary>
    /// Read-modify-write: with Δ = old ^ new for data index <paramref name="dataIndex"/>,
    /// P ^= Δ and Q ^= g^index·Δ, in one pass.
    /// </summary>
    public void UpdateParity(int dataIndex, ReadOnlySpan<byte> oldData, ReadOnlySpan<byte> newData, Span<byte> p, Span<byte> q)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(dataIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(dataIndex, MaxDataChunks);
        Stripe.CheckChunkLength(p.Length, nameof(p));
        Stripe.CheckSameLength(p.Length, q.Length, nameof(q));
        Stripe.CheckSameLength(p.Length, oldData.Length, nameof(oldData));
        Stripe.CheckSameLength(p.Length, newData.Length, nameof(newData));
        var coefficients = _updates[dataIndex] ??= UpdateCoefficients(dataIndex);
        fixed (byte* o = oldData)
        fixed (byte* n = newData)
        fixed (byte* pp = p)
        fixed (byte* qp = q)
        {
            byte** inputs = stackalloc byte*[2] { o, n };
            byte** outputs = stackalloc byte*[2] { pp, qp };
            Kernels.DotProduct(coefficients, inputs, outputs, p.Length, accumulate: true);
        }
    }

    /// <summary>
    /// Rebuilds one or two lost rows (data 0..k-1, P = k, Q = k+1) from the others; only those rows are written.
    /// Two lost data chunks follow Anvin: Dx = A·(P^Pxy) ^ B·(Q^Qxy), applied as one two-output pass.
    /// </summary>
    /// <param name="stripe">The stripe.</param>
    /// <param name="lost">The first lost row.</param>
    /// <param name="secondLost">The second lost row, or -1.</param>
    public void Recover(Span2D<byte> stripe, int lost, int secondLost = -1)
    {
        int k = CheckShape(stripe);
        ReadOnlySpan<int> rows = secondLost < 0 ? [lost] : [lost, secondLost];
        if (stripe.Width == 0)
        {
            ErasureSet.From(rows, k + 2, nameof(lost));
            return;
        }
        CodeFor(k).Reconstruct(stripe, rows, nameof(lost));
    }

    /// <summary>
    /// Recomputes P and Q and compares them with the stripe's. When they disagree, the syndromes
    /// P* = P ^ P', Q* = Q ^ Q' locate a single bad data chunk z by g^z = Q*/P*, the same z in every byte.
    /// </summary>
    public Raid6Check Verify(ReadOnlySpan2D<byte> stripe)
    {
        int k = CheckShape(stripe);
        int width = stripe.Width;
        if (width == 0)
            return new Raid6Check(true, true, -1);
        byte[] scratch = ArrayPool<byte>.Shared.Rent(2 * width);
        try
        {
            nint* rows = stackalloc nint[k + 2];
            fixed (byte* row0 = &stripe.DangerousGetReference())
            fixed (byte* syndromes = scratch)
            {
                Stripe.RowAddresses(stripe, row0, new Span<nint>(rows, k + 2));
                byte* pStar = syndromes, qStar = syndromes + width;
                Kernels.PqGen((byte**)rows, k, pStar, qStar, width);
                byte** pair = stackalloc byte*[2] { pStar, (byte*)rows[k] };
                Kernels.Xor(pair, 2, pStar, width);
                pair[0] = qStar;
                pair[1] = (byte*)rows[k + 1];
                Kernels.Xor(pair, 2, qStar, width);
                return Localize(new ReadOnlySpan<byte>(pStar, width), new ReadOnlySpan<byte>(qStar, width), k);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    private static Raid6Check Localize(ReadOnlySpan<byte> pStar, ReadOnlySpan<byte> qStar, int k)
    {
        bool pMatches = !pStar.ContainsAnyExcept((byte)0);
        bool qMatches = !qStar.ContainsAnyExcept((byte)0);
        if (pMatches && qMatches)
            return new(true, true, -1);
        if (qMatches)
            return new(false, true, k);
        if (pMatches)
            return new(true, false, k + 1);

        int z = -1;
        for (int b = 0; b < pStar.Length; b++)
        {
            if ((pStar[b] | qStar[b]) == 0)
                continue;
            if (pStar[b] == 0 || qStar[b] == 0)
                return new(false, false, -1);
            int candidate = (Gf256.Log(qStar[b]) - Gf256.Log(pStar[b]) + 255) % 255;
            if (z >= 0 && candidate != z)
                return new(false, false, -1);
            z = candidate;
        }
        return new(false, false, z < k ? z : -1);
    }

    private LinearCode CodeFor(int k)
        => _codes[k] ??= new LinearCode(GfMatrix.Raid6(k), k, 2, Kernels);

    private static GfCoefficients UpdateCoefficients(int index)
    {
        byte g = Gf256.Exp(index);
        return new GfCoefficients([1, 1, g, g], 2, 2);
    }

    private static int CheckShape(ReadOnlySpan2D<byte> stripe)
    {
        int k = stripe.Height - 2;
        if (k < 1 || k > MaxDataChunks)
            throw new ArgumentException($"The stripe has {stripe.Height} rows; RAID-6 needs 1..{MaxDataChunks} data rows plus P and Q.", nameof(stripe));
        Stripe.CheckChunkLength(stripe.Width, nameof(stripe));
        return k;
    }
}
