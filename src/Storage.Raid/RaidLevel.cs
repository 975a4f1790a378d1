namespace Storage.Raid;

/// <summary>How an array spreads data and redundancy over its members.</summary>
public enum RaidLevel
{
    /// <summary>Striping, no redundancy: every member holds data; one failure loses the array.</summary>
    Raid0 = 0,

    /// <summary>Mirroring: every member holds a full copy; survives all but one failure.</summary>
    Raid1 = 1,

    /// <summary>Rotating XOR parity (md left-symmetric): survives one failure.</summary>
    Raid5 = 5,

    /// <summary>Rotating P+Q parity (md left-symmetric, Q coefficient g^i): survives two failures.</summary>
    Raid6 = 6,

    /// <summary>k data + m Reed-Solomon parity chunks per stripe (ISA-L Cauchy matrix): survives m failures.</summary>
    ReedSolomon = 100,
}
