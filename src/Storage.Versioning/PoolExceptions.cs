namespace Storage.Versioning;

/// <summary>A request the pool refuses: bad name, unknown volume, a device that is not a pool, an unsafe format.</summary>
public sealed class PoolConfigurationException : Exception
{
    /// <summary>Creates the exception.</summary>
    public PoolConfigurationException() { }

    /// <summary>Creates the exception.</summary>
    public PoolConfigurationException(string message) : base(message) { }

    /// <summary>Creates the exception.</summary>
    public PoolConfigurationException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>No free block is left for a write; the write did not happen. Maps to ENOSPC (HResult 28).</summary>
public sealed class PoolFullException : IOException
{
    /// <summary>Creates the exception.</summary>
    public PoolFullException() : this("The pool is full.") { }

    /// <summary>Creates the exception.</summary>
    public PoolFullException(string message) : base(message, 28) { }

    /// <summary>Creates the exception.</summary>
    public PoolFullException(string message, Exception inner) : base(message, inner) => HResult = 28;
}

/// <summary>A block's bytes do not match the checksum in its map entry, and no reconstruction matched either. Maps to EIO.</summary>
public sealed class ChecksumMismatchException : IOException
{
    /// <summary>Creates the exception.</summary>
    public ChecksumMismatchException() { }

    /// <summary>Creates the exception.</summary>
    public ChecksumMismatchException(string message) : base(message) { }

    /// <summary>Creates the exception.</summary>
    public ChecksumMismatchException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>A send stream that is corrupted, truncated, or does not fit the receiving pool; nothing visible changed.</summary>
public sealed class SendStreamException : Exception
{
    /// <summary>Creates the exception.</summary>
    public SendStreamException() { }

    /// <summary>Creates the exception.</summary>
    public SendStreamException(string message) : base(message) { }

    /// <summary>Creates the exception.</summary>
    public SendStreamException(string message, Exception inner) : base(message, inner) { }
}
