using CommunityToolkit.HighPerformance;

namespace Storage.Parity;

/// <summary>
/// Systematic Reed-Solomon k+m over GF(2^8) with ISA-L's Cauchy generator (<c>gf_gen_cauchy1_matrix</c>),
/// so parity equals ISA-L <c>ec_encode_data</c> byte for byte.
/// A stripe is a <see cref="Span2D{T}"/> with k + m rows (data rows, then parity rows) whose width,
/// the chunk length, is a multiple of 64 bytes. Thread-safe; allocation-free once a decode plan is cached.
/// </summary>
public sealed unsafe class ReedSolomonCodec
{
    private readonly LinearCode _code;

    /// <summary>Creates a k+m code.</summary>
    /// <param name="dataCount">k ≥ 1.</param>
    /// <param name="parityCount">m ≥ 1, with k + m ≤ 255.</param>
    /// <param name="kernels">The kernel set; <see cref="KernelSets.Default"/> when null.</param>
    public ReedSolomonCodec(int dataCount, int parityCount, KernelSet? kernels = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(dataCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(parityCount, 1);
        if (dataCount + parityCount > 255)
            throw new ArgumentOutOfRangeException(nameof(parityCount), $"k + m = {dataCount + parityCount}; Reed-Solomon over GF(2^8) allows at most 255 chunks per stripe.");
        _code = new LinearCode(GfMatrix.Cauchy(dataCount + parityCount, dataCount), dataCount, parityCount, kernels ?? KernelSets.Default);
    }

    /// <summary>k, the number of data chunks.</summary>
    public int DataCount => _code.DataCount;

    /// <summary>m, the number of parity chunks and of losses that can be rebuilt.</summary>
    public int ParityCount => _code.ParityCount;

    /// <summary>The kernel set in use.</summary>
    public KernelSet Kernels => _code.Kernels;

    /// <summary>The (k+m)×k generator matrix, row-major.</summary>
    public ReadOnlySpan<byte> GeneratorMatrix => _code.Generator;

    /// <summary>Writes the m parity rows of <paramref name="stripe"/> from its k data rows.</summary>
    /// <exception cref="ArgumentException">Wrong row count, or a width that is not a multiple of 64.</exception>
    public void Encode(Span2D<byte> stripe)
    {
        CheckShape(stripe);
        if (stripe.Width == 0)
            return;
        _code.Encode(stripe, stripe.Slice(DataCount, 0, ParityCount, stripe.Width));
    }

    /// <summary>
    /// Rebuilds the rows listed in <paramref name="lost"/> (data or parity, any order) from the others.
    /// Only the listed rows are written.
    /// </summary>
    /// <exception cref="TooManyLostChunksException">More than m rows are listed.</exception>
    /// <exception cref="ArgumentException">An index is out of range or repeated, or the shape is wrong.</exception>
    public void Reconstruct(Span2D<byte> stripe, ReadOnlySpan<int> lost)
    {
        CheckShape(stripe);
        if (stripe.Width == 0)
        {
            ErasureSet.From(lost, _code.RowCount, nameof(lost));
            return;
        }
        _code.Reconstruct(stripe, lost, nameof(lost));
    }

    /// <summary>
    /// Read-modify-write: folds the change of data row <paramref name="dataIndex"/> from <paramref name="oldData"/>
    /// to <paramref name="newData"/> into the m parity rows, in one pass.
    /// </summary>
    /// <param name="dataIndex">The changed data row, 0..k-1.</param>
    /// <param name="oldData">Its previous content.</param>
    /// <param name="newData">Its new content.</param>
    /// <param name="parity">The m parity chunks (rows), updated in place.</param>
    public void UpdateParity(int dataIndex, ReadOnlySpan<byte> oldData, ReadOnlySpan<byte> newData, Span2D<byte> parity)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(dataIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(dataIndex, DataCount);
        if (parity.Height != ParityCount)
            throw new ArgumentException($"The parity view has {parity.Height} rows; a {DataCount}+{ParityCount} code has {ParityCount} parity rows.", nameof(parity));
        Stripe.CheckChunkLength(parity.Width, nameof(parity));
        Stripe.CheckSameLength(parity.Width, oldData.Length, nameof(oldData));
        Stripe.CheckSameLength(parity.Width, newData.Length, nameof(newData));
        if (parity.Width == 0)
            return;
        nint* rows = stackalloc nint[ParityCount];
        fixed (byte* oldPtr = oldData)
        fixed (byte* newPtr = newData)
        fixed (byte* row0 = &parity.DangerousGetReference())
        {
            Stripe.RowAddresses(parity, row0, new Span<nint>(rows, ParityCount));
            _code.Update(dataIndex, oldPtr, newPtr, (byte**)rows, parity.Width);
        }
    }

    /// <summary>
    /// Recomputes the parity and compares. Returns how many parity rows differ and writes their
    /// row indices (k..k+m-1) into <paramref name="mismatched"/>, as many as fit.
    /// </summary>
    public int Verify(ReadOnlySpan2D<byte> stripe, Span<int> mismatched = default)
    {
        CheckShape(stripe);
        return stripe.Width == 0 ? 0 : _code.Verify(stripe, mismatched);
    }

    private void CheckShape(ReadOnlySpan2D<byte> stripe)
    {
        Stripe.CheckRows(stripe.Height, DataCount, ParityCount, nameof(stripe));
        Stripe.CheckChunkLength(stripe.Width, nameof(stripe));
    }
}
