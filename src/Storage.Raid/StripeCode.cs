using CommunityToolkit.HighPerformance;
using Storage.Parity;

namespace Storage.Raid;

/// <summary>
/// The redundancy math of one level over a stripe segment: a <see cref="Span2D{T}"/> with k data rows then
/// m parity rows, all the same byte range of their chunks (width a multiple of 64).
/// </summary>
internal abstract class StripeCode
{
    protected StripeCode(int dataCount, int parityCount)
    {
        DataCount = dataCount;
        ParityCount = parityCount;
    }

    public int DataCount { get; }

    public int ParityCount { get; }

    public int RowCount => DataCount + ParityCount;

    /// <summary>Writes the parity rows from the data rows.</summary>
    public abstract void Encode(Span2D<byte> stripe);

    /// <summary>Rebuilds the rows in <paramref name="lost"/> (at most m) from the others.</summary>
    public abstract void Reconstruct(Span2D<byte> stripe, ReadOnlySpan<int> lost);

    /// <summary>Folds a change of data row <paramref name="dataIndex"/> from old to new into the parity rows.</summary>
    public abstract void Update(int dataIndex, ReadOnlySpan<byte> oldData, ReadOnlySpan<byte> newData, Span2D<byte> parity);

    /// <summary>
    /// Checks a whole stripe. Returns true when parity matches; otherwise <paramref name="corruptRow"/> is the
    /// single row whose rewrite makes the stripe consistent, or -1 when no single row can be blamed.
    /// </summary>
    public virtual bool Check(Span2D<byte> stripe, Span2D<byte> scratch, out int corruptRow)
    {
        corruptRow = -1;
        if (Consistent(stripe))
            return true;
        if (ParityCount < 2)
            return false;   // one parity row detects but cannot locate
        // Blame each row in turn: with m ≥ 2, exactly one single-row rebuild makes the stripe consistent
        // when exactly one row is corrupt.
        for (int row = 0; row < RowCount; row++)
        {
            stripe.CopyTo(scratch);
            Reconstruct(scratch, [row]);
            if (Consistent(scratch))
            {
                corruptRow = row;
                return false;
            }
        }
        return false;
    }

    /// <summary>True when the parity rows match the data rows.</summary>
    public bool IsConsistent(Span2D<byte> stripe) => Consistent(stripe);

    /// <summary>True when the parity rows match the data rows.</summary>
    protected abstract bool Consistent(Span2D<byte> stripe);

    /// <summary>The code for a geometry.</summary>
    public static StripeCode For(ArrayGeometry geometry, KernelSet? kernels = null) => geometry.Level switch
    {
        RaidLevel.Raid0 => new NoParityCode(geometry.DataCount),
        RaidLevel.Raid1 => new MirrorCode(geometry.ParityCount),
        RaidLevel.Raid5 => new XorCode(geometry.DataCount, new Raid5Codec(kernels)),
        RaidLevel.Raid6 => new PqCode(geometry.DataCount, new Raid6Codec(kernels)),
        _ => new ReedSolomonCode(new ReedSolomonCodec(geometry.DataCount, geometry.ParityCount, kernels)),
    };
}

/// <summary>RAID-0: no parity rows; nothing can be rebuilt.</summary>
internal sealed class NoParityCode(int dataCount) : StripeCode(dataCount, 0)
{
    public override void Encode(Span2D<byte> stripe) { }

    public override void Reconstruct(Span2D<byte> stripe, ReadOnlySpan<int> lost)
    {
        if (!lost.IsEmpty)
            throw new TooManyLostChunksException(lost.Length, 0);
    }

    public override void Update(int dataIndex, ReadOnlySpan<byte> oldData, ReadOnlySpan<byte> newData, Span2D<byte> parity) { }

    protected override bool Consistent(Span2D<byte> stripe) => true;
}

/// <summary>RAID-1: every parity row is a copy of the one data row.</summary>
internal sealed class MirrorCode(int copies) : StripeCode(1, copies)
{
    public override void Encode(Span2D<byte> stripe)
    {
        for (int row = 1; row < RowCount; row++)
            stripe.GetRowSpan(0).CopyTo(stripe.GetRowSpan(row));
    }

    public override void Reconstruct(Span2D<byte> stripe, ReadOnlySpan<int> lost)
    {
        if (lost.Length > ParityCount)
            throw new TooManyLostChunksException(lost.Length, ParityCount);
        int source = 0;
        while (lost.Contains(source))
            source++;
        foreach (int row in lost)
            stripe.GetRowSpan(source).CopyTo(stripe.GetRowSpan(row));
    }

