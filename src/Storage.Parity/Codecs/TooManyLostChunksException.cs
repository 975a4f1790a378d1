namespace Storage.Parity;

/// <summary>
/// More chunks of a stripe are lost than its parity can rebuild (RAID-5: 1, RAID-6: 2, k+m: m).
/// Nothing was written.
/// </summary>
public sealed class TooManyLostChunksException : Exception
{
    /// <summary>Creates the exception for <paramref name="lost"/> lost chunks against a tolerance of <paramref name="tolerance"/>.</summary>
    public TooManyLostChunksException(int lost, int tolerance)
        : base($"{lost} chunks of the stripe are lost, but its parity can rebuild at most {tolerance}; the data cannot be recovered from this stripe.")
    {
        Lost = lost;
        Tolerance = tolerance;
    }

    /// <summary>Creates the exception.</summary>
    public TooManyLostChunksException() { }

    /// <summary>Creates the exception with a message.</summary>
    public TooManyLostChunksException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and an inner exception.</summary>
    public TooManyLostChunksException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>How many chunks were reported lost.</summary>
    public int Lost { get; }

    /// <summary>How many the code can rebuild.</summary>
    public int Tolerance { get; }
}
