namespace Storage.Parity;

/// <summary>
/// The result of <see cref="Raid6Codec.Verify"/>: which parity disagrees with the data and, when a
/// single chunk explains the disagreement, which one (syndrome localization).
/// </summary>
/// <param name="PMatches">P equals the XOR of the data.</param>
/// <param name="QMatches">Q equals Σ g^i·D_i.</param>
/// <param name="CorruptRow">
/// The one stripe row that explains every mismatch — a data index 0..k-1, k for P, k+1 for Q —
/// or -1 when the stripe is consistent or no single row explains it (two or more chunks are bad).
/// </param>
public readonly record struct Raid6Check(bool PMatches, bool QMatches, int CorruptRow)
{
    /// <summary>P and Q both match the data.</summary>
    public bool IsConsistent => PMatches && QMatches;

    /// <summary>A single corrupt row was found; <see cref="Raid6Codec.Recover"/> of that row repairs the stripe.</summary>
    public bool IsRepairable => CorruptRow >= 0;
}