    public override void Update(int dataIndex, ReadOnlySpan<byte> oldData, ReadOnlySpan<byte> newData, Span2D<byte> parity)
    {
        for (int row = 0; row < parity.Height; row++)
            newData.CopyTo(parity.GetRowSpan(row));
    }

    protected override bool Consistent(Span2D<byte> stripe)
    {
        for (int row = 1; row < RowCount; row++)
        {
            if (!stripe.GetRowSpan(row).SequenceEqual(stripe.GetRowSpan(0)))
                return false;
        }
        return true;
    }

    public override bool Check(Span2D<byte> stripe, Span2D<byte> scratch, out int corruptRow)
    {
        corruptRow = -1;
        int rows = RowCount;
        if (Consistent(stripe))
            return true;
        // With three or more copies the odd one out is the one that differs from a majority.
        for (int row = 0; row < rows && rows >= 3; row++)
        {
            int agree = 0;
            for (int other = 0; other < rows; other++)
                agree += other != row && stripe.GetRowSpan(other).SequenceEqual(stripe.GetRowSpan(row)) ? 1 : 0;
            if (agree == 0)
            {
                int next = (row + 1) % rows;
                int majority = 0;
                for (int other = 0; other < rows; other++)
                    majority += other != row && stripe.GetRowSpan(other).SequenceEqual(stripe.GetRowSpan(next)) ? 1 : 0;
                if (majority == rows - 2)
                {
                    corruptRow = row;
                    break;
                }
            }
        }
        return false;
    }
}

/// <summary>RAID-5 XOR parity.</summary>
internal sealed class XorCode(int dataCount, Raid5Codec codec) : StripeCode(dataCount, 1)
{
    public override void Encode(Span2D<byte> stripe) => codec.ComputeParity(stripe);

    public override void Reconstruct(Span2D<byte> stripe, ReadOnlySpan<int> lost)
    {
        if (lost.Length > 1)
            throw new TooManyLostChunksException(lost.Length, 1);
        if (lost.Length == 1)
            codec.Recover(stripe, lost[0]);
    }

    public override void Update(int dataIndex, ReadOnlySpan<byte> oldData, ReadOnlySpan<byte> newData, Span2D<byte> parity)
        => codec.UpdateParity(oldData, newData, parity.GetRowSpan(0));

    protected override bool Consistent(Span2D<byte> stripe) => codec.Verify(stripe);
}

/// <summary>RAID-6 P+Q parity with syndrome localisation of a single corrupt row.</summary>
internal sealed class PqCode(int dataCount, Raid6Codec codec) : StripeCode(dataCount, 2)
{
    public override void Encode(Span2D<byte> stripe) => codec.ComputeParity(stripe);

    public override void Reconstruct(Span2D<byte> stripe, ReadOnlySpan<int> lost)
    {
        switch (lost.Length)
        {
            case 0: return;
            case 1: codec.Recover(stripe, lost[0]); return;
            case 2: codec.Recover(stripe, lost[0], lost[1]); return;
            default: throw new TooManyLostChunksException(lost.Length, 2);
        }
    }

    public override void Update(int dataIndex, ReadOnlySpan<byte> oldData, ReadOnlySpan<byte> newData, Span2D<byte> parity)
        => codec.UpdateParity(dataIndex, oldData, newData, parity.GetRowSpan(0), parity.GetRowSpan(1));

    public override bool Check(Span2D<byte> stripe, Span2D<byte> scratch, out int corruptRow)
    {
        var check = codec.Verify(stripe);
        corruptRow = check.IsConsistent ? -1 : check.CorruptRow;
        return check.IsConsistent;
    }

    protected override bool Consistent(Span2D<byte> stripe) => codec.Verify(stripe).IsConsistent;
}

/// <summary>General k+m Reed-Solomon.</summary>
internal sealed class ReedSolomonCode(ReedSolomonCodec codec) : StripeCode(codec.DataCount, codec.ParityCount)
{
    public override void Encode(Span2D<byte> stripe) => codec.Encode(stripe);

    public override void Reconstruct(Span2D<byte> stripe, ReadOnlySpan<int> lost)
    {
        if (!lost.IsEmpty)
            codec.Reconstruct(stripe, lost);
    }

    public override void Update(int dataIndex, ReadOnlySpan<byte> oldData, ReadOnlySpan<byte> newData, Span2D<byte> parity)
        => codec.UpdateParity(dataIndex, oldData, newData, parity);

    protected override bool Consistent(Span2D<byte> stripe) => codec.Verify(stripe) == 0;
}
