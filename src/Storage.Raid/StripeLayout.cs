namespace Storage.Raid;

/// <summary>
/// Where each chunk of a stripe lives. Rows of a stripe: data 0..k-1, then parity k..k+m-1.
/// Parity levels rotate md "left-symmetric": with n members, stripe s puts parity row j on member
/// (p + j) mod n with p = (n-1) - (s mod n), and data index i on member (p + m + i) mod n — for RAID-5
/// P on p and D_i on (p+1+i); for RAID-6 P on p, Q on p+1 and D_i on (p+2+i), as Linux md lays them out.
/// RAID-0 puts data i on member i; RAID-1 puts the data on member 0 and the copies on 1..n-1.
/// </summary>
public readonly struct StripeLayout
{
    private readonly ArrayGeometry _geometry;

    /// <summary>The layout of <paramref name="geometry"/>.</summary>
    public StripeLayout(ArrayGeometry geometry) => _geometry = geometry;

    private bool Rotates => _geometry.Level is RaidLevel.Raid5 or RaidLevel.Raid6 or RaidLevel.ReedSolomon;

    /// <summary>The member (role) that holds row <paramref name="row"/> of stripe <paramref name="stripe"/>.</summary>
    public int MemberOf(long stripe, int row)
    {
        int n = _geometry.MemberCount;
        if (!Rotates)
            return row;
        int p = n - 1 - (int)(stripe % n);
        int m = _geometry.ParityCount;
        int k = _geometry.DataCount;
        return row < k ? (p + m + row) % n : (p + row - k) % n;
    }

    /// <summary>The row member <paramref name="member"/> holds in stripe <paramref name="stripe"/>.</summary>
    public int RowOf(long stripe, int member)
    {
        int n = _geometry.MemberCount;
        if (!Rotates)
            return member;
        int p = n - 1 - (int)(stripe % n);
        int m = _geometry.ParityCount;
        int k = _geometry.DataCount;
        int j = ((member - p) % n + n) % n;   // position after the first parity chunk
        return j < m ? k + j : j - m;
    }

    /// <summary>Stripe, data index and offset inside the chunk of array byte <paramref name="offset"/>.</summary>
    public (long Stripe, int DataIndex, int InChunk) Locate(long offset)
    {
        long stripe = Math.DivRem(offset, _geometry.StripeDataSize, out long inStripe);
        int index = (int)Math.DivRem(inStripe, _geometry.ChunkSize, out long inChunk);
        return (stripe, index, (int)inChunk);
    }

    /// <summary>Byte offset on a member of a position inside stripe <paramref name="stripe"/>'s chunk.</summary>
    public long MemberOffset(long stripe, int inChunk) => _geometry.DataOffset + stripe * _geometry.ChunkSize + inChunk;
}
